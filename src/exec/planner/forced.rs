//! Plans the user forced with `device=`: one GPU (`gpu`, `gpu:<i>`) or a device set (`gpus`,
//! `all`, `gpu:<i>,<j>`). No candidates are weighed; an impossible request is an error that says
//! why.

use super::lookup::{entry_line, lookup, predicted_ms};
use super::plan::{Candidate, Plan};
use super::request::PlanRequest;
use super::shares::{members_of, shares_for};
use super::workers::worker_cap;
use crate::exec::devset::DeviceSet;
use crate::exec::error::ExecError;
use crate::exec::placement::Placement;
use crate::exec::profile::schema::size_bucket;

/// Indicator names come from the registry (static); others map to a generic label.
fn static_name(name: &str) -> &'static str {
    crate::kernels::registry::find(name).map_or("indicator", |d| d.name)
}

/// An error when there is no usable GPU at all, or when `ids` lists one that is not usable.
fn check_gpus(req: &PlanRequest, ids: Option<&[usize]>) -> Result<(), ExecError> {
    let indicator = static_name(req.indicator);
    if req.gpus.is_empty() {
        return Err(ExecError::NoGpu {
            indicator,
            device: req.device.to_string(),
            reason: req.gpu_reason.unwrap_or("no GPU backend").to_string(),
        });
    }
    if let Some(missing) = ids
        .unwrap_or_default()
        .iter()
        .find(|i| !req.gpus.iter().any(|g| g.index == **i))
    {
        return Err(ExecError::NoSuchGpu {
            indicator,
            ordinal: *missing,
            available: req.gpus.iter().map(|g| g.index).collect(),
        });
    }
    Ok(())
}

/// `device="gpu"` / `"gpu:<i>"`: the first listed (or first usable) GPU.
pub fn gpu(req: &PlanRequest, ids: Option<&[usize]>) -> Result<Plan, ExecError> {
    check_gpus(req, ids)?;
    let index = ids.map_or(req.gpus[0].index, |ids| ids[0]);
    let gpu = &req.gpus[req.gpus.iter().position(|g| g.index == index).unwrap_or(0)];
    let stat = req
        .profile
        .and_then(|p| lookup(p, req.workload, req.rows, &gpu.profile_key));
    let backend = Placement::Gpu(index);
    Ok(Plan {
        indicator: req.indicator.to_string(),
        rows: req.rows,
        size_bucket: size_bucket(req.rows),
        backend: backend.clone(),
        workers: 1,
        reason: format!("forced by device='{}'", req.device),
        explored: false,
        gpu: Some(index),
        split: Vec::new(),
        candidates: vec![Candidate {
            backend,
            workers: 1,
            predicted_ms: stat.as_ref().map(|(_, s)| predicted_ms(s, req.rows)),
            samples: stat.as_ref().map_or(0, |(_, s)| s.samples),
        }],
        // The entry the prediction came from, as `auto` plans list theirs.
        profile_entries: stat
            .iter()
            .map(|(used, s)| entry_line(req.workload, used, &gpu.profile_key, s))
            .collect(),
    })
}

/// `device="gpus"`, `"all"` or `"gpu:<i>,<j>"`: a split across those devices.
pub fn set(req: &PlanRequest, set: DeviceSet) -> Result<Plan, ExecError> {
    let listed = match &set {
        DeviceSet::Listed(ids) => Some(ids.as_slice()),
        DeviceSet::All | DeviceSet::Gpus => None,
    };
    check_gpus(req, listed)?;
    let (split, source) = shares_for(req, &members_of(req, &set));
    let labels: Vec<String> = split
        .iter()
        .map(|m| format!("{} {:.1}%", m.device, m.share * 100.0))
        .collect();
    Ok(Plan {
        indicator: req.indicator.to_string(),
        rows: req.rows,
        size_bucket: size_bucket(req.rows),
        backend: Placement::Set(set),
        // The CPU member's workers: a forced count (set_threads) as on the CPU alone, so that
        // profile_auto_balance, which times the CPU with that count, measures what runs here.
        workers: req.forced_threads.unwrap_or_else(|| worker_cap(req.cpu)),
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
