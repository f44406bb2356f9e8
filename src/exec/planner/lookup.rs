//! Reading the profile for a candidate: its statistics in the call's size bucket, or a near one.

use crate::exec::profile::schema::{bucket_exponent, size_bucket, MachineProfile, Stat};

/// Samples a candidate needs before its prediction is trusted.
pub const MIN_SAMPLES: u64 = 3;
/// An unmeasured size bucket borrows the nearest trusted bucket this many powers of two away.
pub const NEIGHBOUR_BUCKETS: u32 = 2;

/// The statistics for `backend` in the call's size bucket, or — when that bucket has fewer than
/// [`MIN_SAMPLES`] — in the nearest trusted bucket at most [`NEIGHBOUR_BUCKETS`] powers of two away
/// (time per row changes slowly with size). Returns the bucket used.
pub fn lookup<'p>(
    p: &'p MachineProfile,
    indicator: &str,
    rows: usize,
    backend: &str,
) -> Option<(String, &'p Stat)> {
    let exp = bucket_exponent(rows);
    let own = size_bucket(rows);
    let exact = p.stat(indicator, &own, backend);
    if exact.is_some_and(|s| s.samples >= MIN_SAMPLES) {
        return exact.map(|s| (own, s));
    }
    for d in 1..=NEIGHBOUR_BUCKETS {
        for e in [exp.checked_sub(d), exp.checked_add(d)]
            .into_iter()
            .flatten()
        {
            let b = format!("2^{e}");
            if let Some(s) = p
                .stat(indicator, &b, backend)
                .filter(|s| s.samples >= MIN_SAMPLES)
            {
                return Some((b, s));
            }
        }
    }
    exact.map(|s| (own, s))
}

/// A plan's `profile_entries` line for a statistic the prediction used.
pub fn entry_line(indicator: &str, bucket: &str, backend: &str, s: &Stat) -> String {
    format!(
        "{indicator}/{bucket}/{backend}: {} samples, {:.3} ns/row",
        s.samples, s.ewma_ns_per_row
    )
}

/// The call's predicted wall time in ms at `s`'s time per row.
pub fn predicted_ms(s: &Stat, rows: usize) -> f64 {
    s.ewma_ns_per_row * rows as f64 / 1e6
}
