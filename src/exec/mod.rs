//! Layer 2: where and how, never what. Parses the user's placement, picks the worker count and
//! runs a [`Spec`] through a [`Splitter`]; the bits do not depend on any of these choices.

pub mod cpu;
pub mod device;
pub mod threads;

use std::fmt;

use crate::kernels::split::Sequential;
use crate::kernels::Spec;
pub use device::Device;

/// What the caller knows about the surroundings of this call.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallContext {
    /// Polars is already running this call inside its own parallel section (`.over()`,
    /// `group_by`): adding threads would oversubscribe the machine.
    pub caller_parallel: bool,
}

/// How one call was (or will be) executed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub backend: &'static str,
    pub workers: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExecError {
    /// A GPU placement was forced but this build has no GPU backend.
    NoGpu {
        indicator: &'static str,
        device: String,
    },
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecError::NoGpu { indicator, device } => write!(
                f,
                "threadx.{indicator}: device='{device}' was requested but no GPU backend is available \
                 (this build runs on the CPU only); use device='auto' or device='cpu'"
            ),
        }
    }
}

impl std::error::Error for ExecError {}

/// Decides the plan for a call of `n_rows` rows.
pub fn plan(
    spec: &Spec,
    device: &Device,
    n_rows: usize,
    ctx: CallContext,
) -> Result<Plan, ExecError> {
    match device {
        Device::Gpu(_) => Err(ExecError::NoGpu {
            indicator: spec.name(),
            device: device.to_string(),
        }),
        Device::Auto | Device::Cpu => Ok(Plan {
            backend: "cpu",
            workers: threads::workers_for(n_rows, ctx.caller_parallel),
        }),
    }
}

/// Runs `spec` on `inputs` into `outs` (all the same length) under the decided plan.
pub fn execute(
    spec: &Spec,
    device: &Device,
    inputs: &[&[f64]],
    outs: &mut [&mut [f64]],
    ctx: CallContext,
) -> Result<Plan, ExecError> {
    let n = inputs.first().map_or(0, |x| x.len());
    let plan = plan(spec, device, n, ctx)?;
    if plan.workers <= 1 {
        spec.run(&Sequential, inputs, outs);
    } else {
        spec.run(&cpu::RayonSplit::new(plan.workers), inputs, outs);
    }
    Ok(plan)
}
