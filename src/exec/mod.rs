//! Layer 2: where and how, never what. Parses the user's placement ([`Device`]), asks the planner
//! (fed by the persisted profile) for a [`Plan`], runs a [`Spec`](crate::kernels::Spec) on the
//! CPU, a GPU or a device set, and teaches the profile how long it took. None of these choices
//! changes a single bit of the output.
//!
//! Modules, from the call down:
//! - [`plan_call`]: one call's context, GPU status and exploration draw → the [`planner`]'s plan.
//! - [`run`]: executing a plan and recording its time; [`batch`]: many series (`by=`) or
//!   parameter sets (sweeps) in one call; [`fallback`]: a GPU failure → the CPU.
//! - [`planner`]: candidates → choice, a pure function of what is known about the call.
//! - [`placement`], [`device`]: where a plan runs, and the user's request, as types.
//! - [`cpu`], [`cuda`], [`devset`]: the backends: rayon, CUDA, and sets of several devices.
//! - [`profile`], [`cpuinfo`], [`threads`], [`config`]: what the planner knows, and the knobs.

pub mod batch;
pub mod config;
pub mod cpu;
pub mod cpuinfo;
pub mod cuda;
pub mod device;
pub mod devset;
pub mod error;
pub mod fallback;
pub mod grouping;
pub mod permute;
pub mod placement;
pub mod plan_call;
pub mod planner;
pub mod profile;
pub mod run;
pub mod set_batch;
pub mod threads;

#[cfg(test)]
mod golden_tests;

pub use device::Device;
pub use error::ExecError;
pub use placement::Placement;
pub use plan_call::{
    gpu_profile_key, on_polars_pool_thread, optimal_workers, plan_named, plan_tagged,
    workload_name, workload_tag, CallContext,
};
pub use planner::Plan;
pub use profile::MIN_RECORDED_ROWS;
pub use run::{execute_batch, execute_tagged};
