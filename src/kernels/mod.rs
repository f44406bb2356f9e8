//! Layer 1: pure indicator math on slices (`&[f64]` in, `&mut [f64]` out).
//!
//! No Polars, pyo3, rayon or CUDA here. Each family's module doc states the exact sequence of
//! floating-point operations that defines its answer (docs/architecture.md, "Determinism"); every executor —
//! one thread, many threads, later GPUs — must reproduce those bits. Work is divided only through
//! the [`split::Splitter`] seam, so the split never reaches the arithmetic. Every value a kernel
//! stores in an output goes through [`canon`]: a NaN's sign and payload are not a function of the
//! operations, so the spec fixes them.

// The specs spell every operation out (`acc = acc + d`), so compound assignment is not used.
#![allow(clippy::assign_op_pattern)]

mod across;
pub mod cascade;
mod chained;
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

/// The value a kernel writes for `v`: `v` itself, or the canonical quiet NaN
/// (`0x7ff8_0000_0000_0000`, `f64::NAN`) for any NaN. A bit select, no arithmetic.
///
/// IEEE 754 leaves the sign and payload of a NaN result unspecified, and so do Rust and LLVM:
/// x86 makes `inf - inf` the negative NaN `0xfff8…`, an input NaN keeps its payload, and when
/// two NaNs meet (`L + P·C` with a NaN on both sides) the result carries the NaN of whichever
/// operand the compiler placed first, which differs between inlined copies of the same formula
/// (the one-piece scan, the chained pass, a piece's pre-pass). So the NaN bits of an arithmetic
/// result are not a function of the spec's operations; the spec defines every NaN an indicator
/// writes to be this one (docs/architecture.md, "Non-finite values"), and every kernel passes
/// each output value through here as it stores it.
#[inline(always)]
pub fn canon(v: f64) -> f64 {
    extrema::select(v.is_nan(), f64::NAN, v)
}

/// [`canon`] on rows a kernel has just stored (still in L1), for loops whose stores do not
/// vectorise and which can tell cheaply that no row is NaN (they then skip this): one pass that
/// only looks, and a second that rewrites only where a NaN is there.
#[inline(always)]
pub fn canon_rows(rows: &mut [f64]) {
    if rows.iter().fold(false, |any, v| any | v.is_nan()) {
        for v in rows {
            *v = canon(*v);
        }
    }
}
