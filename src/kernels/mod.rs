//! Layer 1: pure indicator math on slices (`&[f64]` in, `&mut [f64]` out).
//!
//! No Polars, pyo3, rayon or CUDA here. Each family's module doc states the exact sequence of
//! floating-point operations that defines its answer (docs/architecture.md, "Determinism"); every executor —
//! one thread, many threads, later GPUs — must reproduce those bits. Work is divided only through
//! the [`split::Splitter`] seam, so the split never reaches the arithmetic.

// The specs spell every operation out (`acc = acc + d`), so compound assignment is not used.
#![allow(clippy::assign_op_pattern)]

pub mod cascade;
pub mod comoments;
pub mod declaration;
pub mod elementwise;
pub mod ema;
pub mod extrema;
pub mod extrema_index;
pub mod flow;
pub mod ma;
pub mod moments;
pub mod order;
pub mod registry;
pub mod scan;
pub mod scratch;
pub mod sequential;
pub mod split;
pub mod stream_store;
pub mod varscan;
pub mod volatility;
pub mod wilder;
pub mod wma;

#[cfg(test)]
pub mod reference;
#[cfg(test)]
pub mod testing;

pub use declaration::ParamError;
pub use registry::Spec;
