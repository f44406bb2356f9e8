//! The per-call planner: a pure function from what is known about a call to a [`Plan`].
//!
//! Inputs ([`PlanRequest`]): indicator, rows, the user's placement, whether Polars already runs
//! the call in parallel, a forced worker count, the CPU, this machine's profile entry, the usable
//! GPUs and one uniform draw for exploration (the caller seeds it, so runs are reproducible).
//!
//! A forced GPU or device set is planned directly ([`forced`]). Otherwise planning is two steps:
//! [`candidates`] lists every placement worth considering with its predicted time, and
//! [`choice`] picks one — the fastest trusted prediction, or the conservative default while the
//! profile is incomplete, now and then exploring so that the profile fills in.

mod candidates;
mod choice;
mod forced;
mod lookup;
mod plan;
mod request;
mod shares;
mod workers;

#[cfg(test)]
mod tests;

pub use candidates::{link_prediction_ms, GPU_AUTO_MIN_ROWS, SET_OVERHEAD_MS};
pub use choice::{EXPLORE_RATE, MIN_EXPLORE_ROWS};
pub use lookup::{MIN_SAMPLES, NEIGHBOUR_BUCKETS};
pub use plan::{Candidate, Plan};
pub use request::{GpuCandidate, PlanRequest};
pub use workers::{
    heuristic_workers, small_input_threshold, worker_cap, DEFAULT_SMALL_ROWS, THRESHOLD_WIN,
};

use crate::exec::device::Device;
use crate::exec::devset::DeviceSet;
use crate::exec::error::ExecError;

/// The plan for `req`, or why the forced placement cannot be honoured.
pub fn plan(req: &PlanRequest) -> Result<Plan, ExecError> {
    match req.device {
        Device::Gpu(Some(ids)) if ids.len() > 1 => forced::set(req, DeviceSet::Listed(ids.clone())),
        Device::Gpus => forced::set(req, DeviceSet::Gpus),
        Device::All => forced::set(req, DeviceSet::All),
        Device::Gpu(ids) => forced::gpu(req, ids.as_deref()),
        Device::Auto | Device::Cpu => Ok(choice::choose(req, &candidates::gather(req))),
    }
}
