//! Finding the GPUs without ever panicking. cudarc opens `libcuda` by bare name and panics when it
//! is missing, so it is probed first. NVRTC is looked for where users have it (the CUDA toolkit,
//! `CUDA_PATH` / `CUDA_HOME`, the NVIDIA Python wheels, `THREADX_NVRTC`), opened by absolute path
//! and called only through that handle (`nvrtc_lib`), so the library the status names is the one
//! that compiles. Each device's build is chosen from the architectures that NVRTC supports
//! (`arch::select`): a device it cannot serve is left out, with the reason, instead of being
//! "available" while every call falls back to the CPU. Runs once, on the first call that needs a
//! GPU, never at import (a `fork` after `cuInit` breaks the child).

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use super::arch;
use super::error::{catch, GpuError};
use super::nvrtc_lib::NvrtcLib;
use super::nvrtc_shadow;
use crate::exec::config;

/// One usable GPU.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GpuInfo {
    pub index: usize,
    pub name: String,
    pub uuid: String,
    pub compute_capability: (i32, i32),
    pub memory_bytes: usize,
    /// `Some(slot)` for a simulated GPU (`THREADX_SIMULATED_GPUS`): it runs the CPU kernels at a
    /// relative speed, for tests and demos of multi-device balancing on any machine.
    pub simulated: Option<usize>,
    /// What the driver gets for this device: "cubin sm_90", or "ptx compute_80 JIT by the driver"
    /// when NVRTC cannot build SASS for it (see `arch`). `None` for a simulated GPU.
    pub kernel_build: Option<String>,
    /// Set while opening this device (context, module) has failed and is waiting to be retried:
    /// "open failed at <time>: <error>; retrying after <s> s" (see `reopen`).
    pub open_state: Option<String>,
}

impl GpuInfo {
    /// NVRTC's `--gpu-architecture` for this device's exact SASS.
    pub fn arch(&self) -> String {
        format!(
            "sm_{}{}",
            self.compute_capability.0, self.compute_capability.1
        )
    }
}

/// Adds one simulated GPU per speed listed in `THREADX_SIMULATED_GPUS` (see
/// `exec::devset::simulated`), after the real GPUs. An invalid list adds none, and says why in
/// the status's reason (after the real GPUs' reason, if any).
fn with_simulated(mut status: GpuStatus) -> GpuStatus {
    let speeds = match config::simulated_gpu_speeds() {
        Ok(speeds) => speeds,
        Err(e) => {
            let why = match status.reason.take() {
                Some(real) => format!("{real}; {e}"),
                None if status.devices.is_empty() => e,
                None => format!("real GPUs only: {e}"),
            };
            status.reason = Some(why);
            return status;
        }
    };
    let first = status.devices.len();
    for (slot, speed) in speeds.iter().enumerate() {
        status.devices.push(GpuInfo {
            index: first + slot,
            name: format!("simulated GPU (speed {speed})"),
            uuid: format!("sim-{slot}"),
            compute_capability: (0, 0),
            memory_bytes: 0,
            simulated: Some(slot),
            kernel_build: None,
            open_state: None,
        });
    }
    status
}

/// What discovery found: the GPUs, or why there are none.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GpuStatus {
    pub devices: Vec<GpuInfo>,
    pub reason: Option<String>,
    pub driver_version: Option<String>,
    pub nvrtc_version: Option<String>,
    pub nvrtc_library: Option<String>,
    /// The real architectures the NVRTC in use builds SASS for (e.g. 75, 80, 90).
    pub nvrtc_archs: Vec<i32>,
    /// Set when a by-name open of libnvrtc (cudarc's, `LD_LIBRARY_PATH`'s) resolves to another
    /// library than `nvrtc_library`; names both (see `nvrtc_shadow`).
    pub nvrtc_mismatch: Option<String>,
}

/// Extra directories to look for NVRTC in, registered by the Python package at import (the
/// `nvidia/cuda_nvrtc/lib` folders under `sys.path`); plain strings, nothing is opened then.
static EXTRA_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

pub fn add_nvrtc_search_dirs(dirs: impl IntoIterator<Item = PathBuf>) {
    if let Ok(mut d) = EXTRA_DIRS.lock() {
        d.extend(dirs);
    }
}

const NVRTC_NAMES: &[&str] = &["libnvrtc.so.12", "libnvrtc.so", "libnvrtc.so.11.2"];

fn nvrtc_candidates() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(p) = config::nvrtc_path() {
        if p.is_file() {
            return vec![p];
        }
        dirs.push(p);
    }
    for var in ["CUDA_PATH", "CUDA_HOME", "CUDA_ROOT"] {
        if let Some(root) = std::env::var_os(var).filter(|p| !p.is_empty()) {
            let root = PathBuf::from(root);
            dirs.push(root.join("lib64"));
            dirs.push(root.join("lib"));
        }
    }
    if let Ok(extra) = EXTRA_DIRS.lock() {
        dirs.extend(extra.iter().cloned());
    }
    dirs.push(PathBuf::from("/usr/local/cuda/lib64"));
    if let Ok(entries) = std::fs::read_dir("/usr/local") {
        let mut versioned: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("cuda-"))
            })
            .map(|p| p.join("lib64"))
            .collect();
        versioned.sort();
        dirs.extend(versioned.into_iter().rev());
    }
    dirs.push(PathBuf::from("/usr/lib/x86_64-linux-gnu"));
    dirs.iter()
        .flat_map(|d| NVRTC_NAMES.iter().map(move |n| d.join(n)))
        .filter(|p| p.is_file())
        .collect()
}

/// The NVRTC discovery chose, opened by absolute path and kept open for the life of the process;
/// every NVRTC call goes through it (see `nvrtc_lib` for why not through cudarc's bindings).
pub struct LoadedNvrtc {
    pub path: String,
    pub version: (i32, i32),
    /// The real architectures it builds SASS for, sorted (see `arch::select`).
    pub archs: Vec<i32>,
    /// Another NVRTC that a by-name open resolves to (see `nvrtc_shadow`).
    pub mismatch: Option<String>,
    pub lib: NvrtcLib,
}

static NVRTC: OnceLock<Result<LoadedNvrtc, String>> = OnceLock::new();

/// Opens the first usable library of `candidates`, then each bare name for the dynamic loader;
/// `by_name` gives the NVRTC a by-name open resolves to, to report a different one.
pub(super) fn open_nvrtc_from(
    candidates: &[PathBuf],
    by_name: impl FnOnce() -> Option<nvrtc_shadow::Identity>,
) -> Result<LoadedNvrtc, String> {
    let mut errors = Vec::new();
    let named = NVRTC_NAMES.iter().map(PathBuf::from);
    for (i, path) in candidates.iter().cloned().chain(named).enumerate() {
        let by_loader = i >= candidates.len();
        let lib = match NvrtcLib::open(&path) {
            Ok(lib) => lib,
            Err(e) => {
                // Bare names the loader does not find are no news; files that would not load are.
                if !by_loader {
                    errors.push(e);
                }
                continue;
            }
        };
        let read = lib.version().and_then(|v| Ok((v, lib.supported_archs()?)));
        let (version, archs) = match read {
            Ok(r) => r,
            Err(e) => {
                errors.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let ours = nvrtc_shadow::Identity::of(&lib, &path.display().to_string());
        let path = if by_loader {
            format!("{} (found by the dynamic loader)", ours.path)
        } else {
            path.display().to_string()
        };
        return Ok(LoadedNvrtc {
            path,
            version,
            archs,
            mismatch: by_name().and_then(|theirs| nvrtc_shadow::mismatch(&ours, &theirs)),
            lib,
        });
    }
    let tried = if errors.is_empty() {
        "no libnvrtc in the CUDA toolkit (CUDA_PATH, CUDA_HOME, /usr/local/cuda*), the \
         nvidia-cuda-nvrtc-cu12 Python wheel or THREADX_NVRTC"
            .to_string()
    } else {
        errors.join("; ")
    };
    Err(format!("NVRTC not found ({tried})"))
}

/// Opens NVRTC (once per process).
pub fn nvrtc_lib() -> Result<&'static LoadedNvrtc, GpuError> {
    NVRTC
        .get_or_init(|| {
            catch("NVRTC", || {
                open_nvrtc_from(&nvrtc_candidates(), nvrtc_shadow::by_name)
                    .map_err(GpuError::Unavailable)
            })
            .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| GpuError::Unavailable(e.clone()))
}

/// Opens NVRTC (once) and returns its path and version.
pub fn nvrtc() -> Result<(String, (i32, i32)), GpuError> {
    nvrtc_lib().map(|n| (n.path.clone(), n.version))
}

fn version_string(v: i32) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

fn discover() -> GpuStatus {
    let mut status = GpuStatus::default();
    if config::gpu_disabled() {
        status.reason = Some("disabled by THREADX_GPU=off".into());
        return status;
    }
    // NVRTC needs no driver: report it whatever else is missing.
    let nvrtc_found = nvrtc_lib();
    if let Ok(n) = nvrtc_found {
        status.nvrtc_library = Some(n.path.clone());
        status.nvrtc_version = Some(format!("{}.{}", n.version.0, n.version.1));
        status.nvrtc_archs = n.archs.clone();
        status.nvrtc_mismatch = n.mismatch.clone();
    }
    // SAFETY: a presence probe that only opens and closes the library.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        status.reason = Some(
            "libcuda (the NVIDIA driver) not found: no NVIDIA GPU driver on this machine".into(),
        );
        return status;
    }
    let found = catch("CUDA driver", || {
        cudarc::driver::result::init()
            .map_err(|e| GpuError::Unavailable(format!("cuInit failed: {e:?}")))?;
        let mut v = 0;
        // SAFETY: plain out-parameter; the driver library is loaded.
        unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut v) }
            .result()
            .map_err(|e| GpuError::Unavailable(format!("cuDriverGetVersion failed: {e:?}")))?;
        let count = cudarc::driver::result::device::get_count()
            .map_err(|e| GpuError::Unavailable(format!("cuDeviceGetCount failed: {e:?}")))?;
        let mut devices = Vec::new();
        for index in 0..count.max(0) as usize {
            // Device queries only: contexts (hundreds of ms each) are created on first use.
            use cudarc::driver::sys::CUdevice_attribute as A;
            let dev = cudarc::driver::result::device::get(index as i32).map_err(|e| {
                GpuError::Unavailable(format!("GPU {index}: cuDeviceGet failed: {e:?}"))
            })?;
            // SAFETY: a valid device handle from cuDeviceGet.
            let attr =
                |a| unsafe { cudarc::driver::result::device::get_attribute(dev, a) }.unwrap_or(0);
            devices.push(GpuInfo {
                index,
                name: cudarc::driver::result::device::get_name(dev)
                    .unwrap_or_else(|_| "unknown".into()),
                uuid: cudarc::driver::result::device::get_uuid(dev)
                    .map(|u| format_uuid(&u.bytes))
                    .unwrap_or_default(),
                compute_capability: (
                    attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
                    attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR),
                ),
                // SAFETY: as above.
                memory_bytes: unsafe { cudarc::driver::result::device::total_mem(dev) }
                    .unwrap_or(0),
                simulated: None,
                kernel_build: None,
                open_state: None,
            });
        }
        Ok((v, devices))
    });
    let (driver, devices) = match found {
        Ok(f) => f,
        Err(e) => {
            status.reason = Some(e.to_string());
            return status;
        }
    };
    status.driver_version = Some(version_string(driver));
    if devices.is_empty() {
        status.reason = Some("the NVIDIA driver reports no CUDA devices".into());
        return status;
    }
    let archs = match nvrtc_found {
        Ok(n) => {
            let (major, minor) = n.version;
            if major > driver / 1000 {
                status.reason = Some(format!(
                    "NVRTC {major}.{minor} is newer than the driver's CUDA {}: its CUBINs would not \
                     load; install an NVRTC {} wheel or update the driver",
                    version_string(driver),
                    driver / 1000
                ));
                return status;
            }
            &n.archs
        }
        Err(e) => {
            status.reason = Some(format!("{e}: the kernels cannot be compiled"));
            return status;
        }
    };
    let (usable, refused) = with_builds(devices, archs);
    status.devices = usable;
    status.reason = refused;
    status
}

/// Sets each device's `kernel_build` from the architectures NVRTC supports; a device NVRTC cannot
/// serve at all is left out, and the second value says which and why.
fn with_builds(devices: Vec<GpuInfo>, archs: &[i32]) -> (Vec<GpuInfo>, Option<String>) {
    let mut usable = Vec::new();
    let mut refused = Vec::new();
    for mut d in devices {
        match arch::select(archs, arch::arch_number(d.compute_capability)) {
            Ok(target) => {
                d.kernel_build = Some(target.to_string());
                usable.push(d);
            }
            Err(e) => refused.push(format!("GPU {} ({}): {e}", d.index, d.name)),
        }
    }
    let reason = (!refused.is_empty()).then(|| refused.join("; "));
    (usable, reason)
}

fn format_uuid(b: &[std::ffi::c_char; 16]) -> String {
    let h: Vec<String> = b.iter().map(|v| format!("{:02x}", *v as u8)).collect();
    format!(
        "GPU-{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    )
}

static STATUS: OnceLock<GpuStatus> = OnceLock::new();

/// Discovers the real GPUs (once per process) and adds the simulated ones listed in
/// `THREADX_SIMULATED_GPUS` now (re-read on every call, so tests can change them).
pub fn status() -> GpuStatus {
    let real = STATUS.get_or_init(discover);
    // Read only by GPU calls otherwise: an invalid value warns as soon as GPUs are looked at.
    let _ = (config::gpu_piece_rows(), config::gpu_injected_failure());
    let mut real = real.clone();
    for d in &mut real.devices {
        d.open_state = super::reopen::state(d.index);
    }
    if !config::simulated_gpus_set() {
        return real;
    }
    with_simulated(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(index: usize, cc: (i32, i32)) -> GpuInfo {
        GpuInfo {
            index,
            name: format!("gpu{index}"),
            uuid: String::new(),
            compute_capability: cc,
            memory_bytes: 0,
            simulated: None,
            kernel_build: None,
            open_state: None,
        }
    }

    #[test]
    fn each_device_gets_its_build_and_one_nvrtc_cannot_serve_is_left_out_with_the_reason() {
        let archs = [75, 80, 86, 89, 90];
        let devices = vec![gpu(0, (6, 1)), gpu(1, (9, 0)), gpu(2, (12, 0))];
        let (usable, reason) = with_builds(devices, &archs);
        let builds: Vec<(usize, Option<&str>)> = usable
            .iter()
            .map(|d| (d.index, d.kernel_build.as_deref()))
            .collect();
        assert_eq!(
            builds,
            [
                (1, Some("cubin sm_90")),
                (2, Some("ptx compute_90 JIT by the driver"))
            ]
        );
        let reason = reason.expect("GPU 0 is refused");
        assert!(reason.starts_with("GPU 0 (gpu0): "), "{reason}");
        assert!(reason.contains("sm_75 to sm_90"), "{reason}");
        let (all, none) = with_builds(vec![gpu(0, (9, 0))], &archs);
        assert_eq!(all.len(), 1);
        assert_eq!(none, None);
    }
}
