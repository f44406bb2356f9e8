//! Overlap studies: sma, ema, wma, bollinger.

use polars::prelude::*;
use pyo3_polars::derive::{polars_expr, CallerContext};
use serde::Deserialize;

use super::{compute, struct_field};
use crate::kernels::Spec;

#[derive(Deserialize)]
pub struct PeriodKwargs {
    pub period: i64,
    pub device: String,
    #[serde(default)]
    pub workload_tag: Option<String>,
}

#[derive(Deserialize)]
struct BollingerKwargs {
    period: i64,
    std_dev: f64,
    device: String,
    #[serde(default)]
    workload_tag: Option<String>,
}

#[polars_expr(output_type=Float64)]
fn sma(inputs: &[Series], context: CallerContext, kwargs: PeriodKwargs) -> PolarsResult<Series> {
    compute(
        inputs,
        context,
        Spec::sma(kwargs.period),
        &kwargs.device,
        kwargs.workload_tag.as_deref(),
    )
}

#[polars_expr(output_type=Float64)]
fn ema(inputs: &[Series], context: CallerContext, kwargs: PeriodKwargs) -> PolarsResult<Series> {
    compute(
        inputs,
        context,
        Spec::ema(kwargs.period),
        &kwargs.device,
        kwargs.workload_tag.as_deref(),
    )
}

#[polars_expr(output_type=Float64)]
fn wma(inputs: &[Series], context: CallerContext, kwargs: PeriodKwargs) -> PolarsResult<Series> {
    compute(
        inputs,
        context,
        Spec::wma(kwargs.period),
        &kwargs.device,
        kwargs.workload_tag.as_deref(),
    )
}

fn bollinger_fields(input_fields: &[Field]) -> PolarsResult<Field> {
    struct_field(input_fields, &["middle", "upper", "lower"])
}

#[polars_expr(output_type_func=bollinger_fields)]
fn bollinger(
    inputs: &[Series],
    context: CallerContext,
    kwargs: BollingerKwargs,
) -> PolarsResult<Series> {
    compute(
        inputs,
        context,
        Spec::bollinger(kwargs.period, kwargs.std_dev),
        &kwargs.device,
        kwargs.workload_tag.as_deref(),
    )
}
