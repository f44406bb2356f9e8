//! Step 2 of planning a call: choosing among the candidates.
//!
//! In order: a forced worker count wins; inside Polars' parallel sections one worker; small
//! inputs (or one core) one CPU worker, against which a measured GPU or device set still competes
//! on predicted time (those rules are about threads, not devices). Otherwise, with every CPU candidate trusted ([`MIN_SAMPLES`]
//! samples; StarPU waits for ≥10 per history model, our buckets are finer and calls cheaper) the
//! fastest prediction wins; else the conservative default (the thread heuristic) runs. Now and
//! then — on a low exploration draw — an unmeasured candidate is tried instead, or a measured one
//! re-measured, so the profile fills in and recovers from unlucky samples.

use super::candidates::Candidates;
use super::lookup::MIN_SAMPLES;
use super::plan::{Candidate, Plan};
use super::request::PlanRequest;
use super::shares::split_of;
use super::workers::{heuristic_workers, small_input_threshold, worker_cap};
use crate::exec::placement::Placement;
use crate::exec::profile::schema::size_bucket;

/// Probability of exploring an unmeasured candidate when the profile is incomplete.
pub const EXPLORE_RATE: f64 = 0.05;
/// Calls smaller than this are never used for exploration (threads cannot pay off there).
pub const MIN_EXPLORE_ROWS: usize = 1 << 14;

/// Builds the plan for the chosen candidate; every plan of a call lists all the candidates.
struct Finish<'r, 'a> {
    req: &'r PlanRequest<'a>,
    bucket: String,
    found: &'r Candidates,
}

impl Finish<'_, '_> {
    fn on(&self, chosen: &Candidate, reason: String, explored: bool) -> Plan {
        let split = chosen
            .backend
            .set()
            .map(|set| split_of(self.req, set))
            .unwrap_or_default();
        self.plan(
            chosen.backend.clone(),
            chosen.workers,
            reason,
            explored,
            split,
        )
    }

    fn cpu(&self, workers: usize, reason: String, explored: bool) -> Plan {
        self.plan(
            Placement::Cpu { workers },
            workers,
            reason,
            explored,
            Vec::new(),
        )
    }

    fn plan(
        &self,
        backend: Placement,
        workers: usize,
        reason: String,
        explored: bool,
        split: Vec<crate::exec::devset::SplitShare>,
    ) -> Plan {
        Plan {
            indicator: self.req.indicator.to_string(),
            rows: self.req.rows,
            size_bucket: self.bucket.clone(),
            gpu: backend.gpu(),
            backend,
            workers,
            reason,
            explored,
            split,
            candidates: self.found.all.clone(),
            profile_entries: self.found.entries.clone(),
        }
    }
}

/// The plan for `req` (an `auto` or `cpu` call) among `found`.
pub fn choose(req: &PlanRequest, found: &Candidates) -> Plan {
    let bucket = size_bucket(req.rows);
    let cap = worker_cap(req.cpu);
    let small = small_input_threshold(req.workload, req.profile);
    let finish = Finish {
        req,
        bucket: bucket.clone(),
        found,
    };
    let candidates = &found.all;

    if let Some(k) = req.forced_threads {
        return finish.cpu(
            k,
            format!("forced to {k} worker(s) by set_threads / THREADX_NUM_THREADS"),
            false,
        );
    }
    if req.caller_parallel {
        return finish.cpu(
            1,
            "Polars already runs this call in parallel (.over/group_by): one worker".into(),
            false,
        );
    }
    if req.rows < small || cap == 1 {
        let why = if cap == 1 {
            "one usable core".to_string()
        } else {
            format!("small input (< {small} rows): one worker")
        };
        return one_worker_or_device(req, found, &finish, why);
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
    let cpu_trusted = found.cpu().iter().all(|c| c.samples >= MIN_SAMPLES);
    let untrusted_device = found.devices().iter().find(|c| c.samples < MIN_SAMPLES);
    // An unmeasured GPU (or set) is tried now and then (it may well win on large inputs).
    if let Some(g) = untrusted_device {
        if req.draw < EXPLORE_RATE {
            let why = format!(
                "exploring {} ({} of {MIN_SAMPLES} samples in bucket {bucket})",
                g.backend, g.samples
            );
            return finish.on(g, why, true);
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
                    return finish.on(c, why, true);
                }
            }
            let what = if found.devices().is_empty() {
                "all measured"
            } else {
                "measured CPU and GPU"
            };
            return finish.on(
                &best,
                format!("fastest predicted ({ms:.3} ms) among {what} candidates"),
                false,
            );
        }
    }
    if req.draw < EXPLORE_RATE && req.rows >= MIN_EXPLORE_ROWS {
        if let Some(c) = found
            .cpu()
            .iter()
            .filter(|c| c.samples < MIN_SAMPLES)
            .min_by_key(|c| (c.samples, c.workers))
        {
            return finish.cpu(
                c.workers,
                format!(
                    "exploring {} ({} of {MIN_SAMPLES} samples in bucket {bucket})",
                    c.backend, c.samples
                ),
                true,
            );
        }
    }
    let default = heuristic_workers(req.rows, small, cap);
    finish.cpu(
        default,
        format!(
            "too few samples in bucket {bucket} ({} of {} candidates measured {MIN_SAMPLES}+ times): conservative default",
            trusted.len(),
            candidates.len()
        ),
        false,
    )
}

/// Where threads do not pay off (a small input, one core): one CPU worker, unless a GPU or device
/// set candidate (listed only where GPUs are considered) is measured and predicted faster than
/// that worker, measured too. An unmeasured one is explored now and then, as below.
fn one_worker_or_device(
    req: &PlanRequest,
    found: &Candidates,
    finish: &Finish,
    why: String,
) -> Plan {
    let devices = found.devices();
    if let Some(g) = devices.iter().find(|c| c.samples < MIN_SAMPLES) {
        if req.draw < EXPLORE_RATE {
            let why = format!(
                "exploring {} ({} of {MIN_SAMPLES} samples in bucket {})",
                g.backend, g.samples, finish.bucket
            );
            return finish.on(g, why, true);
        }
    }
    let one = found
        .cpu()
        .iter()
        .find(|c| c.workers == 1)
        .filter(|c| c.samples >= MIN_SAMPLES)
        .and_then(|c| c.predicted_ms);
    let faster = devices
        .iter()
        .filter(|c| c.samples >= MIN_SAMPLES)
        .filter_map(|c| Some((c, c.predicted_ms?)))
        .filter(|(_, ms)| one.is_some_and(|one| *ms < one))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    match (faster, one) {
        (Some((c, ms)), Some(one)) => finish.on(
            c,
            format!(
                "{why}, but {} is predicted faster ({ms:.3} ms against {one:.3} ms)",
                c.backend
            ),
            false,
        ),
        _ => finish.cpu(1, why, false),
    }
}
