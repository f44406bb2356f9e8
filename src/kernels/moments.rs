//! Rolling mean, sum and variance on the global block grid: `sma`, `rolling_sum`, `rolling_std`,
//! `rolling_var`, `zscore`, `bollinger`, and `avgdev` (the mean plus a direct pass over the window).
//!
//! # Spec (the answer is defined by this sequence of IEEE-754 double operations, no FMA)
//!
//! Window length `w`, rows `t >= w - 1`, window `s = t - w + 1 ..= t`. Rows are cut into blocks of
//! `w` rows aligned to row 0. Let `b = t / w` be the block of `t` and `o = t - b*w` its offset.
//! The window's *reference* is `r = x[b*w]` when finite, else `0.0`; `x[b*w]` always lies inside
//! the window, so shifting by it keeps the offset of the data out of the variance and a window of
//! identical values has every shifted value exactly `0.0`. Shifted values are `d = x - r`.
//!
//! * `o = w - 1` (the window is block `b`): `S1`, `S2` are the left-to-right sums (from `0.0`) of
//!   `d` and `d*d` over the block.
//! * otherwise the window is the suffix of block `b - 1` from offset `o + 1` and the prefix of block
//!   `b` through `o`: `S1 = A1 + B1`, `S2 = A2 + B2`, where `A*` are right-to-left sums (from `0.0`,
//!   `acc = v + acc`) over the suffix and `B*` left-to-right sums (`acc = acc + v`) over the prefix,
//!   all with the same reference `r` (that of block `b`).
//!
//! Then, with `iw = 1.0 / w`: `md = S1 * iw`, `mean = r + md`, `m2 = S2 - S1 * md`, or `0.0` if that is
//! negative (a rounding residue below the data's conditioning limit; NaN passes). Outputs: `sma = mean`;
//! `rolling_std = sqrt(m2 * (1.0 / (w - ddof)))`; `rolling_var = m2 * iw` (so `sqrt(rolling_var)` has
//! the bits of `rolling_std` with `ddof = 0`); `zscore = ((x_t - r) - md) / sqrt(m2 * iw)`;
//! `rolling_sum = r * w + S1` (`w` as a double; TA-Lib's SUM);
//! `bollinger`: `dev = k * sqrt(m2 * iw)`, `middle = mean`, `upper = mean + dev`, `lower = mean - dev`.
//! The mean is the same operations whether or not the variance is needed, so `bollinger.middle` is
//! bit-identical to `sma`. `rolling_sum = S1 + r * w` (the window's sum, `w` as a double).
//!
//!
//! `avgdev` (mean absolute deviation, TA-Lib's AVGDEV) is not a sum of moments: per row,
//! `mean` as above (the bits of `sma`), then `dev = Σ |x_s - mean|` summed left to right from
//! `0.0` over `s = t - w + 1 ..= t` (`acc = acc + |x_s - mean|`), and `avgdev = dev / w` (a
//! division, as TA-Lib). A window holding a NaN or an infinity gives NaN. Cost O(w) per row (TA-Lib's
//! is two passes of `w`), and the same halo as the mean.
//!
//! Accuracy: because `r` is a value of the window, `Σd² <= w·m2`, so the relative error of `m2` is
//! at most about `w·ε` and in practice a few `ε` (≈1e-16 against exact rational arithmetic on prices
//! near 1e6 with 0.01 noise, near 1e-7, and on random walks — see `tests/test_exact_reference.py`).
//! Cost O(1) amortised per row, no running sum ever has a value subtracted, and a piece of rows
//! `[lo, hi)` reads inputs from the start of the block holding `lo - w + 1` (`Halo::Window`).

use super::extrema::select;
use super::scratch::{carve, with_scratch};
use super::split::Splitter;
use super::{canon, canon_rows};

/// The reference of the block starting at `block_start`: its value when finite, else `0.0`.
#[inline(always)]
pub fn reference(x: &[f64], block_start: usize) -> f64 {
    let r = x[block_start];
    if r.is_finite() {
        r
    } else {
        0.0
    }
}

/// Rows handed to an output writer at once: big enough to amortise per-block work and let the
/// writer's loop vectorise, small enough that the tile stays in L1/L2.
const TILE_ROWS: usize = 2048;

/// Prefix sums of one block (`acc = acc + d`, left to right) with reference `r`.
#[inline(always)]
fn prefix_sums<const VAR: bool>(block: &[f64], r: f64, pre1: &mut [f64], pre2: &mut [f64]) {
    let (mut a1, mut a2) = (0.0f64, 0.0f64);
    for (o, v) in block.iter().enumerate() {
        let d = v - r;
        a1 = a1 + d;
        pre1[o] = a1;
        if VAR {
            a2 = a2 + d * d;
            pre2[o] = a2;
        }
    }
}

/// Suffix sums of one block (`acc = d + acc`, right to left) with reference `r`, offsets `from..`.
#[inline(always)]
fn suffix_sums<const VAR: bool>(
    block: &[f64],
    from: usize,
    r: f64,
    suf1: &mut [f64],
    suf2: &mut [f64],
) {
    let (mut a1, mut a2) = (0.0f64, 0.0f64);
    for o in (from..block.len()).rev() {
        let d = block[o] - r;
        a1 = d + a1;
        suf1[o] = a1;
        if VAR {
            a2 = d * d + a2;
            suf2[o] = a2;
        }
    }
}

/// Prefix sums of block `cur` (reference `r`) and suffix sums of the same block for the next
/// window block (reference `r_next`) in one pass: independent chains, so they overlap in the CPU's
/// pipelines. Same operations, in the same order, as [`prefix_sums`] and [`suffix_sums`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn prefix_and_suffix<const VAR: bool>(
    block: &[f64],
    r: f64,
    r_next: f64,
    pre1: &mut [f64],
    pre2: &mut [f64],
    suf1: &mut [f64],
    suf2: &mut [f64],
) {
    let w = block.len();
    let (mut p1, mut p2, mut q1, mut q2) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for i in 0..w {
        let d = block[i] - r;
        p1 = p1 + d;
        pre1[i] = p1;
        let j = w - 1 - i;
        let e = block[j] - r_next;
        q1 = e + q1;
        suf1[j] = q1;
        if VAR {
            p2 = p2 + d * d;
            pre2[i] = p2;
            q2 = e * e + q2;
            suf2[j] = q2;
        }
    }
}

/// Shifted sums of every window ending in `[lo, hi)` (`lo >= w - 1`), handed over in tiles as
/// `flush(first_row, r, s1, s2)` with one entry per row. With `VAR == false`, `s2` is empty.
fn sums_tiles<const VAR: bool>(
    x: &[f64],
    w: usize,
    lo: usize,
    hi: usize,
    mut flush: impl FnMut(usize, &[f64], &[f64], &[f64]),
) {
    debug_assert!(lo + 1 >= w && hi <= x.len());
    if lo >= hi {
        return;
    }
    // Small pieces (one `.over()` group) must not pay for a full tile of scratch.
    let cap = TILE_ROWS.min(hi - lo) + w;
    let var_len = |n: usize| if VAR { n } else { 0 };
    with_scratch(3 * cap + 6 * w, |scratch| {
        let [tr, t1, t2, pre1, pre2, suf1, suf2, nsuf1, nsuf2] =
            carve(scratch, [cap, cap, cap, w, w, w, w, w, w]);
        // suf*: suffix sums of the previous block (for this block's windows); nsuf*: of this block
        // (for the next block's windows).
        let (mut suf1, mut suf2, mut nsuf1, mut nsuf2) = (suf1, suf2, nsuf1, nsuf2);
        let (mut t0, mut len) = (lo, 0usize);
        let (first_block, last_block) = (lo / w, (hi - 1) / w);
        for b in first_block..=last_block {
            let b_start = b * w;
            let o_lo = lo.max(b_start) - b_start;
            let o_hi = hi.min(b_start + w) - b_start; // exclusive
            let r = reference(x, b_start);
            let mid = o_hi.min(w - 1).saturating_sub(o_lo); // rows that also need the previous block
            if b == first_block && mid > 0 {
                suffix_sums::<VAR>(&x[b_start - w..b_start], o_lo + 1, r, suf1, suf2);
            }
            let block = &x[b_start..b_start + o_hi];
            if b < last_block {
                let r_next = reference(x, b_start + w);
                prefix_and_suffix::<VAR>(block, r, r_next, pre1, pre2, nsuf1, nsuf2);
            } else {
                prefix_sums::<VAR>(block, r, pre1, pre2);
            }
            if mid > 0 {
                let (s, p) = (&suf1[o_lo + 1..o_lo + 1 + mid], &pre1[o_lo..o_lo + mid]);
                for ((dst, a), b) in t1[len..len + mid].iter_mut().zip(s).zip(p) {
                    *dst = a + b;
                }
                if VAR {
                    let (s, p) = (&suf2[o_lo + 1..o_lo + 1 + mid], &pre2[o_lo..o_lo + mid]);
                    for ((dst, a), b) in t2[len..len + mid].iter_mut().zip(s).zip(p) {
                        *dst = a + b;
                    }
                }
            }
            if o_hi == w {
                t1[len + mid] = pre1[w - 1];
                if VAR {
                    t2[len + mid] = pre2[w - 1];
                }
            }
            std::mem::swap(&mut suf1, &mut nsuf1);
            if VAR {
                std::mem::swap(&mut suf2, &mut nsuf2);
            }
            let rows = o_hi - o_lo;
            tr[len..len + rows].fill(r);
            len += rows;
            if len >= TILE_ROWS || b == last_block {
                flush(t0, &tr[..len], &t1[..len], &t2[..var_len(len)]);
                t0 += len;
                len = 0;
            }
        }
    });
}

/// Windows this short are summed directly per row (the same operations in the same order as the
/// block passes of [`sums_tiles`]): for them the per-block bookkeeping costs more than the sums.
const DIRECT_MAX_W: usize = 8;

/// [`sums_tiles`] computed row by row: for row `t` at offset `o` of block `b`, the suffix of block
/// `b - 1` from the right (`acc = d + acc`), the prefix of block `b` from the left (`acc = acc + d`),
/// then `suffix + prefix`; a block-ending row is the prefix of its whole block.
fn sums_direct<const VAR: bool>(
    x: &[f64],
    w: usize,
    lo: usize,
    hi: usize,
    mut flush: impl FnMut(usize, &[f64], &[f64], &[f64]),
) {
    if lo >= hi {
        return;
    }
    let cap = TILE_ROWS.min(hi - lo);
    let var_len = |n: usize| if VAR { n } else { 0 };
    with_scratch(3 * cap, |scratch| {
        let [tr, t1, t2] = carve(scratch, [cap, cap, cap]);
        let mut b_start = (lo / w) * w;
        let mut r = reference(x, b_start);
        let mut t0 = lo;
        let mut len = 0;
        for t in lo..hi {
            if t >= b_start + w {
                b_start += w;
                r = reference(x, b_start);
            }
            let o = t - b_start;
            let (mut p1, mut p2) = (0.0f64, 0.0f64);
            for v in &x[b_start..=t] {
                let d = v - r;
                p1 = p1 + d;
                if VAR {
                    p2 = p2 + d * d;
                }
            }
            let (mut s1, mut s2) = (p1, p2);
            if o < w - 1 {
                let (mut a1, mut a2) = (0.0f64, 0.0f64);
                for v in x[b_start - w + o + 1..b_start].iter().rev() {
                    let d = v - r;
                    a1 = d + a1;
                    if VAR {
                        a2 = d * d + a2;
                    }
                }
                s1 = a1 + p1;
                s2 = a2 + p2;
            }
            tr[len] = r;
            t1[len] = s1;
            if VAR {
                t2[len] = s2;
            }
            len += 1;
            if len == cap || t + 1 == hi {
                flush(t0, &tr[..len], &t1[..len], &t2[..var_len(len)]);
                t0 += len;
                len = 0;
            }
        }
    });
}

/// `m2 = S2 - S1·md`, with a negative rounding residue clamped to 0 (NaN passes through).
#[inline(always)]
fn second_moment(s1: f64, s2: f64, md: f64) -> f64 {
    let m2 = s2 - s1 * md;
    if m2 < 0.0 {
        0.0
    } else {
        m2
    }
}

/// Runs a moments kernel over every output row `t >= w - 1` of `outs` (each as long as `x`):
/// `write(outs_tile, first_row, r, s1, s2)` turns one tile of sums into outputs.
fn run_moments<S: Splitter, const VAR: bool, const K: usize>(
    split: &S,
    x: &[f64],
    w: usize,
    outs: [&mut [f64]; K],
    write: impl Fn([&mut [f64]; K], usize, &[f64], &[f64], &[f64]) + Sync + Send,
) {
    let n = x.len();
    if w == 0 || n < w {
        return;
    }
    let tail = outs.map(|o| &mut o[w - 1..n]);
    split.for_each_piece(w - 1, tail, |lo, mut piece| {
        let hi = lo + piece[0].len();
        let flush = |t0: usize, r: &[f64], s1: &[f64], s2: &[f64]| {
            let at = t0 - lo;
            let tile = piece.each_mut().map(|p| &mut p[at..at + r.len()]);
            write(tile, t0, r, s1, s2)
        };
        if w <= DIRECT_MAX_W {
            sums_direct::<VAR>(x, w, lo, hi, flush);
        } else {
            sums_tiles::<VAR>(x, w, lo, hi, flush);
        }
    });
}

/// Simple moving average; rows `< period - 1` are left untouched (warm-up).
pub fn sma<S: Splitter>(split: &S, x: &[f64], period: usize, out: &mut [f64]) {
    let (n, w) = (x.len(), period);
    if w == 0 || n < w {
        return;
    }
    // [`sma_rows`] is the same arithmetic as the tiles' sums and `sma`'s writer, written straight
    // into the output with no intermediate sums.
    split.for_each_piece(w - 1, [&mut out[w - 1..n]], |lo, [piece]| {
        let hi = lo + piece.len();
        with_scratch(GROUP * w, |suf| {
            sma_rows(&x[..hi], 0, w, (lo, hi), suf, piece)
        });
    });
}

/// Rows of a derived series [`sma_of`] materialises at once: a few blocks of a short window,
/// small enough to stay in L1/L2 with the SMA's scratch.
const SMA_OF_ROWS: usize = 4096;

/// [`sma`] of the series `value(t)` (`n` rows), which is never stored whole: each piece
/// computes its rows' values tile by tile, whole blocks of `w` (plus the previous block, the
/// halo) into scratch, and runs [`sma_rows`] on them. A tile boundary is a cut of the rows, so the
/// bits are those of [`sma`] of the stored series.
pub fn sma_of<S: Splitter>(
    split: &S,
    n: usize,
    period: usize,
    value: impl Fn(usize) -> f64 + Sync + Send,
    out: &mut [f64],
) {
    sma_of_filled(
        split,
        n,
        period,
        |t0, xs| {
            for (i, v) in xs.iter_mut().enumerate() {
                *v = value(t0 + i);
            }
        },
        out,
    )
}

/// [`sma_of`] with the series given by `fill(t0, xs)`, which writes rows `t0 ..` of it into `xs`:
/// a fill that zips input slices vectorises, where a per-row closure bounds-checks every access.
pub fn sma_of_filled<S: Splitter>(
    split: &S,
    n: usize,
    period: usize,
    fill: impl Fn(usize, &mut [f64]) + Sync + Send,
    out: &mut [f64],
) {
    let w = period;
    if w == 0 || n < w {
        return;
    }
    let tile = SMA_OF_ROWS.div_ceil(w) * w;
    split.for_each_piece(w - 1, [&mut out[w - 1..n]], |lo, [piece]| {
        let hi = lo + piece.len();
        with_scratch(tile + 2 * w + GROUP * w, |raw| {
            let [xs, suf] = carve(raw, [tile + 2 * w, GROUP * w]);
            let mut a = lo;
            while a < hi {
                // Up to the block boundary after `a + tile - w`; values from the previous block on.
                let b = ((a / w + 1) * w + tile - w).min(hi);
                let x0 = (a / w).saturating_sub(1) * w;
                let xs = &mut xs[..b - x0];
                fill(x0, xs);
                sma_rows(xs, x0, w, (a, b), suf, &mut piece[a - lo..b - lo]);
                a = b;
            }
        });
    });
}

/// [`sma`] of the rows `[lo, hi)` on one thread, for kernels that feed an SMA from their own tiles
/// (stoch). Row numbers are on the SMA's grid (row 0 is its origin); `x[i]` is row `x0 + i` with
/// `x0 <= lo + 1 - w`, and `out[i]` receives row `lo + i`. `suf` is scratch of at least `w` elements.
/// The same operations, in the same order, as [`sums_tiles`]/[`sums_direct`] followed by the `sma`
/// writer, block by block: suffix sums of the previous block, then prefix sums of this one.
pub(crate) fn sma_rows(
    x: &[f64],
    x0: usize,
    w: usize,
    rows: (usize, usize),
    suf: &mut [f64],
    out: &mut [f64],
) {
    debug_assert!(x0 + w <= rows.0 + 1 && rows.1 <= x0 + x.len() && out.len() >= rows.1 - rows.0);
    // Short windows get a copy with the width known at compile time: their whole blocks then run
    // as straight-line code instead of loops of one to eight iterations.
    match w {
        1 => sma_rows_w::<1>(x, x0, w, rows, suf, out),
        2 => sma_rows_w::<2>(x, x0, w, rows, suf, out),
        3 => sma_rows_w::<3>(x, x0, w, rows, suf, out),
        4 => sma_rows_w::<4>(x, x0, w, rows, suf, out),
        5 => sma_rows_w::<5>(x, x0, w, rows, suf, out),
        _ => sma_rows_w::<0>(x, x0, w, rows, suf, out),
    }
}

/// [`sma_rows`] for a width `W` fixed at compile time, or `w` when `W == 0`.
fn sma_rows_w<const W: usize>(
    x: &[f64],
    x0: usize,
    w: usize,
    (lo, hi): (usize, usize),
    suf: &mut [f64],
    out: &mut [f64],
) {
    if lo >= hi {
        return;
    }
    let w = if W == 0 { w } else { W };
    let inv_w = 1.0 / w as f64;
    let mut k = 0;
    let (first, last) = (lo / w, (hi - 1) / w);
    let mut b = first;
    while b <= last {
        let bs = b * w;
        let (o_lo, o_hi) = (lo.max(bs) - bs, hi.min(bs + w) - bs);
        // GROUP whole blocks at once when the caller's scratch and input allow it.
        if W == 0 && o_lo == 0 && bs >= x0 + w && (b + GROUP) * w <= hi && suf.len() >= GROUP * w {
            let win = &x[bs - w - x0..bs + GROUP * w - x0];
            sma_whole_blocks::<GROUP>(win, w, inv_w, suf, &mut out[k..k + GROUP * w]);
            k += GROUP * w;
            b += GROUP;
            continue;
        }
        if o_lo == 0 && o_hi == w {
            let win = &x[bs + 1 - w - x0..bs + w - x0];
            sma_whole_block::<W>(win, w, inv_w, suf, &mut out[k..k + w]);
        } else {
            sma_part_block(x, x0, w, bs, (o_lo, o_hi), suf, &mut out[k..]);
        }
        k += o_hi - o_lo;
        b += 1;
    }
}

/// Whole blocks that [`sma_rows`] handles together when its scratch holds `GROUP * w` values.
pub(crate) const GROUP: usize = 4;

/// The rows of `G` consecutive whole blocks `b .. b + G` from `win`, block `b - 1` through block
/// `b + G - 1`. Per block, the same operations in the same order as [`sma_whole_block`]; the
/// blocks' chains are independent, so interleaving them hides the latency of the serial sums that
/// bounds one block on its own. `suf` is stored offset-major so each step's `G` values are adjacent.
#[inline(always)]
fn sma_whole_blocks<const G: usize>(
    win: &[f64],
    w: usize,
    inv_w: f64,
    suf: &mut [f64],
    out: &mut [f64],
) {
    let xs = &win[..(G + 1) * w];
    let suf = &mut suf[..G * w];
    let out = &mut out[..G * w];
    let r: [f64; G] = std::array::from_fn(|j| reference(xs, (j + 1) * w));
    let mut q = [0.0f64; G];
    for i in (1..w).rev() {
        for j in 0..G {
            q[j] = (xs[j * w + i] - r[j]) + q[j];
        }
        suf[i * G..(i + 1) * G].copy_from_slice(&q);
    }
    let mut p = [0.0f64; G];
    for i in 0..w - 1 {
        let s = &suf[(i + 1) * G..(i + 2) * G];
        for j in 0..G {
            p[j] = p[j] + (xs[(j + 1) * w + i] - r[j]);
            out[j * w + i] = r[j] + (s[j] + p[j]) * inv_w;
        }
    }
    for j in 0..G {
        p[j] = p[j] + (xs[(j + 1) * w + w - 1] - r[j]);
        out[j * w + w - 1] = r[j] + p[j] * inv_w;
    }
    if !(0..G).all(|j| sums_finite(q[j], p[j])) {
        canon_rows(out);
    }
}

/// The rows of a whole block `b` from `win`, the last `w - 1` rows of block `b - 1` then block `b`.
/// With `W > 0` the loops have constant trip counts and unroll into straight-line code.
#[inline(always)]
fn sma_whole_block<const W: usize>(
    win: &[f64],
    w: usize,
    inv_w: f64,
    suf: &mut [f64],
    out: &mut [f64],
) {
    let w = if W == 0 { w } else { W };
    let (prev, block) = win.split_at(w - 1);
    let (block, out) = (&block[..w], &mut out[..w]);
    let mut local = [0.0f64; 8];
    let suf = if W > 0 && W <= local.len() {
        &mut local[..w - 1]
    } else {
        &mut suf[..w - 1]
    };
    let r = reference(block, 0);
    let mut a = 0.0f64;
    for j in (0..w - 1).rev() {
        a = (prev[j] - r) + a;
        suf[j] = a;
    }
    let mut p = 0.0f64;
    for o in 0..w - 1 {
        p = p + (block[o] - r);
        out[o] = r + (suf[o] + p) * inv_w;
    }
    p = p + (block[w - 1] - r);
    out[w - 1] = r + p * inv_w;
    if !sums_finite(a, p) {
        canon_rows(out);
    }
}

/// The rows at offsets `[o_lo, o_hi)` of the block starting at grid row `bs` (the first and last
/// block of a range), into `out[..o_hi - o_lo]`.
fn sma_part_block(
    x: &[f64],
    x0: usize,
    w: usize,
    bs: usize,
    (o_lo, o_hi): (usize, usize),
    suf: &mut [f64],
    out: &mut [f64],
) {
    let inv_w = 1.0 / w as f64;
    let r = reference(x, bs - x0);
    // Suffix sums of the previous block from offset `o_lo + 1` (rows `>= lo + 1 - w`).
    let prev = &x[bs + o_lo + 1 - w - x0..bs - x0];
    let suf = &mut suf[o_lo + 1..w];
    let mut a = 0.0f64;
    for (s, v) in suf.iter_mut().zip(prev).rev() {
        a = (v - r) + a;
        *s = a;
    }
    let block = &x[bs - x0..bs - x0 + o_hi];
    let mut p = 0.0f64;
    for v in &block[..o_lo] {
        p = p + (v - r);
    }
    let mid = o_hi.min(w - 1) - o_lo.min(w - 1);
    for ((d, v), s) in out[..mid].iter_mut().zip(&block[o_lo..]).zip(&*suf) {
        p = p + (v - r);
        *d = r + (s + p) * inv_w;
    }
    if o_hi == w {
        p = p + (block[w - 1] - r);
        out[mid] = r + p * inv_w;
    }
    if !sums_finite(a, p) {
        canon_rows(&mut out[..o_hi - o_lo]);
    }
}

/// Whether an SMA block's rows are free of NaN, from its last suffix sum `a` (the longest) and
/// last prefix sum `p`: under addition ±inf and NaN are absorbing, so when these two are finite
/// every partial sum is, each row's `s + p` is finite or ±inf, and `r + (s + p)·(1/w)` (with `r`
/// finite) is no NaN. Otherwise the rows go through [`canon_rows`]; finite data pays nothing.
#[inline(always)]
fn sums_finite(a: f64, p: f64) -> bool {
    a.is_finite() && p.is_finite()
}

/// Rolling standard deviation with `ddof` degrees of freedom removed (`ddof < period`).
pub fn rolling_std<S: Splitter>(split: &S, x: &[f64], period: usize, ddof: usize, out: &mut [f64]) {
    let inv_w = 1.0 / period as f64;
    let inv_denom = 1.0 / (period - ddof) as f64;
    run_moments::<S, true, 1>(split, x, period, [out], |[o], _, _, s1, s2| {
        for ((dst, s1), s2) in o.iter_mut().zip(s1).zip(s2) {
            let m2 = second_moment(*s1, *s2, s1 * inv_w);
            *dst = canon((m2 * inv_denom).sqrt());
        }
    });
}

/// Rolling population variance (TA-Lib's VAR): `m2 * (1.0 / w)`, the value whose square root is
/// `rolling_std` with `ddof = 0`.
pub fn rolling_var<S: Splitter>(split: &S, x: &[f64], period: usize, out: &mut [f64]) {
    let inv_w = 1.0 / period as f64;
    run_moments::<S, true, 1>(split, x, period, [out], |[o], _, _, s1, s2| {
        for ((dst, s1), s2) in o.iter_mut().zip(s1).zip(s2) {
            let m2 = second_moment(*s1, *s2, s1 * inv_w);
            *dst = canon(m2 * inv_w);
        }
    });
}

/// Mean absolute deviation around the window mean (TA-Lib's AVGDEV; see the module doc): the
/// `sma` of each window, then one left-to-right pass of `|x - mean|` over it, divided by `w`.
pub fn avgdev<S: Splitter>(split: &S, x: &[f64], period: usize, out: &mut [f64]) {
    let (n, w) = (x.len(), period);
    if w == 0 || n < w {
        return;
    }
    let wf = w as f64;
    split.for_each_piece(w - 1, [&mut out[w - 1..n]], |lo, [piece]| {
        let hi = lo + piece.len();
        with_scratch(GROUP * w, |suf| {
            sma_rows(&x[..hi], 0, w, (lo, hi), suf, piece)
        });
        for (i, dst) in piece.iter_mut().enumerate() {
            let t = lo + i;
            let mean = *dst;
            let mut dev = 0.0f64;
            for v in &x[t + 1 - w..=t] {
                dev = dev + (v - mean).abs();
            }
            *dst = canon(dev / wf);
        }
    });
}

/// Rolling sum (TA-Lib's SUM): `r * w + S1` (the window's reference times its length, plus the
/// shifted sum), exact when the data and their sums are integers below 2^53.
pub fn rolling_sum<S: Splitter>(split: &S, x: &[f64], period: usize, out: &mut [f64]) {
    let wf = period as f64;
    run_moments::<S, false, 1>(split, x, period, [out], |[o], _, r, s1, _| {
        for ((dst, r), s1) in o.iter_mut().zip(r).zip(s1) {
            *dst = canon(r * wf + s1);
        }
    });
}

/// `(x - rolling mean) / rolling population std`, computed in shifted coordinates so it stays
/// accurate on offset data; a window of identical values gives NaN (0/0).
pub fn zscore<S: Splitter>(split: &S, x: &[f64], period: usize, out: &mut [f64]) {
    let inv_w = 1.0 / period as f64;
    run_moments::<S, true, 1>(split, x, period, [out], |[o], t0, r, s1, s2| {
        let xs = &x[t0..t0 + o.len()];
        for (i, dst) in o.iter_mut().enumerate() {
            let md = s1[i] * inv_w;
            let m2 = second_moment(s1[i], s2[i], md);
            let z = ((xs[i] - r[i]) - md) / (m2 * inv_w).sqrt();
            // `m2 = inf` only when the squares of finite values overflowed: the quotient would
            // be a wrong 0, so the row is NaN (beyond the documented magnitude limit).
            *dst = canon(select(m2 == f64::INFINITY, f64::NAN, z));
        }
    });
}

/// Bollinger bands: SMA middle, population std, `k = std_dev` for both bands.
pub fn bollinger<S: Splitter>(
    split: &S,
    x: &[f64],
    period: usize,
    std_dev: f64,
    middle: &mut [f64],
    upper: &mut [f64],
    lower: &mut [f64],
) {
    let inv_w = 1.0 / period as f64;
    run_moments::<S, true, 3>(
        split,
        x,
        period,
        [middle, upper, lower],
        |[m, u, l], _, r, s1, s2| {
            let n = m.len();
            let (u, l, r, s1, s2) = (&mut u[..n], &mut l[..n], &r[..n], &s1[..n], &s2[..n]);
            for i in 0..n {
                let md = s1[i] * inv_w;
                let mean = r[i] + md;
                let dev = std_dev * (second_moment(s1[i], s2[i], md) * inv_w).sqrt();
                m[i] = canon(mean);
                u[i] = canon(mean + dev);
                l[i] = canon(mean - dev);
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::reference as naive;
    use crate::kernels::split::{CutAt, Sequential};
    use crate::kernels::testing::{assert_bits_eq, assert_close, random_cuts, series_zoo, Lcg};

    #[test]
    fn var_is_the_square_of_population_std_and_split_invariant() {
        let mut rng = Lcg(11);
        for x in series_zoo(3000, 5) {
            for w in [1, 2, 5, 20, 77] {
                let (mut var, mut std) = (vec![0.0; x.len()], vec![0.0; x.len()]);
                rolling_var(&Sequential, &x, w, &mut var);
                rolling_std(&Sequential, &x, w, 0, &mut std);
                let root: Vec<f64> = var.iter().map(|v| v.sqrt()).collect();
                assert_bits_eq(&root[w - 1..], &std[w - 1..], "sqrt(var) vs std");
                for _ in 0..4 {
                    let mut cut = vec![0.0; x.len()];
                    rolling_var(&CutAt(random_cuts(&mut rng, x.len(), 16)), &x, w, &mut cut);
                    assert_bits_eq(&cut[w - 1..], &var[w - 1..], "rolling_var cuts");
                }
            }
        }
    }

    /// Naive two-pass mean absolute deviation with a compensated mean: the reference.
    fn naive_avgdev(win: &[f64]) -> f64 {
        let n = win.len() as f64;
        let (mut s, mut c) = (0.0f64, 0.0f64);
        for &v in win {
            let t = s + v;
            c += if s.abs() >= v.abs() {
                (s - t) + v
            } else {
                (v - t) + s
            };
            s = t;
        }
        let mean = (s + c) / n;
        win.iter().map(|v| (v - mean).abs()).sum::<f64>() / n
    }

    #[test]
    fn avgdev_matches_a_naive_reference_and_every_split() {
        let mut rng = Lcg(17);
        for x in series_zoo(2500, 8) {
            let scale = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for w in [1, 2, 3, 5, 9, 14, 64, 300] {
                let mut whole = vec![0.0; x.len()];
                avgdev(&Sequential, &x, w, &mut whole);
                for t in w - 1..x.len() {
                    let want = naive_avgdev(&x[t + 1 - w..=t]);
                    // The mean's rounding moves the result by at most |mean error|, a few ulps
                    // of the data's magnitude.
                    let tol = 1e-13 * want.abs() + 64.0 * f64::EPSILON * scale;
                    assert!(
                        (whole[t] - want).abs() <= tol,
                        "w={w} t={t}: {} vs {want}",
                        whole[t]
                    );
                }
                for _ in 0..4 {
                    let mut cut = vec![0.0; x.len()];
                    avgdev(&CutAt(random_cuts(&mut rng, x.len(), 16)), &x, w, &mut cut);
                    assert_bits_eq(&cut[w - 1..], &whole[w - 1..], "avgdev cuts");
                }
            }
        }
        // A NaN poisons exactly the windows holding it; a flat window is exactly 0.
        let mut x = vec![3.25; 40];
        x[30] = f64::NAN;
        let mut out = vec![0.0; 40];
        avgdev(&Sequential, &x, 5, &mut out);
        for (t, v) in out.iter().enumerate().skip(4) {
            assert_eq!(v.is_nan(), (30..35).contains(&t), "row {t}");
            if t < 30 {
                assert_eq!(v.to_bits(), 0.0f64.to_bits(), "row {t}");
            }
        }
    }

    #[test]
    fn rolling_sum_matches_naive_is_exact_on_integers_and_split_invariant() {
        let mut rng = Lcg(23);
        let ints: Vec<f64> = (0..2500).map(|_| rng.below(1000) as f64 - 300.0).collect();
        for x in series_zoo(2500, 9).into_iter().chain([ints.clone()]) {
            for w in [1, 2, 5, 30, 77, 300] {
                let mut got = vec![0.0; x.len()];
                rolling_sum(&Sequential, &x, w, &mut got);
                let want: Vec<f64> = (w - 1..x.len())
                    .map(|t| x[t + 1 - w..=t].iter().sum::<f64>())
                    .collect();
                // Both sums are within (w + 2)·ε·Σ|x| of the exact one (the wave crosses 0).
                for (i, (g, v)) in got[w - 1..].iter().zip(&want).enumerate() {
                    let abs: f64 = x[i..i + w].iter().map(|v| v.abs()).sum();
                    let bound = 2.0 * (w as f64 + 2.0) * f64::EPSILON * abs;
                    assert!((g - v).abs() <= bound, "sum row {}: {g} vs {v}", i + w - 1);
                }
                if x == ints {
                    assert_bits_eq(&got[w - 1..], &want, "integer sums are exact");
                }
                for _ in 0..4 {
                    let mut cut = vec![0.0; x.len()];
                    rolling_sum(&CutAt(random_cuts(&mut rng, x.len(), 16)), &x, w, &mut cut);
                    assert_bits_eq(&cut[w - 1..], &got[w - 1..], "sum cuts");
                }
            }
        }
    }

    fn run_sma<S: Splitter>(s: &S, x: &[f64], w: usize) -> Vec<f64> {
        let mut out = vec![0.0; x.len()];
        sma(s, x, w, &mut out);
        out
    }

    #[test]
    fn sma_matches_naive_mean() {
        for x in series_zoo(3000, 11) {
            for w in [1, 2, 3, 7, 20, 64] {
                let got = run_sma(&Sequential, &x, w);
                let want = naive::rolling_mean(&x, w);
                assert_close(&got[w - 1..], &want[w - 1..], 1e-12, "sma");
            }
        }
    }

    #[test]
    fn rolling_sum_matches_naive_sum_and_splits() {
        let mut rng = Lcg(23);
        for x in series_zoo(3000, 13) {
            for w in [1, 2, 5, 25, 77] {
                let mut whole = vec![0.0; x.len()];
                rolling_sum(&Sequential, &x, w, &mut whole);
                let want: Vec<f64> = naive::rolling_mean(&x, w)
                    .iter()
                    .map(|m| m * w as f64)
                    .collect();
                assert_close(&whole[w - 1..], &want[w - 1..], 1e-11, "rolling_sum");
                for _ in 0..4 {
                    let mut got = vec![0.0; x.len()];
                    rolling_sum(&CutAt(random_cuts(&mut rng, x.len(), 16)), &x, w, &mut got);
                    assert_bits_eq(&got[w - 1..], &whole[w - 1..], "rolling_sum cuts");
                }
            }
        }
        let mut flat = [0.0; 6];
        rolling_sum(&Sequential, &[1.0; 6], 5, &mut flat);
        assert_eq!(flat[4..], [5.0, 5.0]);
    }

    #[test]
    fn std_and_bollinger_match_naive_two_pass() {
        for x in series_zoo(2000, 5) {
            for (w, ddof) in [(2, 0), (5, 0), (5, 1), (20, 0), (33, 2)] {
                let mut got = vec![0.0; x.len()];
                rolling_std(&Sequential, &x, w, ddof, &mut got);
                let want = naive::rolling_std(&x, w, ddof);
                assert_close(&got[w - 1..], &want[w - 1..], 1e-9, "rolling_std");
            }
        }
    }

    #[test]
    fn flat_window_has_zero_std_and_middle_equals_sma() {
        let mut x: Vec<f64> = (0..200).map(|i| 100.0 + (i as f64 * 0.37).sin()).collect();
        for v in &mut x[50..120] {
            *v = 101.125;
        }
        let w = 20;
        let (mut m, mut u, mut l) = (vec![0.0; 200], vec![0.0; 200], vec![0.0; 200]);
        bollinger(&Sequential, &x, w, 2.0, &mut m, &mut u, &mut l);
        for t in 69..120 {
            assert_eq!(u[t], 101.125, "row {t}");
            assert_eq!(l[t], 101.125, "row {t}");
        }
        assert_bits_eq(
            &m[w - 1..],
            &run_sma(&Sequential, &x, w)[w - 1..],
            "middle vs sma",
        );
    }

    /// `sma` (now [`sma_rows`]) is the bits of the tiles' sums through the mean formula, which
    /// `bollinger.middle` still uses.
    #[test]
    fn sma_equals_tile_sums_mean() {
        for mut x in series_zoo(4000, 29) {
            x[1234] = f64::NAN;
            x[2000] = f64::INFINITY;
            for w in [1, 2, 7, 9, 20, 30, 77, 1024] {
                let iw = 1.0 / w as f64;
                let mut want = vec![0.0; x.len()];
                run_moments::<Sequential, false, 1>(
                    &Sequential,
                    &x,
                    w,
                    [&mut want],
                    |[o], _, r, s1, _| {
                        for ((dst, r), s1) in o.iter_mut().zip(r).zip(s1) {
                            *dst = r + s1 * iw;
                        }
                    },
                );
                assert_bits_eq(&run_sma(&Sequential, &x, w), &want, "sma vs tiles");
            }
        }
    }

    #[test]
    fn nan_poisons_only_windows_holding_it() {
        let mut x: Vec<f64> = (0..100).map(|i| i as f64 * 1.5 + 3.0).collect();
        x[40] = f64::NAN; // also the reference of block 2 for w = 20
        let w = 20;
        let out = run_sma(&Sequential, &x, w);
        for (t, v) in out.iter().enumerate().skip(w - 1) {
            let holds = t >= 40 && t < 40 + w;
            assert_eq!(v.is_nan(), holds, "row {t}");
        }
    }

    /// The direct path for short windows is the block passes' arithmetic, row by row.
    #[test]
    fn direct_sums_equal_block_sums() {
        for x in series_zoo(700, 13) {
            for w in 1..=DIRECT_MAX_W + 3 {
                let collect = |direct: bool| {
                    let (mut r, mut a, mut b) = (vec![], vec![], vec![]);
                    let f = |_: usize, rr: &[f64], s1: &[f64], s2: &[f64]| {
                        r.extend_from_slice(rr);
                        a.extend_from_slice(s1);
                        b.extend_from_slice(s2);
                    };
                    if direct {
                        sums_direct::<true>(&x, w, w - 1, x.len(), f);
                    } else {
                        sums_tiles::<true>(&x, w, w - 1, x.len(), f);
                    }
                    [r, a, b]
                };
                let (d, t) = (collect(true), collect(false));
                for j in 0..3 {
                    assert_bits_eq(&d[j], &t[j], "direct vs tiles");
                }
            }
        }
    }

    /// `sma_rows` on any row range, from any admissible start of its input, is `sma`'s bits.
    #[test]
    fn sma_rows_equal_sma() {
        let mut rng = Lcg(17);
        for mut x in series_zoo(900, 23) {
            x[301] = f64::NAN;
            x[450] = -0.0;
            for w in [1, 2, 3, 5, 9, 40] {
                let whole = run_sma(&Sequential, &x, w);
                for i in 0..40 {
                    // Scratch of `w` (stoch's) takes blocks one by one, of `GROUP * w` in groups.
                    let mut suf = vec![0.0; if i % 2 == 0 { w } else { GROUP * w }];
                    let lo = w - 1 + rng.below(x.len() - w + 1);
                    let hi = lo + rng.below(x.len() - lo + 1);
                    let x0 = rng.below(lo + 2 - w);
                    let mut out = vec![0.0; hi - lo];
                    sma_rows(&x[x0..hi], x0, w, (lo, hi), &mut suf, &mut out);
                    assert_bits_eq(&out, &whole[lo..hi], "sma_rows");
                }
            }
        }
    }

    /// `sma_of` a derived series, tile by tile, on any split, is `sma` of the stored series.
    #[test]
    fn sma_of_a_series_is_sma_of_it_stored() {
        let mut rng = Lcg(19);
        for mut x in series_zoo(12_000, 29) {
            x[3001] = f64::NAN;
            x[7000] = f64::INFINITY;
            for w in [1, 2, 3, 5, 9, 40, 3000, 5000] {
                let whole = run_sma(&Sequential, &x, w);
                for _ in 0..3 {
                    let mut got = vec![0.0; x.len()];
                    let split = CutAt(random_cuts(&mut rng, x.len(), 8));
                    sma_of(&split, x.len(), w, |t| x[t], &mut got);
                    assert_bits_eq(&got[w - 1..], &whole[w - 1..], &format!("sma_of w={w}"));
                }
            }
        }
    }

    #[test]
    fn every_split_gives_identical_bits() {
        let mut rng = Lcg(7);
        for x in series_zoo(5000, 3) {
            for w in [1, 2, 5, 20, 77, 1024] {
                let whole = {
                    let (mut m, mut u, mut l) =
                        (vec![0.0; x.len()], vec![0.0; x.len()], vec![0.0; x.len()]);
                    bollinger(&Sequential, &x, w, 2.0, &mut m, &mut u, &mut l);
                    [m, u, l]
                };
                for _ in 0..6 {
                    let cuts = CutAt(random_cuts(&mut rng, x.len(), 16));
                    let (mut m, mut u, mut l) =
                        (vec![0.0; x.len()], vec![0.0; x.len()], vec![0.0; x.len()]);
                    bollinger(&cuts, &x, w, 2.0, &mut m, &mut u, &mut l);
                    assert_bits_eq(&m, &whole[0], "middle");
                    assert_bits_eq(&u, &whole[1], "upper");
                    assert_bits_eq(&l, &whole[2], "lower");
                }
            }
        }
    }
}
