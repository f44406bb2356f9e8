//! CPU worker counts: the cap, the candidates, and the thread heuristic used until the profile
//! knows better.

use super::lookup::MIN_SAMPLES;
use crate::exec::cpuinfo::CpuInfo;
use crate::exec::profile::schema::MachineProfile;

/// Rows per worker below which extra workers cost more than they save, until the profile says
/// otherwise (see [`small_input_threshold`]).
pub const DEFAULT_SMALL_ROWS: usize = 5_000;

/// A multi-worker backend must be this much faster than one worker (ratio of times) before it
/// moves the small-input threshold: tiny calls time within noise of each other.
pub const THRESHOLD_WIN: f64 = 0.9;

/// Most workers a call may use: physical cores, leaving one for the system on 8+ cores.
pub fn worker_cap(cpu: &CpuInfo) -> usize {
    let p = cpu.physical_cores.max(1);
    if p >= 8 {
        p - 1
    } else {
        p
    }
}

/// The worker counts worth measuring: 1, 2, 4, … below the cap, and the cap.
pub fn candidate_workers(cap: usize) -> Vec<usize> {
    let mut w = vec![1];
    let mut k = 2;
    while k < cap {
        w.push(k);
        k *= 2;
    }
    if cap > 1 {
        w.push(cap);
    }
    w
}

/// Rows below which one worker is used: the smallest size bucket where the profile shows a
/// trusted multi-worker candidate clearly ([`THRESHOLD_WIN`]) beating a trusted single worker,
/// else [`DEFAULT_SMALL_ROWS`]. (Reads the profile's own backend names, `cpu:<w>`.)
pub fn small_input_threshold(indicator: &str, profile: Option<&MachineProfile>) -> usize {
    let Some(buckets) = profile.and_then(|p| p.timings.get(indicator)) else {
        return DEFAULT_SMALL_ROWS;
    };
    let mut wins: Vec<u32> = buckets
        .iter()
        .filter_map(|(bucket, backends)| {
            let one = backends.get("cpu:1").filter(|s| s.samples >= MIN_SAMPLES)?;
            let multi_wins = backends.iter().any(|(b, s)| {
                b.starts_with("cpu:")
                    && b != "cpu:1"
                    && s.samples >= MIN_SAMPLES
                    && s.ewma_ns_per_row < THRESHOLD_WIN * one.ewma_ns_per_row
            });
            let exp = bucket.strip_prefix("2^")?.parse::<u32>().ok()?;
            multi_wins.then_some(exp)
        })
        .collect();
    wins.sort_unstable();
    wins.first().map_or(DEFAULT_SMALL_ROWS, |&e| 1usize << e)
}

/// The thread heuristic: one worker below `small_rows` rows, else one per `small_rows` rows up to
/// the cap.
pub fn heuristic_workers(rows: usize, small_rows: usize, cap: usize) -> usize {
    (rows / small_rows.max(1)).clamp(1, cap.max(1))
}
