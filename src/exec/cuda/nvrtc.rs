//! Compiling the kernels: NVRTC turns the `.cu` sources into a CUBIN for one exact architecture
//! (`sm_XY`; PTX from an NVRTC newer than the driver would not load) with the options the
//! determinism spec requires: no FMA contraction, IEEE division and square root, no flush to zero.
//! CUBINs are cached in memory and on disk next to the profile, keyed by architecture, a hash of
//! the sources and options, and the NVRTC version, so a new process does not compile again.
//! Needs no GPU: CI compiles every kernel wherever an NVRTC library is installed.

use std::collections::HashMap;
use std::ffi::{c_char, CString};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::discovery;
use super::error::{catch, GpuError};

/// The options every build uses (docs/architecture.md, "Determinism").
pub const OPTIONS: &[&str] = &[
    "--fmad=false",
    "--prec-div=true",
    "--prec-sqrt=true",
    "--ftz=false",
];

/// The kernels as one translation unit, in dependency order.
pub fn kernel_source() -> String {
    [
        include_str!("common.cuh"),
        include_str!("window.cu"),
        include_str!("scan.cu"),
        include_str!("family.cu"),
    ]
    .join("\n")
}

/// FNV-1a 64 of everything that changes the CUBIN besides the architecture and NVRTC version.
fn source_hash() -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in kernel_source().bytes().chain(OPTIONS.join(" ").bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// `sm_XY` with X, Y digits, as NVRTC's `--gpu-architecture` takes it.
pub fn validate_arch(arch: &str) -> Result<(), GpuError> {
    let digits = arch.strip_prefix("sm_").unwrap_or("");
    let number = digits.trim_end_matches(['a', 'f']);
    if (2..=3).contains(&number.len()) && number.chars().all(|c| c.is_ascii_digit()) {
        return Ok(());
    }
    Err(GpuError::BadArch(format!(
        "arch must be a real GPU architecture like 'sm_90', got '{arch}'"
    )))
}

fn cache_dir() -> Option<PathBuf> {
    crate::exec::profile::default_path()?
        .parent()
        .map(|d| d.join("kernels"))
}

fn cache_file(arch: &str, nvrtc: (i32, i32)) -> Option<PathBuf> {
    cache_dir().map(|d| {
        d.join(format!(
            "{arch}-{:016x}-nvrtc{}.{}.cubin",
            source_hash(),
            nvrtc.0,
            nvrtc.1
        ))
    })
}

type Key = (String, (i32, i32));
static MEMORY: Mutex<Option<HashMap<Key, Arc<Vec<u8>>>>> = Mutex::new(None);

/// A compiled module and where it came from.
pub struct Compiled {
    pub cubin: Arc<Vec<u8>>,
    pub nvrtc_version: (i32, i32),
    /// "memory", "disk" or "nvrtc".
    pub origin: &'static str,
}

/// The CUBIN of every kernel for `arch`, from the memory cache, the disk cache or NVRTC.
pub fn cubin(arch: &str) -> Result<Compiled, GpuError> {
    validate_arch(arch)?;
    let (_, version) = discovery::nvrtc()?;
    let key = (arch.to_string(), version);
    if let Some(hit) = MEMORY
        .lock()
        .ok()
        .and_then(|m| m.as_ref()?.get(&key).cloned())
    {
        return Ok(Compiled {
            cubin: hit,
            nvrtc_version: version,
            origin: "memory",
        });
    }
    let file = cache_file(arch, version);
    let (bytes, origin) = match file
        .as_ref()
        .and_then(|f| std::fs::read(f).ok())
        .filter(|b| !b.is_empty())
    {
        Some(b) => (b, "disk"),
        None => {
            let b = compile(arch)?;
            if let Some(f) = &file {
                store(f, &b);
            }
            (b, "nvrtc")
        }
    };
    let bytes = Arc::new(bytes);
    if let Ok(mut m) = MEMORY.lock() {
        m.get_or_insert_with(HashMap::new)
            .insert(key, Arc::clone(&bytes));
    }
    Ok(Compiled {
        cubin: bytes,
        nvrtc_version: version,
        origin,
    })
}

/// Writes a cache file atomically (temp + rename); a failure only costs a compile next time.
fn store(path: &PathBuf, bytes: &[u8]) {
    let Some(dir) = path.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().map_or("k".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    if std::fs::write(&tmp, bytes).is_ok() && std::fs::rename(&tmp, path).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// Runs NVRTC. Errors carry the compiler log.
pub fn compile(arch: &str) -> Result<Vec<u8>, GpuError> {
    validate_arch(arch)?;
    discovery::nvrtc()?;
    catch("NVRTC", || {
        use cudarc::nvrtc::{result, sys};
        let src = CString::new(kernel_source()).map_err(|e| GpuError::Compile(e.to_string()))?;
        let prog = result::create_program(&src, Some(c"threadx_kernels.cu"))
            .map_err(|e| GpuError::Compile(format!("nvrtcCreateProgram: {e:?}")))?;
        let mut opts: Vec<String> = vec![format!("--gpu-architecture={arch}")];
        opts.extend(OPTIONS.iter().map(|s| s.to_string()));
        // SAFETY: `prog` is a live program; it is destroyed exactly once below.
        let compiled = unsafe { result::compile_program(prog, &opts) };
        let out = match compiled {
            Ok(()) => {
                let mut size = 0usize;
                // SAFETY: live program, out-parameter, then a buffer of exactly that size.
                unsafe {
                    sys::nvrtcGetCUBINSize(prog, &mut size)
                        .result()
                        .map_err(|e| GpuError::Compile(format!("nvrtcGetCUBINSize: {e:?}")))
                        .and_then(|()| {
                            let mut buf = vec![0u8; size];
                            sys::nvrtcGetCUBIN(prog, buf.as_mut_ptr() as *mut c_char)
                                .result()
                                .map_err(|e| GpuError::Compile(format!("nvrtcGetCUBIN: {e:?}")))
                                .map(|()| buf)
                        })
                }
            }
            Err(e) => {
                // SAFETY: live program.
                let log = unsafe { result::get_program_log(prog) }
                    .map(|l| l.iter().map(|&c| c as u8 as char).collect::<String>())
                    .unwrap_or_default();
                Err(GpuError::Compile(format!(
                    "NVRTC could not compile the kernels for {arch}: {e:?}: {}",
                    log.trim_end_matches('\0').trim()
                )))
            }
        };
        // SAFETY: created above, destroyed once.
        let _ = unsafe { result::destroy_program(prog) };
        out
    })
}
