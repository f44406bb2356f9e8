//! Layer 3: the Polars glue. One generic plugin entry point (`ffi`: `indicator`) serves every
//! indicator: it finds the declaration named in its kwargs in the registry, builds the validated
//! call, reads the inputs as Float64 columns (`inputs`), converts them to contiguous `f64`
//! slices (zero-copy for a single null-free Float64 chunk), applies the null contract, calls
//! `exec`, and builds the output Series or Struct. No math here, and nothing per indicator:
//! adding one to the registry adds it here.
//!
//! Null contract (docs/architecture.md): a row is missing when any input is null; missing rows
//! are dropped before the kernel runs and come back as null; the first `lookback` non-missing rows
//! are null (warm-up). NaN is a value and goes to the kernel untouched.

use std::borrow::Cow;
use std::collections::BTreeMap;

use polars_arrow::bitmap::Bitmap;
use polars_core::prelude::*;
use serde::Deserialize;

use crate::exec::grouping::Grouping;
use crate::exec::{self, CallContext, Device};
use crate::kernels::registry;
use crate::kernels::{ParamError, Spec};

mod ffi;
mod groups;
mod inputs;
mod nulls;

fn param_error(e: ParamError) -> PolarsError {
    PolarsError::ComputeError(e.to_string().into())
}

/// A parameter's value: one, or a list of them (a sweep).
#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub enum ParamValue {
    One(f64),
    Many(Vec<f64>),
}

/// What Python passes to every call: the indicator's name (or TA-Lib alias), its parameters by
/// name (validated again here, for front ends other than ours; a list is a sweep), the placement,
/// and how many `by=` key columns follow the indicator's inputs.
#[derive(Deserialize)]
pub struct IndicatorKwargs {
    pub indicator: String,
    #[serde(default)]
    pub params: BTreeMap<String, ParamValue>,
    pub device: String,
    #[serde(default)]
    pub workload_tag: Option<String>,
    #[serde(default)]
    pub by: usize,
}

/// The calls of one expression: one, or a sweep's parameter sets with their field names.
struct Calls {
    specs: Vec<Spec>,
    /// `None`: a plain call; otherwise the Struct field of each parameter set.
    fields: Option<Vec<PlSmallStr>>,
}

impl IndicatorKwargs {
    /// The validated calls: the Cartesian product of the listed values (the first parameter
    /// varying slowest), each built and checked like a single call.
    fn calls(&self) -> PolarsResult<Calls> {
        let def = registry::lookup(&self.indicator).map_err(param_error)?;
        if let Some(unknown) = self
            .params
            .keys()
            .find(|k| !def.params.iter().any(|p| p.name == k.as_str()))
        {
            // The registry's own error for a parameter the indicator does not have.
            registry::build_named(def.name, [(unknown.as_str(), 0.0)]).map_err(param_error)?;
        }
        let mut combos: Vec<Vec<(&str, f64)>> = vec![Vec::new()];
        let mut swept: Vec<usize> = Vec::new();
        for name in def.params.iter().map(|p| p.name) {
            let Some(value) = self.params.get(name) else {
                continue;
            };
            let values = match value {
                ParamValue::One(v) => std::slice::from_ref(v),
                ParamValue::Many(vs) => {
                    polars_ensure!(
                        !vs.is_empty(),
                        ComputeError: "threadx.{}: {} was given an empty list; a sweep needs at least one value",
                        def.name, name
                    );
                    swept.push(combos[0].len());
                    vs.as_slice()
                }
            };
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    values.iter().map(move |&v| {
                        let mut c = c.clone();
                        c.push((name, v));
                        c
                    })
                })
                .collect();
        }
        let specs = combos
            .iter()
            .map(|c| registry::build_named(&self.indicator, c.iter().copied()).map_err(param_error))
            .collect::<PolarsResult<Vec<_>>>()?;
        if swept.is_empty() {
            return Ok(Calls {
                specs,
                fields: None,
            });
        }
        let fields = combos
            .iter()
            .map(|c| sweep_field_name(def, c, &swept))
            .collect();
        Ok(Calls {
            specs,
            fields: Some(fields),
        })
    }
}

/// A sweep field's name: the indicator and the swept values in parameter order, integers
/// without a decimal point, moving-average types by name: `sma_5`, `bollinger_20_2.0`,
/// `bollinger_ema`.
fn sweep_field_name(
    def: &registry::Indicator,
    combo: &[(&str, f64)],
    swept: &[usize],
) -> PlSmallStr {
    let mut name = def.name.to_string();
    for &i in swept {
        let (param, v) = combo[i];
        let kind = def.params.iter().find(|p| p.name == param).map(|p| p.kind);
        match kind {
            Some(registry::Kind::Float) => name.push_str(&format!("_{v:?}")),
            // A moving-average type by its name (`bollinger_ema`), as users pass it.
            Some(registry::Kind::MaType) => {
                name.push('_');
                name.push_str(registry::MA_TYPES[v as usize]);
            }
            _ => name.push_str(&format!("_{}", v as i64)),
        }
    }
    name.into()
}

/// The Polars dtype of a declared output: Int32 for rows ([`registry::i32_out`]), else Float64.
fn output_dtype(o: &registry::Output) -> DataType {
    if o.row {
        DataType::Int32
    } else {
        DataType::Float64
    }
}

/// The dtype of one call's result: its one output's, or a Struct of the declared outputs.
fn call_dtype(spec: &Spec) -> DataType {
    match spec.def().outputs {
        [one] => output_dtype(one),
        outputs => DataType::Struct(
            outputs
                .iter()
                .map(|o| Field::new(o.name.into(), output_dtype(o)))
                .collect(),
        ),
    }
}

/// The output field, named after the first input (the receiver): the call's dtype, or for a
/// sweep a Struct with one field per parameter set.
fn indicator_field(input_names: &[PlSmallStr], kwargs: IndicatorKwargs) -> PolarsResult<Field> {
    let calls = kwargs.calls()?;
    let name = input_names.first().cloned().unwrap_or_default();
    let Some(fields) = calls.fields else {
        return Ok(Field::new(name, call_dtype(&calls.specs[0])));
    };
    let fields = fields
        .into_iter()
        .zip(&calls.specs)
        .map(|(f, spec)| Field::new(f, call_dtype(spec)))
        .collect();
    Ok(Field::new(name, DataType::Struct(fields)))
}

/// A row output as Int32: each value, a row of the rows the kernel saw in its series (the
/// non-null ones, in order), becomes that row's position in the series' input rows (`bounds`;
/// `cbounds`: the series' compacted rows; `runs`: the present rows, `None`: every row). Rows
/// that are null in `validity` are 0 (their value is not read).
fn row_output(
    name: PlSmallStr,
    rows: &[f64],
    (bounds, cbounds): (&[usize], &[usize]),
    runs: Option<&[(usize, usize)]>,
    validity: Option<Bitmap>,
) -> Series {
    // The kernel's row `k` is the `k`-th present row: `starts[i]` is the compacted row where run
    // `i` begins.
    let starts: Vec<usize> = runs
        .map(|r| {
            r.iter()
                .scan(0usize, |acc, &(_, len)| {
                    let at = *acc;
                    *acc += len;
                    Some(at)
                })
                .collect()
        })
        .unwrap_or_default();
    let input_row = |k: usize| -> usize {
        match runs {
            None => k,
            Some(runs) => {
                let i = starts.partition_point(|&s| s <= k).saturating_sub(1);
                runs.get(i).map_or(0, |&(start, _)| start + (k - starts[i]))
            }
        }
    };
    let valid = |t: usize| validity.as_ref().is_none_or(|v| v.get_bit(t));
    let mut values: Vec<i32> = vec![0; rows.len()];
    for (i, w) in bounds.windows(2).enumerate() {
        let seen = (cbounds[i + 1] - cbounds[i]) as f64;
        for t in w[0]..w[1] {
            let v = rows[t];
            if valid(t) && v >= 0.0 && v < seen {
                let row = input_row(cbounds[i] + v as usize) - w[0];
                values[t] = i32::try_from(row).unwrap_or(i32::MAX);
            }
        }
    }
    Int32Chunked::from_vec_validity(name, values, validity).into_series()
}

/// How many bytes a call's outputs may take: `THREADX_SWEEP_BUDGET_BYTES`, else half of the
/// memory available now.
fn output_budget() -> Option<u64> {
    exec::config::sweep_budget_bytes()
        .or_else(|| exec::cpuinfo::available_memory_bytes().map(|b| b / 2))
}

/// A sweep whose outputs would not fit the budget is refused before anything is allocated.
fn check_sweep_memory(specs: &[Spec], rows: usize) -> PolarsResult<()> {
    let outputs: usize = specs.iter().map(|s| s.outputs().len()).sum();
    let bytes = (rows as u64)
        .saturating_mul(outputs as u64)
        .saturating_mul(8);
    if let Some(budget) = output_budget() {
        polars_ensure!(
            bytes <= budget,
            ComputeError: "threadx.{}: this sweep's output would take {} ({} rows x {} parameter sets x {} output(s) x 8 bytes), over the memory budget of {}; sweep fewer values at a time, or raise THREADX_SWEEP_BUDGET_BYTES",
            specs[0].name(), human_bytes(bytes), rows, specs.len(), outputs / specs.len().max(1), human_bytes(budget)
        );
    }
    Ok(())
}

fn human_bytes(b: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    if b as f64 >= GIB {
        format!("{:.1} GiB", b as f64 / GIB)
    } else if b as f64 >= MIB {
        format!("{:.1} MiB", b as f64 / MIB)
    } else {
        format!("{b} bytes")
    }
}

/// The columns' rows laid out group by group (`order`: the frame row of each laid-out row), on
/// `workers` workers for a column without nulls.
fn gathered(
    cols: Vec<Float64Chunked>,
    order: &[u32],
    workers: usize,
) -> PolarsResult<Vec<Float64Chunked>> {
    let idx = IdxCa::from_vec(PlSmallStr::EMPTY, order.to_vec());
    cols.iter()
        .map(|c| match c.cont_slice() {
            Ok(src) => {
                let mut laid = nulls::output_buffer(order.len(), 0);
                exec::permute::gather(src, order, &mut laid, workers);
                Ok(Float64Chunked::from_vec(c.name().clone(), laid))
            }
            Err(_) => c.take(&idx),
        })
        .collect()
}

/// Values laid out group by group, and their validity, put back in frame order (`order`: the
/// frame row of each laid-out row): written straight to their rows (on `workers` workers), where
/// a gather through the inverse permutation would rebuild the column through optional values.
fn in_frame_order(
    values: &[f64],
    validity: Option<&Bitmap>,
    order: &[u32],
    workers: usize,
) -> (Vec<f64>, Option<Bitmap>) {
    let mut out = nulls::output_buffer(values.len(), 0);
    exec::permute::scatter(values, order, &mut out, workers);
    let validity = validity.map(|bits| {
        let mut frame = polars_arrow::bitmap::MutableBitmap::from_len_zeroed(values.len());
        for (i, &row) in order.iter().enumerate() {
            if bits.get_bit(i) {
                frame.set(row as usize, true);
            }
        }
        frame.freeze()
    });
    (out, validity)
}

/// A result laid out group by group put back in frame order.
fn scattered_back(out: Series, order: &[u32]) -> PolarsResult<Series> {
    let mut inverse = vec![0 as IdxSize; order.len()];
    for (i, &row) in order.iter().enumerate() {
        inverse[row as usize] = i as IdxSize;
    }
    out.take(&IdxCa::from_vec(PlSmallStr::EMPTY, inverse))
}

/// One call's input: its columns (Float64, the receiver first), its `by=` groups, and whether
/// Polars runs it inside one of its parallel sections.
struct CallInput {
    name: PlSmallStr,
    cols: Vec<Float64Chunked>,
    grouping: Option<Grouping>,
    caller_parallel: bool,
}

/// Runs `calls` on the input under the null contract and returns the output Series, named after
/// the receiver: each call's result, or for a sweep a Struct of them.
fn compute(
    input: CallInput,
    calls: Calls,
    device: &str,
    workload_tag: Option<&str>,
) -> PolarsResult<Series> {
    let CallInput {
        name,
        cols,
        grouping,
        caller_parallel,
    } = input;
    let specs = calls.specs;
    let indicator = specs[0].name();
    let device = Device::parse(device)
        .map_err(|m| PolarsError::ComputeError(format!("threadx.{indicator}: {m}").into()))?;
    let n = cols[0].len();
    if calls.fields.is_some() {
        check_sweep_memory(&specs, n)?;
    }
    // Interleaved keys: rows move to group order and back, on the call's workers when large.
    let move_workers = if caller_parallel || n < nulls::PARALLEL_PASS_ROWS {
        1
    } else {
        exec::optimal_workers(Some(n), Some(indicator))
    };
    let (cols, bounds, order) = match grouping {
        Some(Grouping {
            bounds,
            order: Some(order),
        }) => (gathered(cols, &order, move_workers)?, bounds, Some(order)),
        Some(Grouping {
            bounds,
            order: None,
        }) => (cols, bounds, None),
        None => (cols, vec![0, n], None),
    };
    // With nulls: the runs of rows where every input is present. The kernel runs on those rows
    // compacted to the front, and its outputs are moved back in place (`expand_in_place`): one
    // pass over the values each way, nothing per row but a copy.
    let runs = nulls::present_rows(&cols).map(|mask| (nulls::set_runs(&mask), mask));
    let ctx = CallContext {
        caller_parallel: caller_parallel || exec::on_polars_pool_thread(),
    };
    // Large inputs outside Polars' parallel sections: the passes use the call's planned workers.
    let pass_workers = if runs.is_none() || ctx.caller_parallel || n < nulls::PARALLEL_PASS_ROWS {
        1
    } else {
        exec::optimal_workers(Some(n), Some(indicator))
    };
    let values: Vec<Cow<[f64]>> = match &runs {
        None => cols.iter().map(nulls::contiguous).collect(),
        Some((runs, mask)) => {
            let kept = mask.set_bits();
            cols.iter()
                .map(|c| {
                    let v = nulls::values_with_nulls(c);
                    Cow::Owned(if pass_workers > 1 {
                        nulls::compact_par(&v, runs, kept, pass_workers)
                    } else {
                        nulls::compact(&v, runs, kept)
                    })
                })
                .collect()
        }
    };
    let m = values[0].len();
    let slices: Vec<&[f64]> = values.iter().map(|v| v.as_ref()).collect();
    // Each series' compacted rows.
    let cbounds: Vec<usize> = match &runs {
        None => bounds.clone(),
        Some((_, mask)) => {
            let mut at = 0;
            std::iter::once(0)
                .chain(bounds.windows(2).map(|w| {
                    at += w[1] - w[0] - mask.clone().sliced(w[0], w[1] - w[0]).unset_bits();
                    at
                }))
                .collect()
        }
    };
    // One worker: `n` rows each (`m <= n`), the kernel fills the first `m` and
    // `expand_in_place` all of them. Several: `m` rows, scattered into new columns in parallel.
    let rows = if pass_workers > 1 { m } else { n };
    let mut outs: Vec<Vec<Vec<f64>>> = specs
        .iter()
        .map(|spec| {
            spec.outputs()
                .iter()
                .map(|_| nulls::series_output_buffer(rows, &cbounds, spec.lookback()))
                .collect()
        })
        .collect();
    let views: Vec<Vec<&mut [f64]>> = outs
        .iter_mut()
        .map(|call| call.iter_mut().map(|o| &mut o[..m]).collect())
        .collect();
    exec::execute_batch(&specs, &device, workload_tag, &slices, &cbounds, views, ctx)
        .map_err(|e| PolarsError::ComputeError(e.to_string().into()))?;

    let present = runs.as_ref().map(|(r, mask)| (r.as_slice(), mask));
    let results: Vec<Series> = specs
        .iter()
        .zip(outs)
        .map(|(spec, call_outs)| {
            let ends = nulls::warmup_ends(&bounds, present.map(|p| p.0), spec.lookback());
            let validity = nulls::validity(n, &bounds, &ends, present.map(|p| p.1));
            let series: Vec<Series> = call_outs
                .into_iter()
                .zip(spec.def().outputs)
                .map(|(mut out, field)| {
                    if let Some((runs, _)) = present {
                        if pass_workers > 1 {
                            out = nulls::scatter_par(&out, runs, n, pass_workers);
                        } else {
                            nulls::expand_in_place(&mut out, runs);
                        }
                    }
                    let name: PlSmallStr = field.name.into();
                    if field.row {
                        let runs = present.map(|p| p.0);
                        let s = row_output(name, &out, (&bounds, &cbounds), runs, validity.clone());
                        return match &order {
                            Some(order) => scattered_back(s, order),
                            None => Ok(s),
                        };
                    }
                    let (out, validity) = match &order {
                        Some(order) => in_frame_order(&out, validity.as_ref(), order, move_workers),
                        None => (out, validity.clone()),
                    };
                    Ok(Float64Chunked::from_vec_validity(name, out, validity).into_series())
                })
                .collect::<PolarsResult<_>>()?;
            one_result(name.clone(), n, series)
        })
        .collect::<PolarsResult<_>>()?;
    let out = match calls.fields {
        None => results.into_iter().next().unwrap_or_default(),
        Some(fields) => {
            let named: Vec<Series> = results
                .into_iter()
                .zip(fields)
                .map(|(s, f)| s.with_name(f))
                .collect();
            StructChunked::from_series(name.clone(), n, named.iter())?.into_series()
        }
    };
    Ok(out)
}

/// One call's outputs as its result: the one output named `name`, or a Struct of them.
fn one_result(name: PlSmallStr, n: usize, series: Vec<Series>) -> PolarsResult<Series> {
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
