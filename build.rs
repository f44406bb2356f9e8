//! Hashes what makes profiled timings valid — the kernel and executor sources and the compile
//! options — into `THREADX_BUILD_HASH`, part of the profile fingerprint.

use std::fs;
use std::path::Path;

fn fnv(h: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *h ^= *b as u64;
        *h = h.wrapping_mul(0x0100_0000_01b3);
    }
}

fn hash_dir(dir: &Path, h: &mut u64) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            hash_dir(&p, h);
        } else if let Ok(bytes) = fs::read(&p) {
            fnv(h, p.to_string_lossy().as_bytes());
            fnv(h, &bytes);
        }
    }
}

fn main() {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for dir in ["src/kernels", "src/exec"] {
        hash_dir(Path::new(dir), &mut h);
        println!("cargo:rerun-if-changed={dir}");
    }
    for var in ["PROFILE", "OPT_LEVEL", "TARGET", "CARGO_CFG_TARGET_FEATURE"] {
        fnv(&mut h, std::env::var(var).unwrap_or_default().as_bytes());
    }
    println!("cargo:rustc-env=THREADX_BUILD_HASH={h:016x}");
}
