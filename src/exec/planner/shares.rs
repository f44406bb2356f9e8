//! The members of a device set and their shares of the rows.

use super::lookup::{lookup, MIN_SAMPLES};
use super::request::{GpuCandidate, PlanRequest};
use super::workers::worker_cap;
use crate::exec::devset::{DeviceSet, SetMember, SplitShare};
use crate::exec::placement::Placement;
use crate::exec::profile::schema::Stat;

/// A member of a set and its name in the profile.
pub type NamedMember = (SetMember, String);

/// Every member of `set` among the usable GPUs (and the CPU, last, for `all`). A member's profile
/// name is its GPU's key, and `cpu` for the CPU (whose times are read under `cpu:<cap>`).
pub fn members_of(req: &PlanRequest, set: &DeviceSet) -> Vec<NamedMember> {
    let gpu = |g: &GpuCandidate| (SetMember::Gpu(g.index), g.profile_key.clone());
    let mut out: Vec<NamedMember> = match set {
        DeviceSet::Listed(ids) => ids
            .iter()
            .filter_map(|i| req.gpus.iter().find(|g| g.index == *i))
            .map(gpu)
            .collect(),
        DeviceSet::All | DeviceSet::Gpus => req.gpus.iter().map(gpu).collect(),
    };
    if *set == DeviceSet::All {
        out.push((SetMember::Cpu, SetMember::Cpu.to_string()));
    }
    out
}

/// A member's trusted single-device statistics in the call's bucket (the CPU as a member uses
/// every worker the cap allows).
pub fn member_stat<'p>(req: &PlanRequest<'p>, member: SetMember, key: &str) -> Option<&'p Stat> {
    let backend = match member {
        SetMember::Cpu => Placement::Cpu {
            workers: worker_cap(req.cpu),
        }
        .to_string(),
        SetMember::Gpu(_) => key.to_string(),
    };
    req.profile
        .and_then(|p| lookup(p, req.workload, req.rows, &backend))
        .map(|(_, s)| s)
        .filter(|s| s.samples >= MIN_SAMPLES)
}

/// Shares for `members`: the workload's stored ratios when they cover every member, else
/// throughputs from the members' measured times, else equal shares; and where they came from.
pub fn shares_for(req: &PlanRequest, members: &[NamedMember]) -> (Vec<SplitShare>, &'static str) {
    let stored: Option<Vec<f64>> = req.balance.and_then(|b| {
        members
            .iter()
            .map(|(_, k)| b.get(k).copied().filter(|v| *v >= 0.0))
            .collect()
    });
    let measured: Option<Vec<f64>> = members
        .iter()
        .map(|(m, k)| member_stat(req, *m, k).map(|s| 1.0 / s.ewma_ns_per_row.max(1e-12)))
        .collect();
    let (raw, source) = match (stored, measured) {
        (Some(r), _) if r.iter().sum::<f64>() > 0.0 => (r, "stored balance ratios"),
        (_, Some(m)) => (m, "measured throughputs"),
        _ => (
            vec![1.0; members.len()],
            "equal shares (no ratios or measurements yet)",
        ),
    };
    let total: f64 = raw.iter().sum::<f64>().max(f64::MIN_POSITIVE);
    let shares = members
        .iter()
        .zip(raw)
        .map(|((device, key), r)| SplitShare {
            device: *device,
            key: key.clone(),
            share: r / total,
        })
        .collect();
    (shares, source)
}

/// The split of a plan placed on `set`.
pub fn split_of(req: &PlanRequest, set: &DeviceSet) -> Vec<SplitShare> {
    shares_for(req, &members_of(req, set)).0
}
