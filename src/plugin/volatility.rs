//! Volatility and dispersion: rolling_std, zscore, atr, natr.

use polars::prelude::*;
use pyo3_polars::derive::{polars_expr, CallerContext};
use serde::Deserialize;

use super::compute;
use super::overlap::PeriodKwargs;
use crate::kernels::Spec;

#[derive(Deserialize)]
struct RollingStdKwargs {
    period: i64,
    ddof: i64,
    device: String,
    #[serde(default)]
    workload_tag: Option<String>,
}

#[polars_expr(output_type=Float64)]
fn rolling_std(
    inputs: &[Series],
    context: CallerContext,
    kwargs: RollingStdKwargs,
) -> PolarsResult<Series> {
    compute(
        inputs,
        context,
        Spec::rolling_std(kwargs.period, kwargs.ddof),
        &kwargs.device,
        kwargs.workload_tag.as_deref(),
    )
}

#[polars_expr(output_type=Float64)]
fn zscore(inputs: &[Series], context: CallerContext, kwargs: PeriodKwargs) -> PolarsResult<Series> {
    compute(
        inputs,
        context,
        Spec::zscore(kwargs.period),
        &kwargs.device,
        kwargs.workload_tag.as_deref(),
    )
}

/// Inputs: high, low, close.
#[polars_expr(output_type=Float64)]
fn atr(inputs: &[Series], context: CallerContext, kwargs: PeriodKwargs) -> PolarsResult<Series> {
    compute(
        inputs,
        context,
        Spec::atr(kwargs.period),
        &kwargs.device,
        kwargs.workload_tag.as_deref(),
    )
}

/// Inputs: high, low, close.
#[polars_expr(output_type=Float64)]
fn natr(inputs: &[Series], context: CallerContext, kwargs: PeriodKwargs) -> PolarsResult<Series> {
    compute(
        inputs,
        context,
        Spec::natr(kwargs.period),
        &kwargs.device,
        kwargs.workload_tag.as_deref(),
    )
}
