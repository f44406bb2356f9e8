//! What the planner is told about a call.

use std::collections::BTreeMap;

use crate::exec::cpuinfo::CpuInfo;
use crate::exec::device::Device;
use crate::exec::profile::schema::{LinkModel, MachineProfile};

pub struct PlanRequest<'a> {
    pub indicator: &'a str,
    /// The profile entry the call's timings live under: the indicator's name, or a workload of its
    /// own (`by=` segments, parameter sweeps: `exec::workload_name`).
    pub workload: &'a str,
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

/// A usable GPU as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuCandidate {
    pub index: usize,
    /// Its backend name in the profile, `gpu:<uuid>` (stable across device renumbering).
    pub profile_key: String,
    /// Host<->device link (from autotune), used to predict calls not measured yet.
    pub link: Option<LinkModel>,
}
