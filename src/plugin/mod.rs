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

use polars_arrow::bitmap::{Bitmap, MutableBitmap};
use polars_core::prelude::*;
use serde::Deserialize;

use crate::exec::{self, CallContext, Device};
use crate::kernels::registry;
use crate::kernels::{ParamError, Spec};

mod ffi;
mod inputs;

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

/// The Polars dtype of a declared output: Int32 for rows ([`registry::i32_out`]), else Float64.
fn output_dtype(o: &registry::Output) -> DataType {
    if o.row {
        DataType::Int32
    } else {
        DataType::Float64
    }
}

/// The output field: the one output named after the first input (the receiver), or a Struct of
/// fields named by the declaration's outputs; Float64, or Int32 for row outputs.
fn indicator_field(input_names: &[PlSmallStr], kwargs: IndicatorKwargs) -> PolarsResult<Field> {
    let spec = kwargs.spec()?;
    let name = input_names.first().cloned().unwrap_or_default();
    let outputs = spec.def().outputs;
    if let [one] = outputs {
        return Ok(Field::new(name, output_dtype(one)));
    }
    let fields = outputs
        .iter()
        .map(|o| Field::new(o.name.into(), output_dtype(o)))
        .collect();
    Ok(Field::new(name, DataType::Struct(fields)))
}

/// A row output as Int32: each value, a row of the rows the kernel saw (the non-null ones, in
/// order), becomes that row's position in the input column (`runs`: the present rows; `None`:
/// every row). Rows that are null in `validity` are 0 (their value is not read).
fn row_output(
    name: PlSmallStr,
    rows: &[f64],
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
    let map = |k: usize| -> usize {
        match runs {
            None => k,
            Some(runs) => {
                let i = starts.partition_point(|&s| s <= k).saturating_sub(1);
                runs.get(i).map_or(0, |&(start, _)| start + (k - starts[i]))
            }
        }
    };
    let valid = |t: usize| validity.as_ref().is_none_or(|v| v.get_bit(t));
    let values: Vec<i32> = rows
        .iter()
        .enumerate()
        .map(|(t, &v)| {
            if valid(t) && v >= 0.0 && v < rows.len() as f64 {
                i32::try_from(map(v as usize)).unwrap_or(i32::MAX)
            } else {
                0
            }
        })
        .collect();
    Int32Chunked::from_vec_validity(name, values, validity).into_series()
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

/// The values of a column, nulls included (whatever their slots hold), as one slice.
fn values_with_nulls(ca: &Float64Chunked) -> Cow<'_, [f64]> {
    if ca.chunks().len() == 1 {
        if let Some(arr) = ca.downcast_iter().next() {
            return Cow::Borrowed(arr.values().as_slice());
        }
    }
    contiguous_values(ca)
}

fn contiguous_values(ca: &Float64Chunked) -> Cow<'_, [f64]> {
    let mut v = Vec::with_capacity(ca.len());
    for arr in ca.downcast_iter() {
        v.extend_from_slice(arr.values());
    }
    Cow::Owned(v)
}

/// Rows where every input is non-null, as one bitmap (the inputs' validities ANDed word by
/// word), or `None` when there is no null at all.
fn present_rows(cols: &[Float64Chunked]) -> Option<Bitmap> {
    let mut present: Option<Bitmap> = None;
    for c in cols.iter().filter(|c| c.null_count() > 0) {
        let Some(v) = c.rechunk_validity() else {
            continue;
        };
        present = Some(match present {
            None => v,
            Some(p) => &p & &v,
        });
    }
    present
}

/// Calls `run(start, len)` for every run of set bits of `mask`, in order: 64 rows per word,
/// whole words at once (nulls are rare in practice, so most words are one or two runs).
fn for_each_run(mask: &Bitmap, mut run: impl FnMut(usize, usize)) {
    let mut words = mask.chunks::<u64>();
    let mut base = 0;
    let word_runs = |base: usize, mut w: u64, run: &mut dyn FnMut(usize, usize)| {
        while w != 0 {
            let start = w.trailing_zeros();
            let len = (!(w >> start)).trailing_zeros();
            run(base + start as usize, len as usize);
            w = if start + len >= 64 {
                0
            } else {
                w & !(((1u64 << len) - 1) << start)
            };
        }
    };
    for w in words.by_ref() {
        if w == u64::MAX {
            run(base, 64);
        } else {
            word_runs(base, w, &mut run);
        }
        base += 64;
    }
    word_runs(base, words.remainder(), &mut run);
}

/// The runs of set bits of `mask` as `(first row, length)`, in order.
fn set_runs(mask: &Bitmap) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for_each_run(mask, |start, len| match runs.last_mut() {
        // A run that goes on across a word boundary is one run.
        Some((s, l)) if *s + *l == start => *l += len,
        _ => runs.push((start, len)),
    });
    runs
}

/// The rows of `values` in `runs`, in order (`kept` of them).
fn compact(values: &[f64], runs: &[(usize, usize)], kept: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(kept);
    for &(start, len) in runs {
        out.extend_from_slice(&values[start..start + len]);
    }
    out
}

/// Inputs from this many rows on have their null passes (compaction, scatter) run on the
/// call's planned CPU workers.
const PARALLEL_PASS_ROWS: usize = 1 << 20;

/// `runs` cut into `k` consecutive groups holding about the same number of rows each: the
/// group's range of runs and the number of rows it holds.
fn group_runs(
    runs: &[(usize, usize)],
    kept: usize,
    k: usize,
) -> Vec<(std::ops::Range<usize>, usize)> {
    let mut groups = Vec::with_capacity(k);
    let (mut first, mut acc, mut in_group) = (0, 0, 0);
    for (i, &(_, len)) in runs.iter().enumerate() {
        acc += len;
        in_group += len;
        if acc * k >= kept * (groups.len() + 1) && groups.len() + 1 < k {
            groups.push((first..i + 1, in_group));
            first = i + 1;
            in_group = 0;
        }
    }
    groups.push((first..runs.len(), in_group));
    groups
}

/// [`compact`] on `workers` rayon workers (one group of runs each).
fn compact_par(values: &[f64], runs: &[(usize, usize)], kept: usize, workers: usize) -> Vec<f64> {
    use rayon::prelude::*;
    // Every row is written below: the groups' runs hold exactly `kept` rows.
    let mut out = output_buffer(kept, 0);
    let mut rest = out.as_mut_slice();
    let mut jobs = Vec::with_capacity(workers);
    for (range, rows) in group_runs(runs, kept, workers) {
        let (dst, tail) = rest.split_at_mut(rows);
        jobs.push((&runs[range], dst));
        rest = tail;
    }
    exec::cpu::in_pool(|| {
        jobs.into_par_iter().for_each(|(runs, dst)| {
            let mut j = 0;
            for &(start, len) in runs {
                dst[j..j + len].copy_from_slice(&values[start..start + len]);
                j += len;
            }
        })
    });
    out
}

/// The compacted rows put back on the `len` rows they came from (`runs`), other rows 0.0, on
/// `workers` rayon workers (one group of runs and the rows up to the next group each).
fn scatter_par(compact: &[f64], runs: &[(usize, usize)], len: usize, workers: usize) -> Vec<f64> {
    use rayon::prelude::*;
    // Every row is written below: runs copied, the rows between them filled.
    let mut out = output_buffer(len, 0);
    let groups = group_runs(runs, compact.len(), workers);
    let mut rest = out.as_mut_slice();
    let (mut row, mut src) = (0, 0);
    let mut jobs = Vec::with_capacity(groups.len());
    for (g, (range, rows)) in groups.iter().enumerate() {
        let end = groups
            .get(g + 1)
            .and_then(|(next, _)| runs.get(next.start))
            .map_or(len, |r| r.0);
        let (dst, tail) = rest.split_at_mut(end - row);
        jobs.push((&runs[range.clone()], dst, row, src));
        rest = tail;
        row = end;
        src += rows;
    }
    exec::cpu::in_pool(|| {
        jobs.into_par_iter()
            .for_each(|(runs, dst, first_row, mut j)| {
                let mut at = 0;
                for &(start, len) in runs {
                    let start = start - first_row;
                    dst[at..start].fill(0.0);
                    dst[start..start + len].copy_from_slice(&compact[j..j + len]);
                    j += len;
                    at = start + len;
                }
                dst[at..].fill(0.0);
            })
    });
    out
}

/// The row of the `k`-th row in `runs` (0-based), or `len` when they hold fewer.
fn row_of_kept(runs: &[(usize, usize)], k: usize, len: usize) -> usize {
    let mut seen = 0;
    for &(start, run) in runs {
        if seen + run > k {
            return start + (k - seen);
        }
        seen += run;
    }
    len
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

/// Runs `spec` on the input columns `cols` under the null contract and returns the output
/// Series, named `name` (the receiver's). `caller_parallel`: Polars runs this call inside one of
/// its parallel sections.
fn compute(
    name: PlSmallStr,
    cols: Vec<Float64Chunked>,
    caller_parallel: bool,
    spec: Spec,
    device: &str,
    workload_tag: Option<&str>,
) -> PolarsResult<Series> {
    let device = Device::parse(device)
        .map_err(|m| PolarsError::ComputeError(format!("threadx.{}: {m}", spec.name()).into()))?;
    let n = cols[0].len();
    // With nulls: the runs of rows where every input is present. The kernel runs on those rows
    // compacted to the front, and its outputs are moved back in place (`expand_in_place`): one
    // pass over the values each way, nothing per row but a copy.
    let runs = present_rows(&cols).map(|mask| (set_runs(&mask), mask));
    let ctx = CallContext {
        caller_parallel: caller_parallel || exec::on_polars_pool_thread(),
    };
    // Large inputs outside Polars' parallel sections: the passes use the call's planned workers.
    let pass_workers = if runs.is_none() || ctx.caller_parallel || n < PARALLEL_PASS_ROWS {
        1
    } else {
        exec::optimal_workers(Some(n), Some(spec.name()))
    };
    let values: Vec<Cow<[f64]>> = match &runs {
        None => cols.iter().map(contiguous).collect(),
        Some((runs, mask)) => {
            let kept = mask.set_bits();
            cols.iter()
                .map(|c| {
                    let v = values_with_nulls(c);
                    Cow::Owned(if pass_workers > 1 {
                        compact_par(&v, runs, kept, pass_workers)
                    } else {
                        compact(&v, runs, kept)
                    })
                })
                .collect()
        }
    };
    let m = values[0].len();
    let slices: Vec<&[f64]> = values.iter().map(|v| v.as_ref()).collect();
    let lookback = spec.lookback();
    // One worker: `n` rows each (`m <= n`), the kernel fills the first `m` and
    // `expand_in_place` all of them. Several: `m` rows, scattered into new columns in parallel.
    let rows = if pass_workers > 1 { m } else { n };
    let mut outs: Vec<Vec<f64>> = spec
        .outputs()
        .iter()
        .map(|_| output_buffer(rows, lookback))
        .collect();
    let mut views: Vec<&mut [f64]> = outs.iter_mut().map(|o| &mut o[..m]).collect();
    exec::execute_tagged(&spec, &device, workload_tag, &slices, &mut views, ctx)
        .map_err(|e| PolarsError::ComputeError(e.to_string().into()))?;

    // With nulls: valid where present and past the first `lookback` present rows.
    let validity = match &runs {
        None => warmup_validity(n, lookback),
        Some((runs, mask)) => Some(match warmup_validity(n, row_of_kept(runs, lookback, n)) {
            Some(warm) => mask & &warm,
            None => mask.clone(),
        }),
    };
    let series: Vec<Series> = outs
        .into_iter()
        .zip(spec.def().outputs)
        .map(|(mut out, field)| {
            if let Some((runs, _)) = &runs {
                if pass_workers > 1 {
                    out = scatter_par(&out, runs, n, pass_workers);
                } else {
                    expand_in_place(&mut out, runs);
                }
            }
            let name: PlSmallStr = field.name.into();
            if field.row {
                let runs = runs.as_ref().map(|(r, _)| r.as_slice());
                return row_output(name, &out, runs, validity.clone());
            }
            Float64Chunked::from_vec_validity(name, out, validity.clone()).into_series()
        })
        .collect();

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
/// the kernel, which writes every row from the lookback on (`tests::kernels_write_every_row`);
/// with nulls, the rows past the kernel's are written by `expand_in_place`. `compact_par` and
/// `scatter_par` also take one with `lookback` 0 and write every row.
///
/// Zero-filling 8 bytes per row per output would cost as much as the page faults it tries to
/// avoid; with Polars' allocator (see `lib.rs`) the pages of earlier results are reused instead.
fn output_buffer(len: usize, lookback: usize) -> Vec<f64> {
    let mut v: Vec<f64> = Vec::with_capacity(len);
    v.resize(lookback.min(len), 0.0);
    // SAFETY: capacity is `len`; f64 has no invalid bit patterns, and every row at or after the
    // lookback is written by the kernel (checked by the coverage test), or with nulls by
    // `expand_in_place` / `compact_par` / `scatter_par`, before the buffer is read.
    unsafe { v.set_len(len) };
    v
}

/// Puts the compacted rows at the front of `out` back on the rows they came from (`runs`), in
/// place: from the last run to the first, each moves up (never down: a row's place is at or after
/// its compacted index), and the rows between runs (null rows) are set to 0.0. Every row of `out`
/// is written, so rows past the compacted ones may hold anything before.
fn expand_in_place(out: &mut [f64], runs: &[(usize, usize)]) {
    let mut src_end: usize = runs.iter().map(|r| r.1).sum();
    let mut gap_end = out.len();
    for &(start, len) in runs.iter().rev() {
        out[start + len..gap_end].fill(0.0);
        src_end -= len;
        out.copy_within(src_end..src_end + len, start);
        gap_end = start;
    }
    out[..gap_end].fill(0.0);
}
