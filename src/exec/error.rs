//! Why a call cannot be placed where the user asked.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum ExecError {
    /// A GPU placement was forced but this build has no GPU backend.
    NoGpu {
        indicator: &'static str,
        device: String,
        reason: String,
    },
    /// A GPU placement was forced for an indicator its registry declaration keeps off GPUs.
    NotOnGpu {
        indicator: &'static str,
        device: String,
        reason: &'static str,
    },
    /// A GPU ordinal that is not among the usable GPUs.
    NoSuchGpu {
        indicator: &'static str,
        ordinal: usize,
        available: Vec<usize>,
    },
    /// A batch (`exec::execute_batch`) without a single parameter set to compute.
    EmptyBatch,
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecError::NoGpu {
                indicator,
                device,
                reason,
            } => write!(
                f,
                "threadx.{indicator}: device='{device}' was requested but there is no usable GPU \
                 ({reason}); use device='auto' or device='cpu'"
            ),
            ExecError::NotOnGpu {
                indicator,
                device,
                reason,
            } => write!(
                f,
                "threadx.{indicator}: device='{device}' was requested but {indicator} cannot run \
                 on a GPU ({reason}); use device='auto' or device='cpu'"
            ),
            ExecError::NoSuchGpu {
                indicator,
                ordinal,
                available,
            } => write!(
                f,
                "threadx.{indicator}: device='gpu:{ordinal}': there is no usable GPU {ordinal} \
                 (usable GPUs: {available:?})"
            ),
            ExecError::EmptyBatch => write!(f, "threadx: a batch with no parameter set to compute"),
        }
    }
}

impl std::error::Error for ExecError {}
