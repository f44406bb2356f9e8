//! How many CPU workers a call gets.
//!
//! Order of precedence: `threadx.set_threads(n)` (process-wide), then the environment variable
//! `THREADX_NUM_THREADS`, then the planner (`planner/`): one worker for small inputs or when
//! Polars already runs the call in parallel, otherwise what the profile shows to be fastest, up to
//! the physical-core cap. Forced counts are honoured exactly (tests use them to prove
//! split-invariance).

use std::sync::atomic::{AtomicUsize, Ordering};

use super::config;
pub use super::config::MAX_THREADS;

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

/// The forced worker count, from `set_threads` or `THREADX_NUM_THREADS`, if any.
pub fn forced_threads() -> Option<usize> {
    match FORCED.load(Ordering::Relaxed) {
        0 => config::num_threads(),
        k => Some(k),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forced_counts_are_validated() {
        assert!(set_threads(Some(0)).is_err());
        assert!(set_threads(Some(MAX_THREADS + 1)).is_err());
    }
}
