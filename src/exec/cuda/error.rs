//! What can go wrong on a GPU, by kind. Every failure here ends the same way for the user (the
//! call is computed on the CPU, see `exec::fallback`), but the kind decides how often they are
//! warned (once per kind per process) and the message says what failed.
//!
//! cudarc panics where it cannot load a library or symbol; every entry point of the backend runs
//! inside [`catch`], so such a panic becomes a [`GpuError::Panicked`] instead of unwinding into
//! the caller.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::exec::config::GpuStep;

/// A failed GPU operation; the caller falls back to the CPU. `Display` is the message users see.
#[derive(Debug, Clone, PartialEq)]
pub enum GpuError {
    /// CUDA cannot be used at all: a library is missing or the driver would not initialise.
    Unavailable(String),
    /// No GPU with this ordinal has a device slot.
    NoDevice(usize),
    /// This ordinal is not a usable real GPU (it may be a simulated one).
    NotRealGpu(usize),
    /// A driver call that opens, drives or synchronises a device failed.
    Driver { call: &'static str, detail: String },
    /// Device memory could not be allocated.
    Alloc { call: &'static str, detail: String },
    /// A host-to-device copy failed.
    Upload { call: &'static str, detail: String },
    /// A device-to-host copy failed.
    Download { call: &'static str, detail: String },
    /// A kernel launch failed or could not be shaped.
    Launch {
        kernel: &'static str,
        detail: String,
    },
    /// The loaded module has no such kernel.
    KernelNotLoaded(&'static str),
    /// The indicator has no CUDA composition (its registry declaration keeps it off GPUs).
    NoCudaComposition(&'static str),
    /// Not an architecture NVRTC can compile for.
    BadArch(String),
    /// NVRTC failed (its message and log).
    Compile(String),
    /// `THREADX_GPU_INJECT_FAILURE` made this step fail (tests of the fallback).
    Injected(GpuStep),
    /// A panic inside cudarc (or our code) while doing `during`.
    Panicked {
        during: &'static str,
        message: String,
    },
    /// Another member of a multi-device run failed or panicked, so this one gave up.
    DeviceSet(&'static str),
}

/// The kind of a [`GpuError`], without its details: users are warned once per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GpuFailure {
    Unavailable,
    NoDevice,
    Driver,
    Alloc,
    Upload,
    Download,
    Launch,
    Compile,
    Injected(GpuStep),
    Panicked,
    DeviceSet,
}

impl GpuError {
    pub fn kind(&self) -> GpuFailure {
        match self {
            GpuError::Unavailable(_) => GpuFailure::Unavailable,
            GpuError::NoDevice(_) | GpuError::NotRealGpu(_) => GpuFailure::NoDevice,
            GpuError::Driver { .. } => GpuFailure::Driver,
            GpuError::Alloc { .. } => GpuFailure::Alloc,
            GpuError::Upload { .. } => GpuFailure::Upload,
            GpuError::Download { .. } => GpuFailure::Download,
            GpuError::Launch { .. }
            | GpuError::KernelNotLoaded(_)
            | GpuError::NoCudaComposition(_) => GpuFailure::Launch,
            GpuError::BadArch(_) | GpuError::Compile(_) => GpuFailure::Compile,
            GpuError::Injected(step) => GpuFailure::Injected(*step),
            GpuError::Panicked { .. } => GpuFailure::Panicked,
            GpuError::DeviceSet(_) => GpuFailure::DeviceSet,
        }
    }

    /// Fails with [`GpuError::Injected`] when `THREADX_GPU_INJECT_FAILURE` names `step`.
    pub fn injected(step: GpuStep) -> Result<(), GpuError> {
        match crate::exec::config::gpu_injected_failure() {
            Some(s) if s == step => Err(GpuError::Injected(step)),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for GpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuError::Unavailable(why) | GpuError::BadArch(why) | GpuError::Compile(why) => {
                f.write_str(why)
            }
            GpuError::NoDevice(index) => write!(f, "no GPU {index}"),
            GpuError::NotRealGpu(index) => write!(f, "no usable (real) GPU {index}"),
            GpuError::Driver { call, detail }
            | GpuError::Alloc { call, detail }
            | GpuError::Upload { call, detail }
            | GpuError::Download { call, detail } => write!(f, "{call}: {detail}"),
            GpuError::Launch { kernel, detail } => write!(f, "{kernel}: {detail}"),
            GpuError::KernelNotLoaded(kernel) => write!(f, "kernel {kernel} not loaded"),
            GpuError::NoCudaComposition(name) => write!(f, "{name} has no CUDA composition"),
            GpuError::Injected(step) => write!(
                f,
                "injected {} failure (THREADX_GPU_INJECT_FAILURE)",
                step.name()
            ),
            GpuError::Panicked { during, message } => write!(f, "{during}: {message}"),
            GpuError::DeviceSet(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for GpuError {}

/// Runs `f`, turning a panic inside it into [`GpuError::Panicked`] that names `during`.
pub fn catch<T>(
    during: &'static str,
    f: impl FnOnce() -> Result<T, GpuError>,
) -> Result<T, GpuError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(GpuError::Panicked { during, message })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_the_ones_users_know() {
        let e = GpuError::Alloc {
            call: "device allocation",
            detail: "DriverError(CUDA_ERROR_OUT_OF_MEMORY)".into(),
        };
        assert_eq!(
            e.to_string(),
            "device allocation: DriverError(CUDA_ERROR_OUT_OF_MEMORY)"
        );
        assert_eq!(
            GpuError::Injected(GpuStep::Launch).to_string(),
            "injected launch failure (THREADX_GPU_INJECT_FAILURE)"
        );
        assert_eq!(
            GpuError::NotRealGpu(3).to_string(),
            "no usable (real) GPU 3"
        );
        assert_eq!(
            GpuError::KernelNotLoaded("tx_roc").to_string(),
            "kernel tx_roc not loaded"
        );
    }

    #[test]
    fn kinds_tell_injected_steps_apart() {
        let a = GpuError::Injected(GpuStep::Alloc).kind();
        let l = GpuError::Injected(GpuStep::Launch).kind();
        assert_ne!(a, l);
        let launch = GpuError::Launch {
            kernel: "tx_roc",
            detail: "x".into(),
        };
        assert_eq!(launch.kind(), GpuError::KernelNotLoaded("tx_ema").kind());
    }

    #[test]
    fn a_panic_becomes_an_error() {
        let r: Result<(), GpuError> = catch("CUDA", || panic!("no libcuda"));
        assert_eq!(r.unwrap_err().to_string(), "CUDA: no libcuda");
    }
}
