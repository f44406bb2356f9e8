//! The per-call planner: a pure function from what is known about a call to a plan.
//!
//! Inputs: indicator, rows, the user's placement, whether Polars already runs the call in
//! parallel, a forced worker count, the CPU, this machine's profile entry and one uniform draw for
//! exploration (the caller seeds it, so runs are reproducible). Candidates are `cpu:<w>` for
//! `w` in 1, 2, 4, … up to the worker cap (physical cores, one left for the system from 8 cores
//! up). A candidate's prediction is its profiled time per row in the call's size bucket times the
//! rows; it is trusted after [`MIN_SAMPLES`] samples (StarPU waits for ≥10 per history model; our
//! buckets are finer and calls cheaper). With every candidate trusted the fastest wins; otherwise
//! the conservative default (the thread heuristic below) runs, and now and then an unmeasured
//! candidate is tried instead so the profile fills in.

use serde::Serialize;

use super::cpuinfo::CpuInfo;
use super::device::Device;
use super::profile::schema::{bucket_exponent, size_bucket, MachineProfile, Stat};
use super::ExecError;

/// Samples a candidate needs before its prediction is trusted.
pub const MIN_SAMPLES: u64 = 3;
/// An unmeasured size bucket borrows the nearest trusted bucket this many powers of two away.
pub const NEIGHBOUR_BUCKETS: u32 = 2;
/// Probability of exploring an unmeasured candidate when the profile is incomplete.
pub const EXPLORE_RATE: f64 = 0.05;
/// Calls smaller than this are never used for exploration (threads cannot pay off there).
pub const MIN_EXPLORE_ROWS: usize = 1 << 14;
/// Rows per worker below which extra workers cost more than they save, until the profile says
/// otherwise (see [`small_input_threshold`]).
pub const DEFAULT_SMALL_ROWS: usize = 5_000;

pub struct PlanRequest<'a> {
    pub indicator: &'a str,
    pub rows: usize,
    pub device: &'a Device,
    pub caller_parallel: bool,
    pub forced_threads: Option<usize>,
    pub cpu: &'a CpuInfo,
    pub profile: Option<&'a MachineProfile>,
    /// Uniform in [0, 1); values >= EXPLORE_RATE never explore.
    pub draw: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub backend: String,
    pub workers: usize,
    /// Predicted wall time of the call, from the profile (None: no samples yet).
    pub predicted_ms: Option<f64>,
    pub samples: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub indicator: String,
    pub rows: usize,
    pub size_bucket: String,
    pub backend: String,
    pub workers: usize,
    pub reason: String,
    pub explored: bool,
    pub candidates: Vec<Candidate>,
    /// The profile entries the prediction used (`indicator/bucket/backend: samples, ewma`).
    pub profile_entries: Vec<String>,
}

/// Most workers a call may use: physical cores, leaving one for the system on 8+ cores.
pub fn worker_cap(cpu: &CpuInfo) -> usize {
    let p = cpu.physical_cores.max(1);
    if p >= 8 {
        p - 1
    } else {
        p
    }
}

/// A multi-worker backend must be this much faster than one worker (ratio of times) before it
/// moves the small-input threshold: tiny calls time within noise of each other.
pub const THRESHOLD_WIN: f64 = 0.9;

/// Rows below which one worker is used: the smallest size bucket where the profile shows a
/// trusted multi-worker candidate clearly ([`THRESHOLD_WIN`]) beating a trusted single worker,
/// else [`DEFAULT_SMALL_ROWS`].
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

/// The statistics for `backend` in the call's size bucket, or — when that bucket has fewer than
/// [`MIN_SAMPLES`] — in the nearest trusted bucket at most [`NEIGHBOUR_BUCKETS`] powers of two away
/// (time per row changes slowly with size). Returns the bucket used.
fn lookup<'p>(
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

fn candidate_workers(cap: usize) -> Vec<usize> {
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

pub fn plan(req: &PlanRequest) -> Result<Plan, ExecError> {
    if let Device::Gpu(_) = req.device {
        return Err(ExecError::NoGpu {
            indicator: static_name(req.indicator),
            device: req.device.to_string(),
        });
    }
    let bucket = size_bucket(req.rows);
    let cap = worker_cap(req.cpu);
    let mut entries = Vec::new();
    let candidates: Vec<Candidate> = candidate_workers(cap)
        .into_iter()
        .map(|w| {
            let backend = format!("cpu:{w}");
            let found = req
                .profile
                .and_then(|p| lookup(p, req.indicator, req.rows, &backend));
            let stat = found.as_ref().map(|(_, s)| *s);
            if let Some((used, s)) = &found {
                entries.push(format!(
                    "{}/{}/{}: {} samples, {:.3} ns/row",
                    req.indicator, used, backend, s.samples, s.ewma_ns_per_row
                ));
            }
            Candidate {
                backend,
                workers: w,
                predicted_ms: stat.map(|s| s.ewma_ns_per_row * req.rows as f64 / 1e6),
                samples: stat.map_or(0, |s| s.samples),
            }
        })
        .collect();
    let small = small_input_threshold(req.indicator, req.profile);
    let finish = |workers: usize, reason: String, explored: bool| Plan {
        indicator: req.indicator.to_string(),
        rows: req.rows,
        size_bucket: bucket.clone(),
        backend: format!("cpu:{workers}"),
        workers,
        reason,
        explored,
        candidates: candidates.clone(),
        profile_entries: entries.clone(),
    };

    if let Some(k) = req.forced_threads {
        return Ok(finish(
            k,
            format!("forced to {k} worker(s) by set_threads / THREADX_NUM_THREADS"),
            false,
        ));
    }
    if req.caller_parallel {
        return Ok(finish(
            1,
            "Polars already runs this call in parallel (.over/group_by): one worker".into(),
            false,
        ));
    }
    if req.rows < small || cap == 1 {
        let why = if cap == 1 {
            "one usable core".to_string()
        } else {
            format!("small input (< {small} rows): one worker")
        };
        return Ok(finish(1, why, false));
    }
    let trusted: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.samples >= MIN_SAMPLES)
        .collect();
    let fastest = |cs: &[&Candidate]| {
        cs.iter()
            .min_by(|a, b| {
                a.predicted_ms
                    .partial_cmp(&b.predicted_ms)
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
            .map(|c| (c.workers, c.predicted_ms.unwrap_or(0.0)))
    };
    if trusted.len() == candidates.len() {
        if let Some((w, ms)) = fastest(&trusted) {
            // Keep measuring the others now and then, so a candidate judged on unlucky samples
            // (or a machine whose load changed) is re-measured instead of abandoned for good.
            if req.draw < EXPLORE_RATE / 2.0 && req.rows >= MIN_EXPLORE_ROWS {
                let others = candidates.iter().filter(|c| c.workers != w);
                if let Some(c) = others.min_by_key(|c| (c.samples, c.workers)) {
                    let why = format!("re-measuring {} ({} samples)", c.backend, c.samples);
                    return Ok(finish(c.workers, why, true));
                }
            }
            return Ok(finish(
                w,
                format!("fastest predicted ({ms:.3} ms) among all measured candidates"),
                false,
            ));
        }
    }
    if req.draw < EXPLORE_RATE && req.rows >= MIN_EXPLORE_ROWS {
        if let Some(c) = candidates
            .iter()
            .filter(|c| c.samples < MIN_SAMPLES)
            .min_by_key(|c| (c.samples, c.workers))
        {
            return Ok(finish(
                c.workers,
                format!(
                    "exploring {} ({} of {MIN_SAMPLES} samples in bucket {bucket})",
                    c.backend, c.samples
                ),
                true,
            ));
        }
    }
    let default = heuristic_workers(req.rows, small, cap);
    Ok(finish(
        default,
        format!(
            "too few samples in bucket {bucket} ({} of {} candidates measured {MIN_SAMPLES}+ times): conservative default",
            trusted.len(),
            candidates.len()
        ),
        false,
    ))
}

/// Indicator names come from `Spec::name` (static); others map to a generic label.
fn static_name(name: &str) -> &'static str {
    crate::kernels::spec::INDICATORS
        .iter()
        .copied()
        .find(|n| *n == name)
        .unwrap_or("indicator")
}

/// Buckets' exponent, re-exported for callers that compare sizes.
pub fn bucket_of(rows: usize) -> u32 {
    bucket_exponent(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::profile::{Fingerprint, Sample};

    fn cpu(physical: usize) -> CpuInfo {
        CpuInfo {
            model: "test".into(),
            physical_cores: physical,
            logical_cores: physical * 2,
            hyperthreading: true,
        }
    }

    fn req<'a>(
        rows: usize,
        cpu: &'a CpuInfo,
        profile: Option<&'a MachineProfile>,
    ) -> PlanRequest<'a> {
        PlanRequest {
            indicator: "sma",
            rows,
            device: &Device::Auto,
            caller_parallel: false,
            forced_threads: None,
            cpu,
            profile,
            draw: 0.99,
        }
    }

    fn profile_with(entries: &[(usize, usize, f64, u64)]) -> MachineProfile {
        let mut p = MachineProfile::new(Fingerprint::current());
        for &(rows, workers, ns_per_row, n) in entries {
            for _ in 0..n {
                p.push(&Sample {
                    indicator: "sma".into(),
                    rows,
                    backend: format!("cpu:{workers}"),
                    seconds: ns_per_row * rows as f64 / 1e9,
                    unix: 1,
                });
            }
        }
        p
    }

    #[test]
    fn small_inputs_get_one_worker() {
        let c = cpu(8);
        let p = req(1_000, &c, None);
        assert_eq!(plan(&p).unwrap().workers, 1);
    }

    #[test]
    fn inside_a_parallel_context_one_worker() {
        let c = cpu(8);
        let mut p = req(50_000_000, &c, None);
        p.caller_parallel = true;
        let plan = plan(&p).unwrap();
        assert_eq!(plan.workers, 1);
        assert!(plan.reason.contains("parallel"));
    }

    #[test]
    fn forced_threads_are_honoured_and_gpu_is_an_error() {
        let c = cpu(4);
        let mut p = req(100, &c, None);
        p.forced_threads = Some(3);
        assert_eq!(plan(&p).unwrap().workers, 3);
        let gpu = Device::Gpu(None);
        p.device = &gpu;
        assert!(matches!(plan(&p), Err(ExecError::NoGpu { .. })));
    }

    #[test]
    fn cold_start_uses_the_conservative_default() {
        let c = cpu(8);
        let plan = plan(&req(10_000_000, &c, None)).unwrap();
        assert_eq!(
            plan.workers,
            heuristic_workers(10_000_000, DEFAULT_SMALL_ROWS, 7)
        );
        assert_eq!(plan.workers, 7);
        assert!(plan.reason.contains("too few samples"), "{}", plan.reason);
        assert!(plan.candidates.iter().all(|c| c.predicted_ms.is_none()));
    }

    #[test]
    fn a_full_profile_picks_the_fastest_candidate() {
        let c = cpu(4); // candidates cpu:1, cpu:2, cpu:4
        let rows = 1 << 20;
        let p = profile_with(&[(rows, 1, 4.0, 6), (rows, 2, 1.5, 6), (rows, 4, 2.5, 6)]);
        let plan = plan(&req(rows, &c, Some(&p))).unwrap();
        assert_eq!(plan.workers, 2, "{plan:?}");
        assert!(plan.reason.contains("fastest"));
        assert_eq!(plan.profile_entries.len(), 3);
        let two = plan.candidates.iter().find(|c| c.workers == 2).unwrap();
        assert!((two.predicted_ms.unwrap() - 1.5 * rows as f64 / 1e6).abs() < 1e-9);
    }

    #[test]
    fn exploration_happens_only_on_a_low_draw_and_is_reproducible() {
        let c = cpu(4);
        let rows = 1 << 20;
        let p = profile_with(&[(rows, 1, 4.0, 6)]);
        let mut r = req(rows, &c, Some(&p));
        r.draw = 0.5;
        assert!(!plan(&r).unwrap().explored);
        r.draw = 0.01;
        let a = plan(&r).unwrap();
        let b = plan(&r).unwrap();
        assert!(a.explored && a == b);
        assert_eq!(a.workers, 2, "fewest samples first, then fewest workers");
        let full = profile_with(&[(rows, 1, 4.0, 6), (rows, 2, 1.0, 9), (rows, 4, 3.0, 5)]);
        let mut r = req(rows, &c, Some(&full));
        r.draw = 0.01;
        let again = plan(&r).unwrap();
        assert!(
            again.explored && again.workers == 4,
            "re-measures the least-sampled other: {again:?}"
        );
        r.draw = 0.04;
        assert_eq!(plan(&r).unwrap().workers, 2);
    }

    #[test]
    fn the_small_input_threshold_is_learned() {
        let p = profile_with(&[
            (3_000, 1, 5.0, 5),
            (3_000, 2, 4.0, 5),
            (600, 1, 5.0, 5),
            (600, 2, 9.0, 5),
        ]);
        assert_eq!(small_input_threshold("sma", Some(&p)), 2048);
        assert_eq!(small_input_threshold("ema", Some(&p)), DEFAULT_SMALL_ROWS);
    }

    #[test]
    fn an_unmeasured_bucket_borrows_a_near_one() {
        let c = cpu(2);
        let p = profile_with(&[(1 << 20, 1, 4.0, 4), (1 << 20, 2, 1.0, 4)]);
        let near = plan(&req(1 << 21, &c, Some(&p))).unwrap();
        assert_eq!(near.workers, 2);
        assert!(
            near.profile_entries.iter().all(|e| e.contains("2^20")),
            "{near:?}"
        );
        let far = plan(&req(1 << 24, &c, Some(&p))).unwrap();
        assert!(far.reason.contains("too few samples"), "{far:?}");
    }

    #[test]
    fn worker_cap_leaves_headroom_on_big_machines() {
        assert_eq!(worker_cap(&cpu(2)), 2);
        assert_eq!(worker_cap(&cpu(16)), 15);
    }
}
