//! threadx: technical-analysis indicators for Polars with bit-identical results for any split.
//!
//! Layers (DESIGN.md section 4), each using only those below it:
//! `kernels` (pure math) → `exec` (where and how) → `plugin` (Polars glue) → `py` (pyo3 helpers).

pub mod exec;
pub mod kernels;

#[cfg(feature = "python")]
mod plugin;
#[cfg(feature = "python")]
mod py;
