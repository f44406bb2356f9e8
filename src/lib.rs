//! threadx: technical-analysis indicators for Polars with bit-identical results for any split.
//!
//! Layers (docs/architecture.md), each using only those below it:
//! `kernels` (pure math) → `exec` (where and how) → `plugin` (Polars glue) → `py` (pyo3 helpers).

pub mod exec;
pub mod kernels;

#[cfg(feature = "python")]
mod plugin;

/// Allocate through Polars' own allocator: our outputs are freed by Polars, and its allocator keeps
/// the pages of earlier results for reuse instead of faulting fresh ones in on every call.
#[cfg(feature = "python")]
#[global_allocator]
static ALLOC: pyo3_polars::PolarsAllocator = pyo3_polars::PolarsAllocator::new();
#[cfg(feature = "python")]
mod py;
