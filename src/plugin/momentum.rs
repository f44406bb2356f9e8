//! Momentum: rsi, roc, macd, stoch.

use polars::prelude::*;
use pyo3_polars::derive::{polars_expr, CallerContext};
use serde::Deserialize;

use super::overlap::PeriodKwargs;
use super::{compute, struct_field};
use crate::kernels::Spec;

#[derive(Deserialize)]
struct MacdKwargs {
    fast: i64,
    slow: i64,
    signal: i64,
    device: String,
    #[serde(default)]
    workload_tag: Option<String>,
}

#[derive(Deserialize)]
struct StochKwargs {
    fastk_period: i64,
    slowk_period: i64,
    slowd_period: i64,
    device: String,
    #[serde(default)]
    workload_tag: Option<String>,
}

#[polars_expr(output_type=Float64)]
fn rsi(inputs: &[Series], context: CallerContext, kwargs: PeriodKwargs) -> PolarsResult<Series> {
    compute(
        inputs,
        context,
        Spec::rsi(kwargs.period),
        &kwargs.device,
        kwargs.workload_tag.as_deref(),
    )
}

#[polars_expr(output_type=Float64)]
fn roc(inputs: &[Series], context: CallerContext, kwargs: PeriodKwargs) -> PolarsResult<Series> {
    compute(
        inputs,
        context,
        Spec::roc(kwargs.period),
        &kwargs.device,
        kwargs.workload_tag.as_deref(),
    )
}

fn macd_fields(input_fields: &[Field]) -> PolarsResult<Field> {
    struct_field(input_fields, &["macd", "signal", "hist"])
}

#[polars_expr(output_type_func=macd_fields)]
fn macd(inputs: &[Series], context: CallerContext, kwargs: MacdKwargs) -> PolarsResult<Series> {
    compute(
        inputs,
        context,
        Spec::macd(kwargs.fast, kwargs.slow, kwargs.signal),
        &kwargs.device,
        kwargs.workload_tag.as_deref(),
    )
}

fn stoch_fields(input_fields: &[Field]) -> PolarsResult<Field> {
    struct_field(input_fields, &["slowk", "slowd"])
}

/// Inputs: high, low, close.
#[polars_expr(output_type_func=stoch_fields)]
fn stoch(inputs: &[Series], context: CallerContext, kwargs: StochKwargs) -> PolarsResult<Series> {
    let spec = Spec::stoch(
        kwargs.fastk_period,
        kwargs.slowk_period,
        kwargs.slowd_period,
    );
    compute(
        inputs,
        context,
        spec,
        &kwargs.device,
        kwargs.workload_tag.as_deref(),
    )
}
