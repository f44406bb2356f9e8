//! The null contract's passes over a call's columns: which rows are present (every input
//! non-null), compacting them to the front before the kernels run, and putting the outputs back
//! on the rows they came from. Nothing here knows an indicator.

use std::borrow::Cow;

use polars_arrow::bitmap::{Bitmap, MutableBitmap};
use polars_core::prelude::*;

use crate::exec;

/// The values of a null-free column as one contiguous slice (borrowed when already contiguous).
pub(super) fn contiguous(ca: &Float64Chunked) -> Cow<'_, [f64]> {
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
pub(super) fn values_with_nulls(ca: &Float64Chunked) -> Cow<'_, [f64]> {
    if ca.chunks().len() == 1 {
        if let Some(arr) = ca.downcast_iter().next() {
            return Cow::Borrowed(arr.values().as_slice());
        }
    }
    contiguous_values(ca)
}

pub(super) fn contiguous_values(ca: &Float64Chunked) -> Cow<'_, [f64]> {
    let mut v = Vec::with_capacity(ca.len());
    for arr in ca.downcast_iter() {
        v.extend_from_slice(arr.values());
    }
    Cow::Owned(v)
}

/// Rows where every input is non-null, as one bitmap (the inputs' validities ANDed word by
/// word), or `None` when there is no null at all.
pub(super) fn present_rows(cols: &[Float64Chunked]) -> Option<Bitmap> {
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
pub(super) fn for_each_run(mask: &Bitmap, mut run: impl FnMut(usize, usize)) {
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
pub(super) fn set_runs(mask: &Bitmap) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for_each_run(mask, |start, len| match runs.last_mut() {
        // A run that goes on across a word boundary is one run.
        Some((s, l)) if *s + *l == start => *l += len,
        _ => runs.push((start, len)),
    });
    runs
}

/// The rows of `values` in `runs`, in order (`kept` of them).
pub(super) fn compact(values: &[f64], runs: &[(usize, usize)], kept: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(kept);
    for &(start, len) in runs {
        out.extend_from_slice(&values[start..start + len]);
    }
    out
}

/// Inputs from this many rows on have their null passes (compaction, scatter) run on the
/// call's planned CPU workers.
pub(super) const PARALLEL_PASS_ROWS: usize = 1 << 20;

/// `runs` cut into `k` consecutive groups holding about the same number of rows each: the
/// group's range of runs and the number of rows it holds.
pub(super) fn group_runs(
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
pub(super) fn compact_par(
    values: &[f64],
    runs: &[(usize, usize)],
    kept: usize,
    workers: usize,
) -> Vec<f64> {
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
pub(super) fn scatter_par(
    compact: &[f64],
    runs: &[(usize, usize)],
    len: usize,
    workers: usize,
) -> Vec<f64> {
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

/// The rows of each series (`bounds`, in input rows) past its warm-up: the row of its
/// `lookback`-th present row (`runs`: the present rows; `None`: every row), or its end.
pub(super) fn warmup_ends(
    bounds: &[usize],
    runs: Option<&[(usize, usize)]>,
    lookback: usize,
) -> Vec<usize> {
    let mut ends = Vec::with_capacity(bounds.len().saturating_sub(1));
    let mut first_run = 0;
    for w in bounds.windows(2) {
        let (start, end) = (w[0], w[1]);
        let Some(runs) = runs else {
            ends.push(start + lookback.min(end - start));
            continue;
        };
        while first_run < runs.len() && runs[first_run].0 + runs[first_run].1 <= start {
            first_run += 1;
        }
        let (mut need, mut at) = (lookback, end);
        for &(run_start, len) in &runs[first_run..] {
            let (lo, hi) = (run_start.max(start), (run_start + len).min(end));
            if lo >= end {
                break;
            }
            if need < hi - lo {
                at = lo + need;
                break;
            }
            need -= hi - lo;
        }
        ends.push(at);
    }
    ends
}

/// The validity of an output of `len` rows: a row is valid when present (`mask`; `None`: every
/// row) and at or past its series' warm-up end (`warmup_ends`, one per series of `bounds`).
/// `None` when every row is valid.
pub(super) fn validity(
    len: usize,
    bounds: &[usize],
    ends: &[usize],
    mask: Option<&Bitmap>,
) -> Option<Bitmap> {
    let warm = if bounds.windows(2).zip(ends).all(|(w, &e)| e == w[0]) {
        None
    } else {
        let mut bits = MutableBitmap::with_capacity(len);
        for (w, &e) in bounds.windows(2).zip(ends) {
            bits.extend_constant(e - w[0], false);
            bits.extend_constant(w[1] - e, true);
        }
        Some(Bitmap::from(bits))
    };
    match (warm, mask) {
        (None, None) => None,
        (Some(w), None) => Some(w),
        (None, Some(m)) => Some(m.clone()),
        (Some(w), Some(m)) => Some(m & &w),
    }
}

/// An output column of `len` rows for series `bounds` (compacted rows): [`output_buffer`] with
/// every series' warm-up rows zeroed (the kernel writes each series' rows from its lookback on).
pub(super) fn series_output_buffer(len: usize, bounds: &[usize], lookback: usize) -> Vec<f64> {
    let mut v = output_buffer(len, 0);
    for w in bounds.windows(2) {
        v[w[0]..w[0] + lookback.min(w[1] - w[0])].fill(0.0);
    }
    v
}

/// An output column of `len` rows whose warm-up rows are zero and whose other rows are left for
/// the kernel, which writes every row from the lookback on (`tests::kernels_write_every_row`);
/// with nulls, the rows past the kernel's are written by `expand_in_place`. `compact_par` and
/// `scatter_par` also take one with `lookback` 0 and write every row.
///
/// Zero-filling 8 bytes per row per output would cost as much as the page faults it tries to
/// avoid; with Polars' allocator (see `lib.rs`) the pages of earlier results are reused instead.
pub(super) fn output_buffer(len: usize, lookback: usize) -> Vec<f64> {
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
pub(super) fn expand_in_place(out: &mut [f64], runs: &[(usize, usize)]) {
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
