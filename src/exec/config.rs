//! Every `THREADX_*` environment variable the library reads, and when it reads it.
//!
//! Nothing else in the crate calls `std::env::var` for a `THREADX_*` name: grep here first. Some
//! variables are read once per process (like `RAYON_NUM_THREADS`: changing them later has no
//! effect), others on every use on purpose, so that a test or a user can change them mid-process.
//! The "read" column is part of the contract; the accessors below implement it.
//!
//! An invalid value never fails a call and is never silently ignored: it prints one warning on
//! stderr (`threadx: warning: THREADX_X='value' ...; using ...`) naming the value and what is used
//! instead, once per variable and value in a process.
//!
//! | Variable | Meaning | Default | Read | Test hook |
//! |---|---|---|---|---|
//! | `THREADX_NUM_THREADS` | Forces every call's CPU worker count (`1..=1024`; another value warns and is ignored). `set_threads` wins over it. | unset: the planner decides | once, at the first call | no |
//! | `THREADX_SEED` | Seed (`u64`; another value warns and the default is used) of the planner's exploration draws, so a run's sequence of plans can be reproduced. | a fixed seed | once, at the first planned call | no |
//! | `THREADX_LOG` | `1`/`on`/`true`/`yes`: one line per call on stderr (plan, reason, measured time); empty/`0`/`off`/`false`/`no`: off; another value warns and logs. | off | once, at the first call | no |
//! | `THREADX_PROFILE` | Path of the persisted profile (JSON). A symbolic link is written through (next to its target); `/dev/null` switches persistence off; anything else that is not a regular file (FIFO, socket, directory, device) is left alone and the profile kept in memory, with one warning. | the user cache directory's `threadx/profile.json` | at every (re)load of the profile and every kernel-cache lookup | no |
//! | `THREADX_PROFILE_EXPIRY_DAYS` | Entries of other machines and builds not updated for this many days are removed at a process's first write and by `threadx profile prune` (a non-negative integer; `0`: never expire; another value warns and the default is used). | `90` | at each process's first profile write, and by `prune` | no |
//! | `THREADX_GPU` | `off` or `0`: never use a GPU (discovery reports why); `on`/`1`/empty: use them; another value warns and counts as `on`. | on | once, at GPU discovery (the first call that may use a GPU) | no |
//! | `THREADX_NVRTC` | The NVRTC library file, or a folder holding it, tried before any other location (a path that does not exist warns and the usual locations are searched). | searched | once, when NVRTC is first opened | no |
//! | `THREADX_GPU_PIECE_ROWS` | Output rows per GPU piece (`> 0`; another value warns and is ignored), instead of what half the device memory holds. | from free memory | on every GPU call | yes (forces many pieces on small inputs) |
//! | `THREADX_SWEEP_BUDGET_BYTES` | The most bytes a parameter sweep's output may take (rows x parameter sets x outputs x 8); a larger sweep is refused with an error naming its size (a positive integer; another value warns and the default is used). | half of the memory available (`MemAvailable`) at the call | on every sweep | yes |
//! | `THREADX_SIMULATED_GPUS` | Comma-separated speeds (relative to a nominal device of 100 ns per row, each in `(0.001, 1000]`): one simulated GPU each, listed after the real ones; they run the Rust kernels. An invalid entry adds no simulated GPU at all: it warns, and `gpu.status()` gives the reason. | none | on every use, so tests can add or slow down devices mid-process | yes |
//! | `THREADX_GPU_INJECT_FAILURE` | `alloc`, `upload` or `launch`: that CUDA step fails, to test the CPU fallback (another value warns and injects nothing). | none | on every GPU step | yes |
//! | `THREADX_BLESS_GOLDEN` | `1`: the golden-bits test rewrites `golden_bits.txt` instead of checking it. | off | by that test only | yes (tests only) |
//!
//! `THREADX_BUILD_HASH` is not read at run time: `build.rs` sets it at compile time (the hash of
//! the kernel and executor sources, part of the profile fingerprint).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

/// The largest worker count accepted from users (`set_threads` and `THREADX_NUM_THREADS`).
pub const MAX_THREADS: usize = 1024;

/// Simulated GPU speeds must lie in `(MIN_SIMULATED_SPEED, MAX_SIMULATED_SPEED]`: a slower
/// device would idle for hours (or overflow the sleep), a faster one means nothing.
pub const MIN_SIMULATED_SPEED: f64 = 0.001;
pub const MAX_SIMULATED_SPEED: f64 = 1000.0;

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Prints `threadx: warning: {name}='{value}' {problem}; {instead}` once per variable and value.
fn warn_invalid(name: &str, value: &str, problem: &str, instead: &str) {
    static SEEN: Mutex<Option<HashSet<(String, String)>>> = Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if seen
        .get_or_insert_with(HashSet::new)
        .insert((name.to_string(), value.to_string()))
    {
        eprintln!("threadx: warning: {name}={value:?} {problem}; {instead}");
    }
}

/// `name` parsed by `parse`, `None` when unset or empty; an invalid value warns (once) and
/// gives `None`.
fn parsed<T>(
    name: &str,
    problem: &str,
    instead: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Option<T> {
    let raw = var(name)?;
    let v = raw.trim();
    if v.is_empty() {
        return None;
    }
    let got = parse(v);
    if got.is_none() {
        warn_invalid(name, &raw, problem, instead);
    }
    got
}

/// `THREADX_NUM_THREADS` (read once); values outside `1..=MAX_THREADS` or not integers warn and
/// are ignored.
pub fn num_threads() -> Option<usize> {
    static ENV: OnceLock<Option<usize>> = OnceLock::new();
    *ENV.get_or_init(|| {
        parsed(
            "THREADX_NUM_THREADS",
            &format!("is not an integer in [1, {MAX_THREADS}]"),
            "ignored: the planner decides the worker count",
            |v| {
                v.parse::<usize>()
                    .ok()
                    .filter(|k| (1..=MAX_THREADS).contains(k))
            },
        )
    })
}

/// `THREADX_SEED` (read once), if it is an unsigned 64-bit integer (another value warns).
pub fn seed() -> Option<u64> {
    static ENV: OnceLock<Option<u64>> = OnceLock::new();
    *ENV.get_or_init(|| {
        parsed(
            "THREADX_SEED",
            "is not an integer in [0, 2^64)",
            "using the default seed",
            |v| v.parse::<u64>().ok(),
        )
    })
}

/// An on/off switch: `Some(true)` for 1/on/true/yes, `Some(false)` for 0/off/false/no/empty.
fn switch(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "on" | "true" | "yes" => Some(true),
        "" | "0" | "off" | "false" | "no" => Some(false),
        _ => None,
    }
}

/// `THREADX_LOG` (read once): 1/on/true/yes; another value but 0/off/false/no/empty warns and
/// turns logging on.
pub fn log_enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        let Some(v) = var("THREADX_LOG") else {
            return false;
        };
        switch(&v).unwrap_or_else(|| {
            warn_invalid(
                "THREADX_LOG",
                &v,
                "is not one of 1/on/true/yes or 0/off/false/no",
                "logging is on",
            );
            true
        })
    })
}

/// `THREADX_PROFILE` (read on every call), if set and not empty.
pub fn profile_path() -> Option<PathBuf> {
    std::env::var_os("THREADX_PROFILE")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// Default of [`profile_expiry_days`].
pub const DEFAULT_PROFILE_EXPIRY_DAYS: u64 = 90;

/// `THREADX_PROFILE_EXPIRY_DAYS` (read on every use): a non-negative integer, `0` = never; another
/// value warns and the default is used.
pub fn profile_expiry_days() -> u64 {
    parsed(
        "THREADX_PROFILE_EXPIRY_DAYS",
        "is not a non-negative integer",
        &format!("using the default, {DEFAULT_PROFILE_EXPIRY_DAYS} days"),
        |v| v.parse::<u64>().ok(),
    )
    .unwrap_or(DEFAULT_PROFILE_EXPIRY_DAYS)
}

/// `THREADX_GPU=off` or `0` (read by GPU discovery, which runs once); a value that is not an
/// on/off switch warns and counts as on.
pub fn gpu_disabled() -> bool {
    let Some(v) = var("THREADX_GPU") else {
        return false;
    };
    match switch(&v) {
        Some(on) => !on && !v.trim().is_empty(),
        None if v.trim().eq_ignore_ascii_case("auto") => false,
        None => {
            warn_invalid(
                "THREADX_GPU",
                &v,
                "is not 'on' or 'off'",
                "GPUs are used when present",
            );
            false
        }
    }
}

/// `THREADX_NVRTC` (read when NVRTC is opened, once), if set and not empty; a path that does not
/// exist warns (and the usual locations are searched).
pub fn nvrtc_path() -> Option<PathBuf> {
    let p = std::env::var_os("THREADX_NVRTC")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)?;
    if !p.exists() {
        warn_invalid(
            "THREADX_NVRTC",
            &p.display().to_string(),
            "does not exist",
            "searching the usual locations for NVRTC",
        );
    }
    Some(p)
}

/// `THREADX_GPU_PIECE_ROWS` (read on every GPU call), if a positive integer (another value warns).
pub fn gpu_piece_rows() -> Option<usize> {
    parsed(
        "THREADX_GPU_PIECE_ROWS",
        "is not a positive integer",
        "GPU pieces are sized from free device memory",
        |v| v.parse::<usize>().ok().filter(|r| *r > 0),
    )
}

/// `THREADX_SWEEP_BUDGET_BYTES` (read on every sweep), if a positive integer (another value warns).
pub fn sweep_budget_bytes() -> Option<u64> {
    parsed(
        "THREADX_SWEEP_BUDGET_BYTES",
        "is not a positive integer number of bytes",
        "the budget is half of the available memory",
        |v| v.parse::<u64>().ok().filter(|b| *b > 0),
    )
}

/// Whether `THREADX_SIMULATED_GPUS` is set at all (read on every call).
pub fn simulated_gpus_set() -> bool {
    std::env::var_os("THREADX_SIMULATED_GPUS").is_some()
}

/// `THREADX_SIMULATED_GPUS="1.0,0.5"` (read on every call): one speed per simulated GPU, each in
/// `(MIN_SIMULATED_SPEED, MAX_SIMULATED_SPEED]`; empty entries are skipped. Any other entry is an
/// error naming it (and warns once): then no simulated GPU is listed.
pub fn simulated_gpu_speeds() -> Result<Vec<f64>, String> {
    let Some(v) = var("THREADX_SIMULATED_GPUS") else {
        return Ok(Vec::new());
    };
    parse_speeds(&v).inspect_err(|e| {
        warn_invalid(
            "THREADX_SIMULATED_GPUS",
            &v,
            &format!("is invalid ({e})"),
            "no simulated GPU is listed",
        )
    })
}

fn parse_speeds(v: &str) -> Result<Vec<f64>, String> {
    v.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<f64>()
                .ok()
                .filter(|s| *s > MIN_SIMULATED_SPEED && *s <= MAX_SIMULATED_SPEED)
                .ok_or_else(|| {
                    format!(
                        "THREADX_SIMULATED_GPUS: each speed must be a number in \
                         ({MIN_SIMULATED_SPEED}, {MAX_SIMULATED_SPEED}], got '{p}'"
                    )
                })
        })
        .collect()
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
    if v.is_empty() {
        return None;
    }
    let step = [GpuStep::Alloc, GpuStep::Upload, GpuStep::Launch]
        .into_iter()
        .find(|s| s.name() == v);
    if step.is_none() {
        warn_invalid(
            "THREADX_GPU_INJECT_FAILURE",
            &v,
            "is not 'alloc', 'upload' or 'launch'",
            "no failure is injected",
        );
    }
    step
}

/// `THREADX_BLESS_GOLDEN=1` (tests only): rewrite the golden bits instead of checking them.
#[cfg(test)]
pub fn bless_golden() -> bool {
    var("THREADX_BLESS_GOLDEN").is_some_and(|v| v == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_speeds_are_bounded() {
        assert_eq!(parse_speeds("1.0, 0.5,,2"), Ok(vec![1.0, 0.5, 2.0]));
        assert_eq!(parse_speeds("1000"), Ok(vec![1000.0]));
        for bad in [
            "1e-300", "1e-20", "0.001", "0", "-1", "1000.5", "inf", "nan", "abc",
        ] {
            let e = parse_speeds(&format!("1,{bad}")).unwrap_err();
            assert!(e.contains(bad) && e.contains("(0.001, 1000]"), "{e}");
        }
    }

    #[test]
    fn switches() {
        assert_eq!(switch("ON"), Some(true));
        assert_eq!(switch(" 0 "), Some(false));
        assert_eq!(switch("maybe"), None);
    }
}
