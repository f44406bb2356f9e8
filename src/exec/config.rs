//! Every `THREADX_*` environment variable the library reads, and when it reads it.
//!
//! Nothing else in the crate calls `std::env::var` for a `THREADX_*` name: grep here first. Some
//! variables are read once per process (like `RAYON_NUM_THREADS`: changing them later has no
//! effect), others on every use on purpose, so that a test or a user can change them mid-process.
//! The "read" column is part of the contract; the accessors below implement it.
//!
//! | Variable | Meaning | Default | Read | Test hook |
//! |---|---|---|---|---|
//! | `THREADX_NUM_THREADS` | Forces every call's CPU worker count (`1..=1024`; other values are ignored). `set_threads` wins over it. | unset: the planner decides | once, at the first call | no |
//! | `THREADX_SEED` | Seed (`u64`) of the planner's exploration draws, so a run's sequence of plans can be reproduced. | a fixed seed | once, at the first planned call | no |
//! | `THREADX_LOG` | Any value but empty or `0`: one line per call on stderr (plan, reason, measured time). | off | once, at the first call | no |
//! | `THREADX_PROFILE` | Path of the persisted profile (JSON). A symbolic link is written through (next to its target); `/dev/null` switches persistence off; anything else that is not a regular file (FIFO, socket, directory, device) is left alone and the profile kept in memory, with one warning. | the user cache directory's `threadx/profile.json` | at every (re)load of the profile and every kernel-cache lookup | no |
//! | `THREADX_PROFILE_EXPIRY_DAYS` | Entries of other machines and builds not updated for this many days are removed at a process's first write and by `threadx profile prune` (a non-negative integer; `0`: never expire; other values are ignored). | `90` | at each process's first profile write, and by `prune` | no |
//! | `THREADX_GPU` | `off` or `0`: never use a GPU (discovery reports why). | on | once, at GPU discovery (the first call that may use a GPU) | no |
//! | `THREADX_NVRTC` | The NVRTC library file, or a folder holding it, tried before any other location. | searched | once, when NVRTC is first opened | no |
//! | `THREADX_GPU_PIECE_ROWS` | Output rows per GPU piece (`> 0`), instead of what half the device memory holds. | from free memory | on every GPU call | yes (forces many pieces on small inputs) |
//! | `THREADX_SIMULATED_GPUS` | Comma-separated speeds (relative to one CPU thread): one simulated GPU each, listed after the real ones; they run the Rust kernels. | none | on every use, so tests can add or slow down devices mid-process | yes |
//! | `THREADX_GPU_INJECT_FAILURE` | `alloc`, `upload` or `launch`: that CUDA step fails, to test the CPU fallback. | none | on every GPU step | yes |
//! | `THREADX_BLESS_GOLDEN` | `1`: the golden-bits test rewrites `golden_bits.txt` instead of checking it. | off | by that test only | yes (tests only) |
//!
//! `THREADX_BUILD_HASH` is not read at run time: `build.rs` sets it at compile time (the hash of
//! the kernel and executor sources, part of the profile fingerprint).

use std::path::PathBuf;
use std::sync::OnceLock;

/// The largest worker count accepted from users (`set_threads` and `THREADX_NUM_THREADS`).
pub const MAX_THREADS: usize = 1024;

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// `THREADX_NUM_THREADS` (read once); values outside `1..=MAX_THREADS` or not integers are ignored.
pub fn num_threads() -> Option<usize> {
    static ENV: OnceLock<Option<usize>> = OnceLock::new();
    *ENV.get_or_init(|| {
        var("THREADX_NUM_THREADS")
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|k| (1..=MAX_THREADS).contains(k))
    })
}

/// `THREADX_SEED` (read once), if it is an integer.
pub fn seed() -> Option<u64> {
    static ENV: OnceLock<Option<u64>> = OnceLock::new();
    *ENV.get_or_init(|| var("THREADX_SEED").and_then(|s| s.trim().parse::<u64>().ok()))
}

/// `THREADX_LOG` (read once): set to anything but empty or `0`.
pub fn log_enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| var("THREADX_LOG").is_some_and(|v| !v.is_empty() && v != "0"))
}

/// `THREADX_PROFILE` (read on every call), if set and not empty.
pub fn profile_path() -> Option<PathBuf> {
    std::env::var_os("THREADX_PROFILE")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// Default of [`profile_expiry_days`].
pub const DEFAULT_PROFILE_EXPIRY_DAYS: u64 = 90;

/// `THREADX_PROFILE_EXPIRY_DAYS` (read on every use): a non-negative integer, `0` = never.
pub fn profile_expiry_days() -> u64 {
    var("THREADX_PROFILE_EXPIRY_DAYS")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_PROFILE_EXPIRY_DAYS)
}

/// `THREADX_GPU=off` or `0` (read by GPU discovery, which runs once).
pub fn gpu_disabled() -> bool {
    var("THREADX_GPU").is_some_and(|v| v.eq_ignore_ascii_case("off") || v == "0")
}

/// `THREADX_NVRTC` (read when NVRTC is opened, once), if set and not empty.
pub fn nvrtc_path() -> Option<PathBuf> {
    std::env::var_os("THREADX_NVRTC")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// `THREADX_GPU_PIECE_ROWS` (read on every GPU call), if a positive integer.
pub fn gpu_piece_rows() -> Option<usize> {
    var("THREADX_GPU_PIECE_ROWS")
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|r| *r > 0)
}

/// Whether `THREADX_SIMULATED_GPUS` is set at all (read on every call).
pub fn simulated_gpus_set() -> bool {
    std::env::var_os("THREADX_SIMULATED_GPUS").is_some()
}

/// `THREADX_SIMULATED_GPUS="1.0,0.5"` (read on every call): one speed per simulated GPU; an entry
/// that is not a positive finite number counts as 1.0, empty entries are skipped.
pub fn simulated_gpu_speeds() -> Vec<f64> {
    var("THREADX_SIMULATED_GPUS")
        .map(|v| {
            v.split(',')
                .filter(|p| !p.trim().is_empty())
                .map(|p| {
                    p.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|s| s.is_finite() && *s > 0.0)
                        .unwrap_or(1.0)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A CUDA step that `THREADX_GPU_INJECT_FAILURE` can make fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GpuStep {
    Alloc,
    Upload,
    Launch,
}

impl GpuStep {
    /// The variable's value that selects this step.
    pub fn name(self) -> &'static str {
        match self {
            GpuStep::Alloc => "alloc",
            GpuStep::Upload => "upload",
            GpuStep::Launch => "launch",
        }
    }
}

/// `THREADX_GPU_INJECT_FAILURE` (read on every GPU step): the step to fail, if the value names
/// one exactly.
pub fn gpu_injected_failure() -> Option<GpuStep> {
    let v = var("THREADX_GPU_INJECT_FAILURE")?;
    [GpuStep::Alloc, GpuStep::Upload, GpuStep::Launch]
        .into_iter()
        .find(|s| s.name() == v)
}

/// `THREADX_BLESS_GOLDEN=1` (tests only): rewrite the golden bits instead of checking them.
#[cfg(test)]
pub fn bless_golden() -> bool {
    var("THREADX_BLESS_GOLDEN").is_some_and(|v| v == "1")
}
