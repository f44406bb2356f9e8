//! Compiling the kernels: NVRTC (through our own handle, `nvrtc_lib`) turns the `.cu` sources
//! into a CUBIN for the device's exact architecture, or into PTX for the driver to JIT when that
//! NVRTC cannot build SASS for it (`arch::select`), with the options the determinism spec
//! requires: no FMA contraction, IEEE division and square root, no flush to zero. Images are
//! cached in memory and on disk next to the profile, keyed by target, a hash of the sources and
//! options, and the NVRTC version, so a new process does not compile again; a cached image that
//! does not load is rebuilt (`image_cache`). Needs no GPU: CI compiles every kernel wherever an
//! NVRTC library is installed.

use std::path::PathBuf;

use super::arch::{self, Target};
use super::discovery::{self, GpuInfo};
use super::error::{catch, GpuError};
use super::image_cache::{self, Loaded};
use super::nvrtc_lib::Output;

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

/// The cache's name for `target`'s image from NVRTC `nvrtc`: also its in-memory key.
fn cache_name(target: Target, nvrtc: (i32, i32)) -> String {
    format!(
        "{}-{:016x}-nvrtc{}.{}.{}",
        target.nvrtc_arch(),
        source_hash(),
        nvrtc.0,
        nvrtc.1,
        target.extension()
    )
}

/// The build for `info`'s device with the NVRTC in use (see [`arch::select`]).
pub fn target_for(info: &GpuInfo) -> Result<Target, GpuError> {
    let nvrtc = discovery::nvrtc_lib()?;
    arch::select(&nvrtc.archs, arch::arch_number(info.compute_capability))
}

/// Loads the kernels for `target` with `load` (the driver's module load), from the memory cache,
/// the disk cache or NVRTC; a cached image that does not load is rebuilt once.
pub fn load<M>(
    target: Target,
    load: impl FnMut(&[u8]) -> Result<M, GpuError>,
) -> Result<Loaded<M>, GpuError> {
    let (_, version) = discovery::nvrtc()?;
    let name = cache_name(target, version);
    let file = cache_dir().map(|d| d.join(&name));
    image_cache::load_or_rebuild(&name, file.as_deref(), load, || compile_target(target))
}

/// Runs NVRTC for a CUBIN of `arch` (`sm_XY`, `sm_90a`). Errors carry the compiler log.
pub fn compile(arch: &str) -> Result<Vec<u8>, GpuError> {
    validate_arch(arch)?;
    run_nvrtc(arch, Output::Cubin)
}

/// Runs NVRTC for `target`: a CUBIN, or a NUL-terminated PTX image. Errors carry the log.
pub fn compile_target(target: Target) -> Result<Vec<u8>, GpuError> {
    let output = match target {
        Target::Cubin(_) => Output::Cubin,
        Target::Ptx(_) => Output::Ptx,
    };
    run_nvrtc(&target.nvrtc_arch(), output)
}

fn run_nvrtc(arch: &str, output: Output) -> Result<Vec<u8>, GpuError> {
    let nvrtc = discovery::nvrtc_lib()?;
    let mut opts: Vec<String> = vec![format!("--gpu-architecture={arch}")];
    opts.extend(OPTIONS.iter().map(|s| s.to_string()));
    catch("NVRTC", || {
        nvrtc
            .lib
            .compile(&kernel_source(), "threadx_kernels.cu", &opts, output)
            .map_err(|e| match e {
                GpuError::Compile(m) => GpuError::Compile(format!(
                    "NVRTC could not compile the kernels for {arch}: {m}"
                )),
                other => other,
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With a real NVRTC (`THREADX_NVRTC`, or one on the loader path): it lists architectures, and
    /// the PTX path emits code for the newest one with every f64 add and multiply explicitly
    /// rounded (`.rn`, which the driver's JIT must keep: the same bits as the CUBIN path).
    #[test]
    fn the_ptx_path_compiles_with_explicit_rounding_where_nvrtc_is_installed() {
        let Ok(nvrtc) = discovery::nvrtc_lib() else {
            eprintln!("no NVRTC library: nothing to compile with");
            return;
        };
        let newest = *nvrtc.archs.last().expect("NVRTC lists its architectures");
        assert!(nvrtc.archs.contains(&80), "{:?}", nvrtc.archs);
        let ptx = compile_target(Target::Ptx(newest)).expect("the PTX compiles");
        assert_eq!(ptx.last(), Some(&0), "NUL-terminated for cuModuleLoadData");
        let text = String::from_utf8_lossy(&ptx);
        assert!(
            text.contains(&format!(".target sm_{newest}")),
            "no target line"
        );
        assert!(text.contains("add.rn.f64") && text.contains("mul.rn.f64"));
        // --fmad=false: no multiply-add is contracted (the kernels call no fma() themselves).
        assert!(!text.contains("fma.rn.f64"));
    }

    #[test]
    fn cubin_and_ptx_images_never_share_a_cache_entry() {
        let v = (12, 9);
        let cubin = cache_name(Target::Cubin(80), v);
        let ptx = cache_name(Target::Ptx(80), v);
        assert_ne!(cubin, ptx);
        assert!(cubin.starts_with("sm_80-") && cubin.ends_with("-nvrtc12.9.cubin"));
        assert!(ptx.starts_with("compute_80-") && ptx.ends_with("-nvrtc12.9.ptx"));
    }
}
