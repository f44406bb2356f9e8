//! Volume: obv.

use polars::prelude::*;
use pyo3_polars::derive::{polars_expr, CallerContext};
use serde::Deserialize;

use super::compute;
use crate::kernels::Spec;

#[derive(Deserialize)]
struct ObvKwargs {
    device: String,
    #[serde(default)]
    workload_tag: Option<String>,
}

/// Inputs: close, volume.
#[polars_expr(output_type=Float64)]
fn obv(inputs: &[Series], context: CallerContext, kwargs: ObvKwargs) -> PolarsResult<Series> {
    compute(
        inputs,
        context,
        Ok(Spec::Obv),
        &kwargs.device,
        kwargs.workload_tag.as_deref(),
    )
}
