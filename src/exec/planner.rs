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

use std::collections::BTreeMap;

use serde::Serialize;

use super::cpuinfo::CpuInfo;
use super::device::Device;
use super::profile::schema::{bucket_exponent, size_bucket, LinkModel, MachineProfile, Stat};
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
    /// Usable GPUs (empty when there are none, or when discovery has not run and this call is
    /// too small to start it), and why there are none.
    pub gpus: &'a [GpuCandidate],
    pub gpu_reason: Option<&'a str>,
    /// The split ratios stored for the call's workload tag (member name → share), if any.
    pub balance: Option<&'a BTreeMap<String, f64>>,
}

/// One member of a multi-device plan and its share of the rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitShare {
    /// `cpu` or `gpu:<i>`.
    pub device: String,
    /// Its name in the profile (`cpu`, `gpu:<uuid>`) and in the balance ratios.
    pub key: String,
    pub share: f64,
}

/// A usable GPU as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuCandidate {
    pub index: usize,
    /// Its backend name in the profile, `gpu:<uuid>` (stable across device renumbering).
    pub profile_key: String,
    /// Host<->device link (from autotune), used to predict calls not measured yet.
    pub link: Option<LinkModel>,
}

/// What splitting a call across devices costs beyond the members' own times (threads, one
/// synchronisation per member), added to a set's modelled makespan.
pub const SET_OVERHEAD_MS: f64 = 0.2;

/// Calls below this many rows in `device="auto"` never consider a GPU (nor start CUDA to find
/// one): one O(1)-per-row indicator on host-resident data cannot pay for the transfers there.
pub const GPU_AUTO_MIN_ROWS: usize = 1 << 20;

/// Predicted wall time of a GPU call from the link model alone: every input and output row
/// crosses the link once, plus one latency per direction (kernel time is far below link time).
pub fn link_prediction_ms(
    link: &LinkModel,
    rows: usize,
    arrays_in: usize,
    arrays_out: usize,
) -> Option<f64> {
    if link.h2d_gb_per_s <= 0.0 || link.d2h_gb_per_s <= 0.0 {
        return None;
    }
    let bytes = |arrays: usize| (rows * arrays * 8) as f64;
    let secs = bytes(arrays_in) / (link.h2d_gb_per_s * 1e9)
        + bytes(arrays_out) / (link.d2h_gb_per_s * 1e9)
        + 2.0 * link.latency_us * 1e-6;
    Some(secs * 1e3)
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
    /// The GPU ordinal when the plan runs on a GPU (`backend` is then `gpu:<index>`).
    pub gpu: Option<usize>,
    /// The members and their shares when the plan splits the rows across devices.
    pub split: Vec<SplitShare>,
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
    match req.device {
        Device::Gpu(Some(ids)) if ids.len() > 1 => return forced_set(req, &req.device.to_string()),
        Device::Gpus | Device::All => return forced_set(req, &req.device.to_string()),
        Device::Gpu(ids) => return forced_gpu(req, ids.as_deref()),
        _ => {}
    }
    let bucket = size_bucket(req.rows);
    let cap = worker_cap(req.cpu);
    let mut entries = Vec::new();
    let mut candidates: Vec<Candidate> = candidate_workers(cap)
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
    let cpu_count = candidates.len();
    let gpu_eligible =
        !req.caller_parallel && req.forced_threads.is_none() && req.rows >= GPU_AUTO_MIN_ROWS;
    if gpu_eligible {
        for g in req.gpus {
            let found = req
                .profile
                .and_then(|p| lookup(p, req.indicator, req.rows, &g.profile_key));
            if let Some((used, s)) = &found {
                entries.push(format!(
                    "{}/{}/{}: {} samples, {:.3} ns/row",
                    req.indicator, used, g.profile_key, s.samples, s.ewma_ns_per_row
                ));
            }
            let (ins, outs) = arrays_of(req.indicator);
            let predicted = found
                .as_ref()
                .map(|(_, s)| s.ewma_ns_per_row * req.rows as f64 / 1e6)
                .or_else(|| {
                    g.link
                        .as_ref()
                        .and_then(|l| link_prediction_ms(l, req.rows, ins, outs))
                });
            candidates.push(Candidate {
                backend: format!("gpu:{}", g.index),
                workers: 1,
                predicted_ms: predicted,
                samples: found.map_or(0, |(_, s)| s.samples),
            });
        }
    }
    // Device sets: every GPU with the CPU, and every GPU alone when there are several. Predicted
    // by makespan (each member's share of the rows at its measured time per row, transfers
    // included), so they win only when splitting beats the best single device.
    if gpu_eligible && !req.gpus.is_empty() {
        let mut sets = vec!["all".to_string()];
        if req.gpus.len() > 1 {
            sets.push("gpus".to_string());
        }
        for name in sets {
            let members = set_members_of(req, &name);
            let (shares, _) = shares_for(req, &members);
            let per_member: Vec<Option<(f64, u64)>> = shares
                .iter()
                .map(|m| member_stat(req, &m.key).map(|s| (s.ewma_ns_per_row, s.samples)))
                .collect();
            let model = per_member
                .iter()
                .zip(&shares)
                .map(|(st, m)| st.map(|(ns, _)| m.share * req.rows as f64 * ns / 1e6))
                .collect::<Option<Vec<f64>>>()
                .map(|t| t.into_iter().fold(0.0, f64::max) + SET_OVERHEAD_MS);
            // Once the set itself has been measured, its own times replace the model (which
            // cannot see contention between the members, e.g. for memory bandwidth).
            let own = req
                .profile
                .and_then(|p| lookup(p, req.indicator, req.rows, &name))
                .filter(|(_, s)| s.samples >= MIN_SAMPLES);
            if let Some((used, s)) = &own {
                entries.push(format!(
                    "{}/{}/{}: {} samples, {:.3} ns/row",
                    req.indicator, used, name, s.samples, s.ewma_ns_per_row
                ));
            }
            let predicted = own
                .as_ref()
                .map(|(_, s)| s.ewma_ns_per_row * req.rows as f64 / 1e6)
                .or(model);
            let samples = per_member
                .iter()
                .map(|s| s.map_or(0, |(_, n)| n))
                .min()
                .unwrap_or(0);
            candidates.push(Candidate {
                backend: name,
                workers: cap,
                predicted_ms: predicted,
                samples,
            });
        }
    }
    let small = small_input_threshold(req.indicator, req.profile);
    let finish_on = |backend: &Candidate, reason: String, explored: bool| {
        let gpu = backend
            .backend
            .strip_prefix("gpu:")
            .and_then(|i| i.parse().ok());
        Plan {
            indicator: req.indicator.to_string(),
            rows: req.rows,
            size_bucket: bucket.clone(),
            backend: backend.backend.clone(),
            workers: backend.workers,
            reason,
            explored,
            gpu,
            split: set_members(&backend.backend)
                .map(|name| shares_for(req, &set_members_of(req, &name)).0)
                .unwrap_or_default(),
            candidates: candidates.clone(),
            profile_entries: entries.clone(),
        }
    };
    let finish = |workers: usize, reason: String, explored: bool| Plan {
        indicator: req.indicator.to_string(),
        rows: req.rows,
        size_bucket: bucket.clone(),
        backend: format!("cpu:{workers}"),
        workers,
        reason,
        explored,
        gpu: None,
        split: Vec::new(),
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
    let fastest = |cs: &[&Candidate]| -> Option<Candidate> {
        cs.iter()
            .min_by(|a, b| {
                a.predicted_ms
                    .partial_cmp(&b.predicted_ms)
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
            .map(|c| (*c).clone())
    };
    let cpu_trusted = candidates[..cpu_count]
        .iter()
        .all(|c| c.samples >= MIN_SAMPLES);
    let untrusted_gpu = candidates[cpu_count..]
        .iter()
        .find(|c| c.samples < MIN_SAMPLES);
    // An unmeasured GPU is tried now and then (it may well win on large inputs).
    if let Some(g) = untrusted_gpu {
        if req.draw < EXPLORE_RATE {
            let why = format!(
                "exploring {} ({} of {MIN_SAMPLES} samples in bucket {bucket})",
                g.backend, g.samples
            );
            return Ok(finish_on(g, why, true));
        }
    }
    if cpu_trusted {
        if let Some(best) = fastest(&trusted) {
            let ms = best.predicted_ms.unwrap_or(0.0);
            // Keep measuring the others now and then, so a candidate judged on unlucky samples
            // (or a machine whose load changed) is re-measured instead of abandoned for good.
            if req.draw < EXPLORE_RATE / 2.0 && req.rows >= MIN_EXPLORE_ROWS {
                let others = candidates.iter().filter(|c| c.backend != best.backend);
                if let Some(c) = others.min_by_key(|c| (c.samples, c.workers)) {
                    let why = format!("re-measuring {} ({} samples)", c.backend, c.samples);
                    return Ok(finish_on(c, why, true));
                }
            }
            let what = if candidates.len() > cpu_count {
                "measured CPU and GPU"
            } else {
                "all measured"
            };
            return Ok(finish_on(
                &best,
                format!("fastest predicted ({ms:.3} ms) among {what} candidates"),
                false,
            ));
        }
    }
    if req.draw < EXPLORE_RATE && req.rows >= MIN_EXPLORE_ROWS {
        if let Some(c) = candidates[..cpu_count]
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

/// `device="gpu"` / `"gpu:<i>"`: the first listed (or first usable) GPU, or an error that says why
/// there is none.
fn forced_gpu(req: &PlanRequest, ids: Option<&[usize]>) -> Result<Plan, ExecError> {
    let indicator = static_name(req.indicator);
    if req.gpus.is_empty() {
        return Err(ExecError::NoGpu {
            indicator,
            device: req.device.to_string(),
            reason: req.gpu_reason.unwrap_or("no GPU backend").to_string(),
        });
    }
    let index = match ids {
        None => req.gpus[0].index,
        Some(ids) => {
            if let Some(missing) = ids
                .iter()
                .find(|i| !req.gpus.iter().any(|g| g.index == **i))
            {
                return Err(ExecError::NoSuchGpu {
                    indicator,
                    ordinal: *missing,
                    available: req.gpus.iter().map(|g| g.index).collect(),
                });
            }
            ids[0]
        }
    };
    let bucket = size_bucket(req.rows);
    let gpu = &req.gpus[req.gpus.iter().position(|g| g.index == index).unwrap_or(0)];
    let stat = req
        .profile
        .and_then(|p| lookup(p, req.indicator, req.rows, &gpu.profile_key));
    let backend = format!("gpu:{index}");
    Ok(Plan {
        indicator: req.indicator.to_string(),
        rows: req.rows,
        size_bucket: bucket,
        backend: backend.clone(),
        workers: 1,
        reason: format!("forced by device='{}'", req.device),
        explored: false,
        gpu: Some(index),
        split: Vec::new(),
        candidates: vec![Candidate {
            backend,
            workers: 1,
            predicted_ms: stat
                .as_ref()
                .map(|(_, s)| s.ewma_ns_per_row * req.rows as f64 / 1e6),
            samples: stat.map_or(0, |(_, s)| s.samples),
        }],
        profile_entries: Vec::new(),
    })
}

/// The members of a named set: `all` (GPUs + CPU), `gpus`, or `gpu:<i>,<j>`; `None` for a
/// single-device backend name.
fn set_members(name: &str) -> Option<String> {
    (name == "all" || name == "gpus" || (name.starts_with("gpu:") && name.contains(',')))
        .then(|| name.to_string())
}

/// (device label, profile key) of every member of set `name`.
fn set_members_of(req: &PlanRequest, name: &str) -> Vec<(String, String)> {
    let gpu = |g: &GpuCandidate| (format!("gpu:{}", g.index), g.profile_key.clone());
    let mut out: Vec<(String, String)> = match name.strip_prefix("gpu:") {
        Some(list) => list
            .split(',')
            .filter_map(|i| i.trim().parse::<usize>().ok())
            .filter_map(|i| req.gpus.iter().find(|g| g.index == i))
            .map(gpu)
            .collect(),
        None => req.gpus.iter().map(gpu).collect(),
    };
    if name == "all" {
        out.push(("cpu".into(), "cpu".into()));
    }
    out
}

/// A member's trusted single-device statistics in the call's bucket (the CPU as a member uses
/// every worker the cap allows).
fn member_stat<'p>(req: &PlanRequest<'p>, key: &str) -> Option<&'p Stat> {
    let backend = if key == "cpu" {
        format!("cpu:{}", worker_cap(req.cpu))
    } else {
        key.to_string()
    };
    req.profile
        .and_then(|p| lookup(p, req.indicator, req.rows, &backend))
        .map(|(_, s)| s)
        .filter(|s| s.samples >= MIN_SAMPLES)
}

/// Shares for `members`: the workload's stored ratios when they cover every member, else
/// throughputs from the members' measured times, else equal shares; and where they came from.
fn shares_for(req: &PlanRequest, members: &[(String, String)]) -> (Vec<SplitShare>, &'static str) {
    let keys: Vec<String> = members.iter().map(|(_, k)| k.clone()).collect();
    let stored: Option<Vec<f64>> = req.balance.and_then(|b| {
        keys.iter()
            .map(|k| b.get(k).copied().filter(|v| *v >= 0.0))
            .collect()
    });
    let measured: Option<Vec<f64>> = keys
        .iter()
        .map(|k| member_stat(req, k).map(|s| 1.0 / s.ewma_ns_per_row.max(1e-12)))
        .collect();
    let (raw, source) = match (stored, measured) {
        (Some(r), _) if r.iter().sum::<f64>() > 0.0 => (r, "stored balance ratios"),
        (_, Some(m)) => (m, "measured throughputs"),
        _ => (
            vec![1.0; keys.len()],
            "equal shares (no ratios or measurements yet)",
        ),
    };
    let total: f64 = raw.iter().sum::<f64>().max(f64::MIN_POSITIVE);
    let shares = members
        .iter()
        .zip(raw)
        .map(|((device, key), r)| SplitShare {
            device: device.clone(),
            key: key.clone(),
            share: r / total,
        })
        .collect();
    (shares, source)
}

/// `device="gpus"`, `"all"` or `"gpu:<i>,<j>"`: a split across those devices.
fn forced_set(req: &PlanRequest, name: &str) -> Result<Plan, ExecError> {
    let indicator = static_name(req.indicator);
    if req.gpus.is_empty() {
        return Err(ExecError::NoGpu {
            indicator,
            device: req.device.to_string(),
            reason: req.gpu_reason.unwrap_or("no GPU backend").to_string(),
        });
    }
    if let Device::Gpu(Some(ids)) = req.device {
        if let Some(missing) = ids
            .iter()
            .find(|i| !req.gpus.iter().any(|g| g.index == **i))
        {
            return Err(ExecError::NoSuchGpu {
                indicator,
                ordinal: *missing,
                available: req.gpus.iter().map(|g| g.index).collect(),
            });
        }
    }
    let members = set_members_of(req, name);
    let (split, source) = shares_for(req, &members);
    let cap = worker_cap(req.cpu);
    let labels: Vec<String> = split
        .iter()
        .map(|m| format!("{} {:.1}%", m.device, m.share * 100.0))
        .collect();
    Ok(Plan {
        indicator: req.indicator.to_string(),
        rows: req.rows,
        size_bucket: size_bucket(req.rows),
        backend: name.to_string(),
        workers: cap,
        reason: format!(
            "forced by device='{}': split {} ({source})",
            req.device,
            labels.join(", ")
        ),
        explored: false,
        gpu: None,
        split,
        candidates: Vec::new(),
        profile_entries: Vec::new(),
    })
}

/// Arrays an indicator moves each way (inputs up, outputs down), for link predictions: read from
/// its declaration in the registry.
fn arrays_of(indicator: &str) -> (usize, usize) {
    crate::kernels::registry::find(indicator).map_or((1, 1), |d| (d.inputs.len(), d.outputs.len()))
}

/// Indicator names come from the registry (static); others map to a generic label.
fn static_name(name: &str) -> &'static str {
    crate::kernels::registry::find(name).map_or("indicator", |d| d.name)
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
            gpus: &[],
            gpu_reason: Some("test: no GPU"),
            balance: None,
        }
    }

    fn gpu(index: usize, link: Option<LinkModel>) -> GpuCandidate {
        GpuCandidate {
            index,
            profile_key: format!("gpu:uuid-{index}"),
            link,
        }
    }

    /// Adds three `sma` samples of `rows` rows at `ns` per row for `backend`.
    fn measure(p: &mut MachineProfile, backend: &str, rows: usize, ns: f64) {
        for _ in 0..3 {
            p.push(&Sample {
                indicator: "sma".into(),
                rows,
                backend: backend.into(),
                seconds: ns * rows as f64 / 1e9,
                unix: 1,
            });
        }
    }

    /// A profile where every CPU candidate of a 4-core machine and `gpu:uuid-0` are measured.
    fn cpu_and_gpu_profile(rows: usize, cpu_ns: f64, gpu_ns: f64) -> MachineProfile {
        let mut p = profile_with(&[
            (rows, 1, cpu_ns * 2.0, 3),
            (rows, 2, cpu_ns * 1.5, 3),
            (rows, 4, cpu_ns, 3),
        ]);
        measure(&mut p, "gpu:uuid-0", rows, gpu_ns);
        p
    }

    #[test]
    fn forced_gpu_picks_the_listed_device_or_explains_why_not() {
        let c = cpu(4);
        let gpus = [gpu(0, None), gpu(1, None)];
        let mut r = req(10, &c, None);
        r.device = &Device::Gpu(None);
        assert!(
            matches!(plan(&r), Err(ExecError::NoGpu { reason, .. }) if reason == "test: no GPU")
        );
        r.gpus = &gpus;
        assert_eq!(plan(&r).unwrap().gpu, Some(0));
        let one = Device::Gpu(Some(vec![1]));
        r.device = &one;
        let p = plan(&r).unwrap();
        assert_eq!((p.gpu, p.backend.as_str()), (Some(1), "gpu:1"));
        let missing = Device::Gpu(Some(vec![7]));
        r.device = &missing;
        assert!(matches!(
            plan(&r),
            Err(ExecError::NoSuchGpu { ordinal: 7, .. })
        ));
    }

    #[test]
    fn auto_picks_the_gpu_only_when_its_measured_time_wins() {
        let c = cpu(4);
        let gpus = [gpu(0, None)];
        let rows = GPU_AUTO_MIN_ROWS * 4;
        let fast_gpu = cpu_and_gpu_profile(rows, 2.0, 0.5);
        let mut r = req(rows, &c, Some(&fast_gpu));
        r.gpus = &gpus;
        let p = plan(&r).unwrap();
        // GPU 0.5 ns/row beats the CPU's 2.0; splitting 80/20 by throughput beats both.
        let gpu_alone = p.candidates.iter().find(|c| c.backend == "gpu:0").unwrap();
        let cpu_best = p.candidates.iter().find(|c| c.backend == "cpu:4").unwrap();
        assert!(gpu_alone.predicted_ms < cpu_best.predicted_ms);
        assert_eq!(p.backend, "all", "{}", p.reason);
        assert!((p.split[0].share - 0.8).abs() < 1e-12, "{:?}", p.split);
        // Once the split has been measured slower than the GPU alone, the GPU alone wins.
        let mut measured = fast_gpu.clone();
        measure(&mut measured, "all", rows, 0.7);
        r.profile = Some(&measured);
        let p = plan(&r).unwrap();
        assert_eq!(
            (p.gpu, p.backend.as_str()),
            (Some(0), "gpu:0"),
            "{}",
            p.reason
        );
        let mut slow_gpu = cpu_and_gpu_profile(rows, 2.0, 5.0);
        measure(&mut slow_gpu, "all", rows, 2.5);
        r.profile = Some(&slow_gpu);
        let p = plan(&r).unwrap();
        assert_eq!((p.gpu, p.backend.as_str()), (None, "cpu:4"), "{}", p.reason);
        // Small calls and calls inside Polars' parallel sections never consider the GPU.
        let mut small = req(GPU_AUTO_MIN_ROWS / 2, &c, Some(&fast_gpu));
        small.gpus = &gpus;
        assert!(plan(&small)
            .unwrap()
            .candidates
            .iter()
            .all(|c| !c.backend.starts_with("gpu")));
        r.profile = Some(&fast_gpu);
        r.caller_parallel = true;
        assert_eq!(plan(&r).unwrap().gpu, None);
    }

    #[test]
    fn forced_sets_use_stored_ratios_then_throughputs_then_equal_shares() {
        let c = cpu(4);
        let gpus = [gpu(0, None), gpu(1, None)];
        let mut r = req(1000, &c, None);
        r.gpus = &gpus;
        r.device = &Device::Gpus;
        let p = plan(&r).unwrap();
        assert_eq!(p.backend, "gpus");
        assert_eq!(
            p.split
                .iter()
                .map(|m| (m.device.as_str(), m.share))
                .collect::<Vec<_>>(),
            vec![("gpu:0", 0.5), ("gpu:1", 0.5)]
        );
        let stored: BTreeMap<String, f64> =
            [("gpu:uuid-0", 3.0), ("gpu:uuid-1", 1.0), ("cpu", 4.0)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
        r.balance = Some(&stored);
        r.device = &Device::All;
        let p = plan(&r).unwrap();
        let shares: Vec<f64> = p.split.iter().map(|m| m.share).collect();
        assert_eq!(shares, vec![0.375, 0.125, 0.5]);
        assert!(p.reason.contains("stored balance ratios"), "{}", p.reason);
        // A set with a member the ratios do not cover falls back to measured throughputs.
        let rows = 1 << 21;
        let prof = cpu_and_gpu_profile(rows, 2.0, 1.0);
        let one = BTreeMap::from([("gpu:uuid-0".to_string(), 1.0)]);
        let mut r = req(rows, &c, Some(&prof));
        r.gpus = &gpus[..1];
        r.balance = Some(&one);
        r.device = &Device::All;
        let p = plan(&r).unwrap();
        assert!(p.reason.contains("measured throughputs"), "{}", p.reason);
        let shares: Vec<f64> = p.split.iter().map(|m| m.share).collect();
        assert!((shares[0] - 2.0 / 3.0).abs() < 1e-12, "{shares:?}");
        let two = Device::Gpu(Some(vec![0, 5]));
        r.device = &two;
        assert!(matches!(
            plan(&r),
            Err(ExecError::NoSuchGpu { ordinal: 5, .. })
        ));
    }

    #[test]
    fn auto_splits_only_when_the_predicted_makespan_wins() {
        let c = cpu(4);
        let gpus = [gpu(0, None)];
        let rows = GPU_AUTO_MIN_ROWS * 4;
        // GPU 1.0 ns/row, CPU (4 workers) 1.0 ns/row: split halves the time -> "all".
        let even = cpu_and_gpu_profile(rows, 1.0, 1.0);
        let mut r = req(rows, &c, Some(&even));
        r.gpus = &gpus;
        let p = plan(&r).unwrap();
        assert_eq!(p.backend, "all", "{}", p.reason);
        let all = p.candidates.iter().find(|c| c.backend == "all").unwrap();
        let single = rows as f64 * 1.0 / 1e6;
        let want = single / 2.0 + SET_OVERHEAD_MS;
        assert!((all.predicted_ms.unwrap() - want).abs() < 1e-9, "{all:?}");
        assert_eq!(p.split.len(), 2);
        // Without measurements for every member a set is never picked.
        let cpu_only = profile_with(&[(rows, 1, 4.0, 3), (rows, 2, 3.0, 3), (rows, 4, 2.0, 3)]);
        r.profile = Some(&cpu_only);
        let p = plan(&r).unwrap();
        assert!(p.split.is_empty(), "{}", p.backend);
    }

    #[test]
    fn an_unmeasured_gpu_is_explored_and_predicted_from_its_link() {
        let c = cpu(4);
        let link = LinkModel {
            h2d_gb_per_s: 25.0,
            d2h_gb_per_s: 20.0,
            latency_us: 10.0,
            samples: 1,
        };
        let gpus = [gpu(0, Some(link.clone()))];
        let rows = GPU_AUTO_MIN_ROWS * 2;
        let mut r = req(rows, &c, None);
        r.gpus = &gpus;
        let p = plan(&r).unwrap();
        assert_eq!(p.gpu, None, "no samples: the CPU default runs");
        let g = p.candidates.iter().find(|c| c.backend == "gpu:0").unwrap();
        let want = (rows as f64 * 8.0 / 25e9 + rows as f64 * 8.0 / 20e9 + 20e-6) * 1e3;
        assert!(
            (g.predicted_ms.unwrap() - want).abs() < 1e-9,
            "{g:?} vs {want}"
        );
        r.draw = EXPLORE_RATE / 4.0;
        let p = plan(&r).unwrap();
        assert!(p.explored && p.gpu == Some(0), "{}", p.reason);
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
