//! Step 1 of planning a call: every placement worth considering, with its predicted time.
//!
//! `cpu:<w>` for `w` in 1, 2, 4, … up to the worker cap; for large standalone calls also every
//! usable GPU and the device sets `all` (and `gpus` with several GPUs). A prediction is the
//! profiled time per row in the call's size bucket (or a near one) times the rows; a GPU not yet
//! measured is predicted from its link model, a set from its members' makespan until the set
//! itself has been measured.

use super::lookup::{entry_line, lookup, predicted_ms, MIN_SAMPLES};
use super::plan::Candidate;
use super::request::PlanRequest;
use super::shares::{member_stat, members_of, shares_for};
use super::workers::{candidate_workers, worker_cap};
use crate::exec::devset::DeviceSet;
use crate::exec::placement::Placement;
use crate::exec::profile::schema::LinkModel;

/// What splitting a call across devices costs beyond the members' own times (threads, one
/// synchronisation per member), added to a set's modelled makespan.
pub const SET_OVERHEAD_MS: f64 = 0.2;

/// Calls below this many rows in `device="auto"` never consider a GPU (nor start CUDA to find
/// one): one O(1)-per-row indicator on host-resident data cannot pay for the transfers there.
pub const GPU_AUTO_MIN_ROWS: usize = 1 << 20;

/// The candidates of a call, CPU ones first.
pub struct Candidates {
    pub all: Vec<Candidate>,
    /// `all[..cpu_count]` are the `cpu:<w>` candidates.
    pub cpu_count: usize,
    /// The profile entries the predictions used.
    pub entries: Vec<String>,
}

impl Candidates {
    pub fn cpu(&self) -> &[Candidate] {
        &self.all[..self.cpu_count]
    }

    /// The GPU and device-set candidates.
    pub fn devices(&self) -> &[Candidate] {
        &self.all[self.cpu_count..]
    }
}

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

/// Arrays an indicator moves each way (inputs up, outputs down), for link predictions: read from
/// its declaration in the registry.
fn arrays_of(indicator: &str) -> (usize, usize) {
    crate::kernels::registry::find(indicator).map_or((1, 1), |d| (d.inputs.len(), d.outputs.len()))
}

/// Every candidate of `req` (an `auto` or `cpu` call) and the profile entries behind them.
pub fn gather(req: &PlanRequest) -> Candidates {
    let mut entries = Vec::new();
    let mut all = cpu_candidates(req, &mut entries);
    let cpu_count = all.len();
    let gpu_eligible =
        !req.caller_parallel && req.forced_threads.is_none() && req.rows >= GPU_AUTO_MIN_ROWS;
    if gpu_eligible {
        all.extend(gpu_candidates(req, &mut entries));
        if !req.gpus.is_empty() {
            all.extend(set_candidates(req, &mut entries));
        }
    }
    Candidates {
        all,
        cpu_count,
        entries,
    }
}

fn cpu_candidates(req: &PlanRequest, entries: &mut Vec<String>) -> Vec<Candidate> {
    candidate_workers(worker_cap(req.cpu))
        .into_iter()
        .map(|w| {
            let backend = Placement::Cpu { workers: w };
            let name = backend.to_string();
            let found = req
                .profile
                .and_then(|p| lookup(p, req.workload, req.rows, &name));
            let stat = found.as_ref().map(|(_, s)| *s);
            if let Some((used, s)) = &found {
                entries.push(entry_line(req.workload, used, &name, s));
            }
            Candidate {
                backend,
                workers: w,
                predicted_ms: stat.map(|s| predicted_ms(s, req.rows)),
                samples: stat.map_or(0, |s| s.samples),
            }
        })
        .collect()
}

fn gpu_candidates(req: &PlanRequest, entries: &mut Vec<String>) -> Vec<Candidate> {
    let (ins, outs) = arrays_of(req.indicator);
    req.gpus
        .iter()
        .map(|g| {
            let found = req
                .profile
                .and_then(|p| lookup(p, req.workload, req.rows, &g.profile_key));
            if let Some((used, s)) = &found {
                entries.push(entry_line(req.workload, used, &g.profile_key, s));
            }
            let predicted = found
                .as_ref()
                .map(|(_, s)| predicted_ms(s, req.rows))
                .or_else(|| {
                    g.link
                        .as_ref()
                        .and_then(|l| link_prediction_ms(l, req.rows, ins, outs))
                });
            Candidate {
                backend: Placement::Gpu(g.index),
                workers: 1,
                predicted_ms: predicted,
                samples: found.map_or(0, |(_, s)| s.samples),
            }
        })
        .collect()
}

/// Device sets: every GPU with the CPU, and every GPU alone when there are several. Predicted by
/// makespan (each member's share of the rows at its measured time per row, transfers included),
/// so they win only when splitting beats the best single device.
fn set_candidates(req: &PlanRequest, entries: &mut Vec<String>) -> Vec<Candidate> {
    let mut sets = vec![DeviceSet::All];
    if req.gpus.len() > 1 {
        sets.push(DeviceSet::Gpus);
    }
    sets.into_iter()
        .map(|set| {
            let (shares, _) = shares_for(req, &members_of(req, &set));
            let per_member: Vec<Option<(f64, u64)>> = shares
                .iter()
                .map(|m| member_stat(req, m.device, &m.key).map(|s| (s.ewma_ns_per_row, s.samples)))
                .collect();
            let model = per_member
                .iter()
                .zip(&shares)
                .map(|(st, m)| st.map(|(ns, _)| m.share * req.rows as f64 * ns / 1e6))
                .collect::<Option<Vec<f64>>>()
                .map(|t| t.into_iter().fold(0.0, f64::max) + SET_OVERHEAD_MS);
            // Once the set itself has been measured, its own times replace the model (which
            // cannot see contention between the members, e.g. for memory bandwidth).
            let name = set.to_string();
            let own = req
                .profile
                .and_then(|p| lookup(p, req.workload, req.rows, &name))
                .filter(|(_, s)| s.samples >= MIN_SAMPLES);
            if let Some((used, s)) = &own {
                entries.push(entry_line(req.workload, used, &name, s));
            }
            let predicted = own
                .as_ref()
                .map(|(_, s)| predicted_ms(s, req.rows))
                .or(model);
            let samples = per_member
                .iter()
                .map(|s| s.map_or(0, |(_, n)| n))
                .min()
                .unwrap_or(0);
            Candidate {
                backend: Placement::Set(set),
                workers: worker_cap(req.cpu),
                predicted_ms: predicted,
                samples,
            }
        })
        .collect()
}
