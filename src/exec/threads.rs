//! How many CPU workers a call gets.
//!
//! Order of precedence: `threadx.set_threads(n)` (process-wide), then the environment variable
//! `THREADX_NUM_THREADS`, then the optimizer: one worker for small inputs or when Polars already
//! runs the call in parallel, otherwise up to one per core with at least [`MIN_ROWS_PER_WORKER`]
//! rows each. Forced counts are honoured exactly (tests use them to prove split-invariance).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Below this many rows per worker, thread hand-off costs more than it saves.
pub const MIN_ROWS_PER_WORKER: usize = 5_000;
/// The largest worker count accepted from users.
pub const MAX_THREADS: usize = 1024;

static FORCED: AtomicUsize = AtomicUsize::new(0);

/// Forces a worker count for every later call (`None` hands control back to the optimizer).
pub fn set_threads(n: Option<usize>) -> Result<(), String> {
    match n {
        Some(k) if !(1..=MAX_THREADS).contains(&k) => Err(format!(
            "threadx.set_threads: n must be an integer in [1, {MAX_THREADS}] or None, got {k}"
        )),
        Some(k) => {
            FORCED.store(k, Ordering::Relaxed);
            Ok(())
        }
        None => {
            FORCED.store(0, Ordering::Relaxed);
            Ok(())
        }
    }
}

/// `THREADX_NUM_THREADS`, read once at the first call (like `RAYON_NUM_THREADS`); values outside
/// `1..=MAX_THREADS` or not integers are ignored.
fn env_threads() -> Option<usize> {
    static ENV: OnceLock<Option<usize>> = OnceLock::new();
    *ENV.get_or_init(|| {
        std::env::var("THREADX_NUM_THREADS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|k| (1..=MAX_THREADS).contains(k))
    })
}

/// The forced worker count, from `set_threads` or `THREADX_NUM_THREADS`, if any.
pub fn forced_threads() -> Option<usize> {
    match FORCED.load(Ordering::Relaxed) {
        0 => env_threads(),
        k => Some(k),
    }
}

/// Logical cores available to this process, read once: `available_parallelism` parses cgroup
/// files on every call (tens of microseconds), which `.over()` with thousands of groups would pay
/// per group.
pub fn available_cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Workers for a call over `n_rows` rows.
pub fn workers_for(n_rows: usize, caller_parallel: bool) -> usize {
    if let Some(k) = forced_threads() {
        return k;
    }
    optimal_workers(n_rows, caller_parallel, available_cores())
}

/// The optimizer's choice, as a pure function (unit-tested).
pub fn optimal_workers(n_rows: usize, caller_parallel: bool, cores: usize) -> usize {
    if caller_parallel {
        return 1;
    }
    (n_rows / MIN_ROWS_PER_WORKER).clamp(1, cores.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_inputs_and_parallel_callers_get_one_worker() {
        assert_eq!(optimal_workers(1_000, false, 16), 1);
        assert_eq!(optimal_workers(9_999, false, 16), 1);
        assert_eq!(optimal_workers(10_000_000, true, 16), 1);
        assert_eq!(optimal_workers(10_000_000, false, 16), 16);
        assert_eq!(optimal_workers(12_000, false, 16), 2);
    }

    #[test]
    fn forced_counts_are_validated() {
        assert!(set_threads(Some(0)).is_err());
        assert!(set_threads(Some(MAX_THREADS + 1)).is_err());
    }
}
