//! Layer 3: the Polars glue. One generic `#[polars_expr]` entry point, [`indicator`], serves every
//! indicator: it finds the declaration named in its kwargs in the registry, builds the validated
//! call, converts the Series to contiguous `f64` slices (zero-copy for a single null-free Float64
//! chunk), applies the null contract, calls `exec`, and builds the output Series or Struct. No
//! math here, and nothing per indicator: adding one to the registry adds it here.
//!
//! Null contract (docs/architecture.md): a row is missing when any input is null; missing rows
//! are dropped before the kernel runs and come back as null; the first `lookback` non-missing rows
//! are null (warm-up). NaN is a value and goes to the kernel untouched.

use std::borrow::Cow;
use std::collections::BTreeMap;

use polars::prelude::*;
use pyo3_polars::derive::{polars_expr, CallerContext};
use pyo3_polars::export::polars_arrow::bitmap::{Bitmap, MutableBitmap};
use serde::Deserialize;

use crate::exec::{self, CallContext, Device};
use crate::kernels::registry;
use crate::kernels::{ParamError, Spec};

fn param_error(e: ParamError) -> PolarsError {
    PolarsError::ComputeError(e.to_string().into())
}

/// What Python passes to every call: the indicator's name (or TA-Lib alias), its parameters by
/// name (validated again here, for front ends other than ours), and the placement.
#[derive(Deserialize)]
pub struct IndicatorKwargs {
    pub indicator: String,
    #[serde(default)]
    pub params: BTreeMap<String, f64>,
    pub device: String,
    #[serde(default)]
    pub workload_tag: Option<String>,
}

impl IndicatorKwargs {
    fn spec(&self) -> PolarsResult<Spec> {
        registry::build_named(
            &self.indicator,
            self.params.iter().map(|(k, v)| (k.as_str(), *v)),
        )
        .map_err(param_error)
    }
}

/// The output field: Float64 named after the first input (the receiver), or a Struct of Float64
/// fields named by the declaration's outputs.
fn indicator_field(input_fields: &[Field], kwargs: IndicatorKwargs) -> PolarsResult<Field> {
    let spec = kwargs.spec()?;
    let name = input_fields
        .first()
        .map(|f| f.name().clone())
        .unwrap_or_default();
    let outputs = spec.outputs();
    if outputs.len() == 1 {
        return Ok(Field::new(name, DataType::Float64));
    }
    let fields = outputs
        .iter()
        .map(|n| Field::new((*n).into(), DataType::Float64))
        .collect();
    Ok(Field::new(name, DataType::Struct(fields)))
}

/// Every indicator. Inputs come in the declaration's call order (receiver first).
#[polars_expr(output_type_func_with_kwargs=indicator_field)]
fn indicator(
    inputs: &[Series],
    context: CallerContext,
    kwargs: IndicatorKwargs,
) -> PolarsResult<Series> {
    compute(
        inputs,
        context,
        kwargs.spec(),
        &kwargs.device,
        kwargs.workload_tag.as_deref(),
    )
}

/// Casts every input to Float64 after checking it is numeric and as long as the first.
fn float_inputs(spec: &Spec, inputs: &[Series]) -> PolarsResult<Vec<Float64Chunked>> {
    let names = spec.inputs();
    polars_ensure!(
        inputs.len() == names.len(),
        ComputeError: "threadx.{}: expected {} input column(s) ({}), got {}",
        spec.name(), names.len(), names.join(", "), inputs.len()
    );
    let len = inputs[0].len();
    inputs
        .iter()
        .zip(names.iter())
        .map(|(s, arg)| {
            polars_ensure!(
                s.dtype().is_primitive_numeric() || s.dtype().is_decimal(),
                ComputeError: "threadx.{}: expected a numeric column for `{}`, got {} (column '{}')",
                spec.name(), arg, s.dtype(), s.name()
            );
            polars_ensure!(
                s.len() == len,
                ComputeError: "threadx.{}: expected all inputs to have the same length, got {} for `{}` and {} for `{}`",
                spec.name(), len, names[0], s.len(), arg
            );
            Ok(s.cast(&DataType::Float64)?.f64()?.clone())
        })
        .collect()
}

/// The values of a null-free column as one contiguous slice (borrowed when already contiguous).
fn contiguous(ca: &Float64Chunked) -> Cow<'_, [f64]> {
    match ca.cont_slice() {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => {
            let mut v = Vec::with_capacity(ca.len());
            for arr in ca.downcast_iter() {
                v.extend_from_slice(arr.values());
            }
            Cow::Owned(v)
        }
    }
}

/// Rows where every input is non-null, or `None` when there is no null at all.
fn present_rows(cols: &[Float64Chunked]) -> Option<Vec<bool>> {
    if cols.iter().all(|c| c.null_count() == 0) {
        return None;
    }
    let mut present = vec![true; cols[0].len()];
    for c in cols {
        if c.null_count() == 0 {
            continue;
        }
        for (p, v) in present.iter_mut().zip(c.iter()) {
            *p &= v.is_some();
        }
    }
    Some(present)
}

/// Validity of a compacted output: the first `lookback` rows are warm-up.
fn warmup_validity(len: usize, lookback: usize) -> Option<Bitmap> {
    if lookback == 0 {
        return None;
    }
    let mut bits = MutableBitmap::with_capacity(len);
    bits.extend_constant(lookback.min(len), false);
    bits.extend_constant(len.saturating_sub(lookback), true);
    Some(bits.into())
}

/// Runs `spec` on `inputs` under the null contract and returns the output Series.
fn compute(
    inputs: &[Series],
    context: CallerContext,
    spec: PolarsResult<Spec>,
    device: &str,
    workload_tag: Option<&str>,
) -> PolarsResult<Series> {
    let spec = spec?;
    let device = Device::parse(device)
        .map_err(|m| PolarsError::ComputeError(format!("threadx.{}: {m}", spec.name()).into()))?;
    let cols = float_inputs(&spec, inputs)?;
    let n = cols[0].len();
    let present = present_rows(&cols);
    let values: Vec<Cow<[f64]>> = match &present {
        None => cols.iter().map(contiguous).collect(),
        Some(mask) => cols
            .iter()
            .map(|c| {
                let kept = c
                    .iter()
                    .zip(mask)
                    .filter(|(_, &p)| p)
                    .map(|(v, _)| v.unwrap_or(f64::NAN));
                Cow::Owned(kept.collect())
            })
            .collect(),
    };
    let m = values[0].len();
    let slices: Vec<&[f64]> = values.iter().map(|v| v.as_ref()).collect();
    let lookback = spec.lookback();
    let mut outs: Vec<Vec<f64>> = spec
        .outputs()
        .iter()
        .map(|_| output_buffer(m, lookback))
        .collect();
    let mut views: Vec<&mut [f64]> = outs.iter_mut().map(|o| o.as_mut_slice()).collect();
    let ctx = CallContext {
        caller_parallel: context.parallel() || exec::on_polars_pool_thread(),
    };
    exec::execute_tagged(&spec, &device, workload_tag, &slices, &mut views, ctx)
        .map_err(|e| PolarsError::ComputeError(e.to_string().into()))?;

    let series: Vec<Series> = outs
        .into_iter()
        .zip(spec.outputs())
        .map(|(out, field)| {
            let ca = match &present {
                None => Float64Chunked::from_vec_validity(
                    field.into(),
                    out,
                    warmup_validity(m, lookback),
                ),
                Some(mask) => scatter(field.into(), &out, mask, lookback),
            };
            ca.into_series()
        })
        .collect();

    let name = inputs[0].name().clone();
    if series.len() == 1 {
        Ok(series
            .into_iter()
            .next()
            .unwrap_or_default()
            .with_name(name))
    } else {
        Ok(StructChunked::from_series(name, n, series.iter())?.into_series())
    }
}

/// An output column of `len` rows whose warm-up rows are zero and whose other rows are left for
/// the kernel, which writes every row from the lookback on (`tests::kernels_write_every_row`).
///
/// Zero-filling 8 bytes per row per output would cost as much as the page faults it tries to
/// avoid; with Polars' allocator (see `lib.rs`) the pages of earlier results are reused instead.
fn output_buffer(len: usize, lookback: usize) -> Vec<f64> {
    let mut v: Vec<f64> = Vec::with_capacity(len);
    v.resize(lookback.min(len), 0.0);
    // SAFETY: capacity is `len`; f64 has no invalid bit patterns, and every row at or after the
    // lookback is written by the kernel before the buffer is read (checked by the coverage test).
    unsafe { v.set_len(len) };
    v
}

/// Puts compacted outputs back on the rows they came from; missing rows and warm-up rows are null.
fn scatter(name: PlSmallStr, compact: &[f64], present: &[bool], lookback: usize) -> Float64Chunked {
    let mut values = Vec::with_capacity(present.len());
    let mut bits = MutableBitmap::with_capacity(present.len());
    let mut j = 0;
    for &p in present {
        if p {
            values.push(compact[j]);
            bits.push(j >= lookback);
            j += 1;
        } else {
            values.push(0.0);
            bits.push(false);
        }
    }
    Float64Chunked::from_vec_validity(name, values, Some(bits.into()))
}
