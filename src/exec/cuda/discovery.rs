//! Finding the GPUs without ever panicking. cudarc opens `libcuda` and `libnvrtc` by bare name and
//! panics when they are missing, so: probe both first; look for NVRTC where users have it (the
//! CUDA toolkit, `CUDA_PATH` / `CUDA_HOME`, the NVIDIA Python wheels, `THREADX_NVRTC`) and open it
//! by absolute path, which makes cudarc's later open by name return the library already loaded
//! (the dynamic loader matches it by its soname); only then initialise the driver. Runs once, on
//! the first call that needs a GPU, never at import (a `fork` after `cuInit` breaks the child).

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use super::error::{catch, GpuError};
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

/// The NVRTC library opened by absolute path (kept open for the life of the process).
struct Nvrtc {
    path: String,
    _lib: libloading::Library,
}

static NVRTC: OnceLock<Result<Nvrtc, String>> = OnceLock::new();

fn open_nvrtc() -> Result<Nvrtc, String> {
    let candidates = nvrtc_candidates();
    let mut errors = Vec::new();
    for path in &candidates {
        // SAFETY: loading NVRTC runs no initialisation code with preconditions.
        match unsafe { libloading::Library::new(path) } {
            Ok(lib) => {
                // cudarc opens "libnvrtc.so.12" etc. by name; with ours loaded, that name now
                // resolves to it. Check before the first cudarc call, which would panic otherwise.
                // SAFETY: a presence probe that only opens and closes the library.
                if unsafe { cudarc::nvrtc::sys::is_culib_present() } {
                    return Ok(Nvrtc {
                        path: path.display().to_string(),
                        _lib: lib,
                    });
                }
                errors.push(format!(
                    "{}: loaded, but not under a name cudarc opens",
                    path.display()
                ));
            }
            Err(e) => errors.push(format!("{}: {e}", path.display())),
        }
    }
    // SAFETY: a presence probe that only opens and closes the library.
    if unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Ok(Nvrtc {
            path: "libnvrtc (found by the dynamic loader)".into(),
            // SAFETY: as above; a name the probe just opened successfully.
            _lib: unsafe { libloading::Library::new("libnvrtc.so.12") }
                .or_else(|_| unsafe { libloading::Library::new("libnvrtc.so") })
                .map_err(|e| e.to_string())?,
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

/// Opens NVRTC (once) and returns its path and version.
pub fn nvrtc() -> Result<(String, (i32, i32)), GpuError> {
    let lib = NVRTC
        .get_or_init(open_nvrtc)
        .as_ref()
        .map_err(|e| GpuError::Unavailable(e.clone()))?;
    let version = catch("nvrtcVersion", || {
        let (mut major, mut minor) = (0, 0);
        // SAFETY: NVRTC is loaded (above); plain out-parameters.
        let rc = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
        if rc == cudarc::nvrtc::sys::nvrtcResult::NVRTC_SUCCESS {
            Ok((major, minor))
        } else {
            Err(GpuError::Unavailable(format!(
                "nvrtcVersion failed: {rc:?}"
            )))
        }
    })?;
    Ok((lib.path.clone(), version))
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
    let nvrtc_found = nvrtc();
    if let Ok((path, (major, minor))) = &nvrtc_found {
        status.nvrtc_library = Some(path.clone());
        status.nvrtc_version = Some(format!("{major}.{minor}"));
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
    match nvrtc_found {
        Ok((_, (major, minor))) => {
            if major > driver / 1000 {
                status.reason = Some(format!(
                    "NVRTC {major}.{minor} is newer than the driver's CUDA {}: its CUBINs would not \
                     load; install an NVRTC {} wheel or update the driver",
                    version_string(driver),
                    driver / 1000
                ));
                return status;
            }
        }
        Err(e) => {
            status.reason = Some(format!("{e}: the kernels cannot be compiled"));
            return status;
        }
    }
    status.devices = devices;
    status
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
    if !config::simulated_gpus_set() {
        return real.clone();
    }
    with_simulated(real.clone())
}
