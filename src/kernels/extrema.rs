//! Rolling maximum / minimum on the global block grid (van Herk / Gil–Werman), the indicators
//! built on them (MAX, MIN, MINMAX, MIDPOINT, MIDPRICE, DONCHIAN) and the stochastic oscillator.
//!
//! # Spec
//! Blocks of `w` rows aligned to row 0. For row `t` at offset `o` in block `b`: if `o = w - 1` the
//! window is block `b` and the result is the left-to-right prefix fold of block `b`; otherwise it is
//! `pick(suffix_{b-1}[o + 1], prefix_b[o])`, where the prefix folds `pick(acc, x)` left to right and
//! the suffix folds `pick(x, acc)` right to left. `pick` propagates NaN (a window holding a NaN gives
//! NaN, unlike `f64::max`) and returns its second operand on ties. Max and min are exact, so any
//! fold order would give the same value; the order is fixed anyway so ±0.0 ties are reproducible.
//!
//! MIDPOINT / MIDPRICE / DONCHIAN's middle (TA-Lib's arithmetic): `(HH_t + LL_t) / 2.0`, with `HH`
//! the rolling max (of `x`, or of `high`) and `LL` the rolling min (of `x`, or of `low`); DONCHIAN's
//! upper and lower bands are `HH` and `LL`, MINMAX's outputs `LL` and `HH`. A window holding a NaN
//! gives NaN (TA-Lib's comparisons would skip it).
//!
//! STOCH (TA-Lib, SMA smoothing): `fastk_t = (close_t - LL_t) / ((HH_t - LL_t) / 100)`, or `0.0`
//! when `HH_t - LL_t == 0`, with `HH`/`LL` the rolling max of `high` / min of `low` over
//! `fastk_period`. `slowk` is `moments::sma(slowk_period)` of the fastk rows (its grid origin is the
//! first fastk row, `fastk_period - 1`), `slowd` is `sma(slowd_period)` of the slowk rows (origin
//! `fastk_period + slowk_period - 2`). Lookback `(fastk-1) + (slowk-1) + (slowd-1)`.

use super::moments::sma_rows;
use super::scratch::{carve, with_scratch};
use super::split::Splitter;
use super::{canon, canon_rows};

/// `if cond { a } else { b }` on the bit patterns: data-dependent choices on noisy prices must not
/// become branches (a misprediction costs more than the arithmetic). Exact: no arithmetic at all.
#[inline(always)]
pub fn select(cond: bool, a: f64, b: f64) -> f64 {
    let m = (cond as u64).wrapping_neg();
    f64::from_bits((a.to_bits() & m) | (b.to_bits() & !m))
}

#[inline(always)]
pub fn nan_max(a: f64, b: f64) -> f64 {
    select((a > b) | a.is_nan(), a, b)
}

#[inline(always)]
pub fn nan_min(a: f64, b: f64) -> f64 {
    select((a < b) | a.is_nan(), a, b)
}

/// One direction of the NaN-propagating fold. `NEUTRAL` is an identity on bits:
/// `pick(NEUTRAL, x)` and `pick(x, NEUTRAL)` both return `x`'s bits for every `x` (a tie with the
/// infinity returns the second operand, which has the same bits), so folds can start from it and a
/// block-ending row can combine with it instead of branching.
pub trait Extremum {
    const NEUTRAL: f64;
    fn pick(a: f64, b: f64) -> f64;
    /// Whether `pick(a, b)` returns `a` (to carry something along with the value, e.g. its row).
    fn first_wins(a: f64, b: f64) -> bool;
    /// `pick` for a first operand that is not NaN: one `maxsd`/`minsd` instead of a compare, a NaN
    /// test and a blend. Same bits as `pick` then (a NaN `b` is returned by both).
    fn pick_ordered(a: f64, b: f64) -> f64;
}

/// Rolling maximum: [`nan_max`].
pub struct Max;
/// Rolling minimum: [`nan_min`].
pub struct Min;

impl Extremum for Max {
    const NEUTRAL: f64 = f64::NEG_INFINITY;
    #[inline(always)]
    fn pick(a: f64, b: f64) -> f64 {
        nan_max(a, b)
    }
    #[inline(always)]
    fn first_wins(a: f64, b: f64) -> bool {
        (a > b) | a.is_nan()
    }
    #[inline(always)]
    fn pick_ordered(a: f64, b: f64) -> f64 {
        if a > b {
            a
        } else {
            b
        }
    }
}

impl Extremum for Min {
    const NEUTRAL: f64 = f64::INFINITY;
    #[inline(always)]
    fn pick(a: f64, b: f64) -> f64 {
        nan_min(a, b)
    }
    #[inline(always)]
    fn first_wins(a: f64, b: f64) -> bool {
        (a < b) | a.is_nan()
    }
    #[inline(always)]
    fn pick_ordered(a: f64, b: f64) -> f64 {
        if a < b {
            a
        } else {
            b
        }
    }
}

/// Writes the rolling fold of rows `[lo, hi)` into `out` (`out[i]` is row `lo + i`; `lo >= w - 1`),
/// block by block as the spec says. `suf` is scratch of `w + 1` elements. Only the rows
/// `>= lo + 1 - w` are read.
///
/// Every `pick` of the spec's fold has as first operand a fold of some of these rows, which is NaN
/// only if one of them is: when none is (the usual case, checked first by one vectorised pass) the
/// fold uses [`Extremum::pick_ordered`], with the same bits.
pub fn van_herk_rows<E: Extremum>(
    x: &[f64],
    w: usize,
    (lo, hi): (usize, usize),
    suf: &mut [f64],
    out: &mut [f64],
) {
    debug_assert!(lo + 1 >= w && hi <= x.len() && suf.len() > w && out.len() >= hi - lo);
    if lo >= hi {
        return;
    }
    // Short windows get copies with the width known at compile time (see `fold_rows`).
    let ordered = !has_nan(&x[lo + 1 - w..hi]);
    match (w, ordered) {
        (3, true) => fold_rows::<E, true, 3>(x, w, (lo, hi), suf, out),
        (4, true) => fold_rows::<E, true, 4>(x, w, (lo, hi), suf, out),
        (5, true) => fold_rows::<E, true, 5>(x, w, (lo, hi), suf, out),
        (_, true) => fold_rows::<E, true, 0>(x, w, (lo, hi), suf, out),
        (_, false) => fold_rows::<E, false, 0>(x, w, (lo, hi), suf, out),
    }
}

/// Whether any value is NaN; no early exit, so the loop vectorises.
fn has_nan(x: &[f64]) -> bool {
    x.iter().fold(false, |any, v| any | v.is_nan())
}

/// [`van_herk_rows`] with `pick` (`ORDERED == false`) or `pick_ordered` (no NaN among the rows
/// read), for a width `W` fixed at compile time or `w` when `W == 0`. Whole blocks go through
/// [`fold_whole_block`], the partial first and last blocks of the range through
/// [`fold_part_block`].
fn fold_rows<E: Extremum, const ORDERED: bool, const W: usize>(
    x: &[f64],
    w: usize,
    (lo, hi): (usize, usize),
    suf: &mut [f64],
    out: &mut [f64],
) {
    let w = if W == 0 { w } else { W };
    let mut k = 0;
    for b in lo / w..=(hi - 1) / w {
        let bs = b * w;
        let (o_lo, o_hi) = (lo.max(bs) - bs, hi.min(bs + w) - bs);
        if o_lo == 0 && o_hi == w {
            let win = &x[bs + 1 - w..bs + w];
            fold_whole_block::<E, ORDERED, W>(win, w, suf, &mut out[k..k + w]);
        } else {
            fold_part_block::<E, ORDERED>(x, w, bs, (o_lo, o_hi), suf, &mut out[k..]);
        }
        k += o_hi - o_lo;
    }
}

/// A fold's value as written: [`canon`] (the canonical NaN for an input NaN of any payload),
/// which the `ORDERED` copies, whose rows hold no NaN, need not call.
#[inline(always)]
fn written<const ORDERED: bool>(v: f64) -> f64 {
    if ORDERED {
        v
    } else {
        canon(v)
    }
}

#[inline(always)]
fn pick_as<E: Extremum, const ORDERED: bool>(a: f64, b: f64) -> f64 {
    if ORDERED {
        E::pick_ordered(a, b)
    } else {
        E::pick(a, b)
    }
}

/// The rows of a whole block from `win`, the last `w - 1` rows of the previous block then the
/// block: suffix of the previous block (from the neutral element), then the prefix of this one
/// combined row by row; the block-ending row is the prefix alone. With `W > 0` the loops have
/// constant trip counts and unroll into straight-line code.
#[inline(always)]
fn fold_whole_block<E: Extremum, const ORDERED: bool, const W: usize>(
    win: &[f64],
    w: usize,
    suf: &mut [f64],
    out: &mut [f64],
) {
    let pick = pick_as::<E, ORDERED>;
    let w = if W == 0 { w } else { W };
    let (prev, block) = win.split_at(w - 1);
    let (block, out) = (&block[..w], &mut out[..w]);
    let mut local = [0.0f64; 8];
    let suf = if W > 0 && W <= local.len() {
        &mut local[..w - 1]
    } else {
        &mut suf[..w - 1]
    };
    let mut acc = E::NEUTRAL;
    for j in (0..w - 1).rev() {
        acc = pick(prev[j], acc);
        suf[j] = acc;
    }
    let mut acc = E::NEUTRAL;
    for o in 0..w - 1 {
        acc = pick(acc, block[o]);
        out[o] = written::<ORDERED>(pick(suf[o], acc));
    }
    out[w - 1] = written::<ORDERED>(pick(acc, block[w - 1]));
}

/// The rows at offsets `[o_lo, o_hi)` of the block starting at row `bs`, into
/// `out[..o_hi - o_lo]`. `suf` has `w + 1` elements; `suf[w]` is set to the neutral element, so
/// the block-ending row combines with it instead of branching (the result has the prefix's bits).
fn fold_part_block<E: Extremum, const ORDERED: bool>(
    x: &[f64],
    w: usize,
    bs: usize,
    (o_lo, o_hi): (usize, usize),
    suf: &mut [f64],
    out: &mut [f64],
) {
    let pick = pick_as::<E, ORDERED>;
    let suf = &mut suf[..=w];
    suf[w] = E::NEUTRAL;
    let mut acc = E::NEUTRAL;
    for o in (o_lo + 1..w).rev() {
        acc = pick(x[bs + o - w], acc);
        suf[o] = acc;
    }
    let block = &x[bs..bs + o_hi];
    let mut acc = E::NEUTRAL;
    for &v in &block[..o_lo] {
        acc = pick(acc, v);
    }
    let dst = &mut out[..o_hi - o_lo];
    for ((d, &v), &s) in dst.iter_mut().zip(&block[o_lo..]).zip(&suf[o_lo + 1..]) {
        acc = pick(acc, v);
        *d = written::<ORDERED>(pick(s, acc));
    }
}

/// Scratch [`van_herk_max_min`] needs for width `w`.
pub const fn max_min_scratch(w: usize) -> usize {
    2 * (w + 1)
}

/// [`van_herk_rows`] of `Max` over `high` into `hh` and of `Min` over `low` into `ll`, the same
/// bits; `suf` has [`max_min_scratch`]`(w)` elements. When neither range holds a NaN (the usual
/// case), whole blocks fold both series in the same loops: two independent chains per loop, and
/// one pass over the block's rows instead of two.
pub fn van_herk_max_min(
    highlow: [&[f64]; 2],
    w: usize,
    rows: (usize, usize),
    suf: &mut [f64],
    hhll: [&mut [f64]; 2],
) {
    max_min_or_mid::<false>(highlow, w, rows, suf, hhll, &mut []);
}

/// MIDPRICE's rows `[lo, hi)`, `(hh + ll) / 2.0` ([`mid`]), into `out`: the bits of
/// [`van_herk_max_min`] followed by [`mid`], but whole blocks without a NaN write the midpoint
/// as they fold, so the extremes never go through memory; `hh` and `ll` are scratch as long as
/// `out`.
pub fn van_herk_mid(
    highlow: [&[f64]; 2],
    w: usize,
    rows: (usize, usize),
    suf: &mut [f64],
    hhll: [&mut [f64]; 2],
    out: &mut [f64],
) {
    max_min_or_mid::<true>(highlow, w, rows, suf, hhll, out);
}

/// [`van_herk_max_min`] (`MID == false`; `mid` unused) or [`van_herk_mid`].
fn max_min_or_mid<const MID: bool>(
    [high, low]: [&[f64]; 2],
    w: usize,
    (lo, hi): (usize, usize),
    suf: &mut [f64],
    [hh, ll]: [&mut [f64]; 2],
    out_mid: &mut [f64],
) {
    // Rows `k0..k1` (of the range) computed into `hh` and `ll`: their midpoints, when asked for.
    let mids_of = |hh: &[f64], ll: &[f64], out_mid: &mut [f64], (k0, k1): (usize, usize)| {
        if MID {
            for ((d, &h), &l) in out_mid[k0..k1].iter_mut().zip(&hh[k0..k1]).zip(&ll[k0..k1]) {
                *d = mid(h, l);
            }
        }
    };
    debug_assert!(lo + 1 >= w && hi <= high.len() && hi <= low.len());
    if lo >= hi {
        return;
    }
    let (suf_h, suf_l) = suf[..2 * (w + 1)].split_at_mut(w + 1);
    if w < 6 || has_nan(&high[lo + 1 - w..hi]) || has_nan(&low[lo + 1 - w..hi]) {
        // Short windows have their own unrolled copies (see `fold_rows`).
        van_herk_rows::<Max>(high, w, (lo, hi), suf_h, hh);
        van_herk_rows::<Min>(low, w, (lo, hi), suf_l, ll);
        return mids_of(hh, ll, out_mid, (0, hi - lo));
    }
    let mut k = 0;
    for b in lo / w..=(hi - 1) / w {
        let bs = b * w;
        let (o_lo, o_hi) = (lo.max(bs) - bs, hi.min(bs + w) - bs);
        let (oh, ol) = (&mut hh[k..], &mut ll[k..]);
        if o_lo == 0 && o_hi == w {
            let win = bs + 1 - w..bs + w;
            let om: &mut [f64] = if MID { &mut out_mid[k..k + w] } else { &mut [] };
            fold_whole_block_pair::<MID>(
                [&high[win.clone()], &low[win]],
                w,
                [&mut *suf_h, &mut *suf_l],
                [&mut oh[..w], &mut ol[..w]],
                om,
            );
        } else {
            fold_part_block::<Max, true>(high, w, bs, (o_lo, o_hi), suf_h, oh);
            fold_part_block::<Min, true>(low, w, bs, (o_lo, o_hi), suf_l, ol);
            mids_of(hh, ll, out_mid, (k, k + o_hi - o_lo));
        }
        k += o_hi - o_lo;
    }
}

/// [`fold_whole_block`] of `Max` over the first window and of `Min` over the second (no NaN in
/// either), interleaved: the same picks in the same order for each. With `MID` the rows go to
/// `out_m` as [`mid`] of the two (`out_h` and `out_l` untouched), else to `out_h` and `out_l`.
#[inline(always)]
fn fold_whole_block_pair<const MID: bool>(
    [hwin, lwin]: [&[f64]; 2],
    w: usize,
    [suf_h, suf_l]: [&mut [f64]; 2],
    [out_h, out_l]: [&mut [f64]; 2],
    out_m: &mut [f64],
) {
    let (h_prev, h_block) = hwin[..2 * w - 1].split_at(w - 1);
    let (l_prev, l_block) = lwin[..2 * w - 1].split_at(w - 1);
    let (suf_h, suf_l) = (&mut suf_h[..w - 1], &mut suf_l[..w - 1]);
    let (out_h, out_l) = (&mut out_h[..w], &mut out_l[..w]);
    let (mut ah, mut al) = (Max::NEUTRAL, Min::NEUTRAL);
    for j in (0..w - 1).rev() {
        ah = Max::pick_ordered(h_prev[j], ah);
        al = Min::pick_ordered(l_prev[j], al);
        suf_h[j] = ah;
        suf_l[j] = al;
    }
    let (mut ah, mut al) = (Max::NEUTRAL, Min::NEUTRAL);
    if MID {
        let out_m = &mut out_m[..w];
        for o in 0..w - 1 {
            ah = Max::pick_ordered(ah, h_block[o]);
            al = Min::pick_ordered(al, l_block[o]);
            out_m[o] = mid(
                Max::pick_ordered(suf_h[o], ah),
                Min::pick_ordered(suf_l[o], al),
            );
        }
        let (h, l) = (h_block[w - 1], l_block[w - 1]);
        out_m[w - 1] = mid(Max::pick_ordered(ah, h), Min::pick_ordered(al, l));
        return;
    }
    for o in 0..w - 1 {
        ah = Max::pick_ordered(ah, h_block[o]);
        al = Min::pick_ordered(al, l_block[o]);
        out_h[o] = Max::pick_ordered(suf_h[o], ah);
        out_l[o] = Min::pick_ordered(suf_l[o], al);
    }
    out_h[w - 1] = Max::pick_ordered(ah, h_block[w - 1]);
    out_l[w - 1] = Min::pick_ordered(al, l_block[w - 1]);
}

fn run_extrema<S: Splitter, E: Extremum>(split: &S, x: &[f64], w: usize, out: &mut [f64]) {
    let n = x.len();
    if w == 0 || n < w {
        return;
    }
    split.for_each_piece(w - 1, [&mut out[w - 1..n]], |lo, [piece]| {
        with_scratch(w + 1, |suf| {
            van_herk_rows::<E>(x, w, (lo, lo + piece.len()), suf, piece)
        })
    });
}

/// Rolling maximum (NaN-propagating); rows `< w - 1` untouched.
pub fn rolling_max<S: Splitter>(split: &S, x: &[f64], w: usize, out: &mut [f64]) {
    run_extrema::<S, Max>(split, x, w, out)
}

/// Rolling minimum (NaN-propagating); rows `< w - 1` untouched.
pub fn rolling_min<S: Splitter>(split: &S, x: &[f64], w: usize, out: &mut [f64]) {
    run_extrema::<S, Min>(split, x, w, out)
}

/// A value and its row (as `f64`: exact below 2^53, and the outputs are `f64` columns).
type Pair = (f64, f64);

/// `pick` on (value, row) pairs: the whole pair whose value `pick` returns.
#[inline(always)]
fn pick_pair<E: Extremum>((va, ia): Pair, (vb, ib): Pair) -> Pair {
    let first = E::first_wins(va, vb);
    (select(first, va, vb), select(first, ia, ib))
}

/// The spec's block fold on pairs for rows `[lo, hi)` (`lo >= w - 1`), literally: prefixes from
/// the block's first row, suffixes from the previous block's last row (a neutral start would carry
/// no row), the block-ending row from the prefix alone. `suf` is scratch of `2 * w` elements.
fn index_rows<E: Extremum>(
    x: &[f64],
    w: usize,
    (lo, hi): (usize, usize),
    suf: &mut [f64],
    vals: &mut [f64],
    rows: &mut [f64],
) {
    let (sv, si) = suf[..2 * w].split_at_mut(w);
    let at = |t: usize| (x[t], t as f64);
    let mut k = 0;
    for b in lo / w..=(hi - 1) / w {
        let bs = b * w;
        let (o_lo, o_hi) = (lo.max(bs) - bs, hi.min(bs + w) - bs);
        if o_lo + 1 < w {
            let mut acc = at(bs - 1);
            (sv[w - 1], si[w - 1]) = acc;
            for o in (o_lo + 1..w - 1).rev() {
                acc = pick_pair::<E>(at(bs - w + o), acc);
                (sv[o], si[o]) = acc;
            }
        }
        let mut acc = at(bs);
        for o in 0..o_hi {
            if o > 0 {
                acc = pick_pair::<E>(acc, at(bs + o));
            }
            if o >= o_lo {
                let r = if o + 1 < w {
                    pick_pair::<E>((sv[o + 1], si[o + 1]), acc)
                } else {
                    acc
                };
                (vals[k], rows[k]) = (canon(r.0), r.1);
                k += 1;
            }
        }
    }
}

fn run_extrema_index<S: Splitter, E: Extremum>(
    split: &S,
    x: &[f64],
    w: usize,
    value: &mut [f64],
    row: &mut [f64],
) {
    let n = x.len();
    if w == 0 || n < w {
        return;
    }
    let outs = [&mut value[w - 1..n], &mut row[w - 1..n]];
    split.for_each_piece(w - 1, outs, |lo, [v, r]| {
        with_scratch(2 * w, |suf| {
            index_rows::<E>(x, w, (lo, lo + v.len()), suf, v, r)
        })
    });
}

/// Rolling maximum (bit-identical to [`rolling_max`]) and the row of the element it is (the
/// leftmost NaN, else the most recent of the tied maxima); rows `< w - 1` untouched.
pub fn rolling_max_index<S: Splitter>(
    split: &S,
    x: &[f64],
    w: usize,
    value: &mut [f64],
    row: &mut [f64],
) {
    run_extrema_index::<S, Max>(split, x, w, value, row)
}

/// Rolling minimum (bit-identical to [`rolling_min`]) and the row of the element it is (the
/// leftmost NaN, else the most recent of the tied minima); rows `< w - 1` untouched.
pub fn rolling_min_index<S: Splitter>(
    split: &S,
    x: &[f64],
    w: usize,
    value: &mut [f64],
    row: &mut [f64],
) {
    run_extrema_index::<S, Min>(split, x, w, value, row)
}

/// Runs `tile(outs_tile, (t0, t1), [hh, ll], suf)` over the rows `t >= w - 1` of `n`, one tile of
/// rows `[t0, t1)` at a time (`outs_tile` their part of `outs`), with per-worker scratch for the
/// tile's extremes (`hh`, `ll`, `t1 - t0` rows each) and the fold (`suf`, [`max_min_scratch`]).
fn for_each_max_min_tile<S: Splitter, const K: usize>(
    split: &S,
    n: usize,
    w: usize,
    outs: [&mut [f64]; K],
    tile: impl Fn([&mut [f64]; K], (usize, usize), [&mut [f64]; 2], &mut [f64]) + Sync + Send,
) {
    if w == 0 || n < w {
        return;
    }
    let tail = outs.map(|o| &mut o[w - 1..n]);
    split.for_each_piece(w - 1, tail, |lo, mut piece| {
        let hi = lo + piece[0].len();
        let span = tile_rows(w).min(hi - lo);
        with_scratch(2 * span + max_min_scratch(w), |scratch| {
            let [hh, ll, suf] = carve(scratch, [span, span, max_min_scratch(w)]);
            for t0 in (lo..hi).step_by(span) {
                let t1 = (t0 + span).min(hi);
                let extremes = [&mut hh[..t1 - t0], &mut ll[..t1 - t0]];
                let outs = piece.each_mut().map(|p| &mut p[t0 - lo..t1 - lo]);
                tile(outs, (t0, t1), extremes, suf);
            }
        })
    });
}

/// The rolling maximum of `high` and minimum of `low` (both `w` rows, [`van_herk_rows`]) of
/// every row `t >= w - 1`, handed to `write(outs_tile, hh, ll)` one tile of rows at a time
/// (MIN/MAX/MINMAX pass one series as both).
fn run_max_min<S: Splitter, const K: usize>(
    split: &S,
    high: &[f64],
    low: &[f64],
    w: usize,
    outs: [&mut [f64]; K],
    write: impl Fn([&mut [f64]; K], &[f64], &[f64]) + Sync + Send,
) {
    for_each_max_min_tile(split, high.len(), w, outs, |tile, rows, [hh, ll], suf| {
        van_herk_max_min([high, low], w, rows, suf, [&mut *hh, &mut *ll]);
        write(tile, hh, ll);
    });
}

/// TA-Lib's midpoint of a highest and a lowest value: `(hh + ll) / 2.0` (as written, [`canon`]).
#[inline(always)]
fn mid(hh: f64, ll: f64) -> f64 {
    canon((hh + ll) / 2.0)
}

/// MINMAX: the rolling minimum and maximum (bit-identical to [`rolling_min`] and
/// [`rolling_max`]); rows `< w - 1` untouched.
pub fn min_max<S: Splitter>(split: &S, x: &[f64], w: usize, min: &mut [f64], max: &mut [f64]) {
    run_max_min(split, x, x, w, [min, max], |[mn, mx], hh, ll| {
        mn.copy_from_slice(ll);
        mx.copy_from_slice(hh);
    });
}

/// MIDPOINT (TA-Lib): `(max + min) / 2.0` of the window of `x`; rows `< w - 1` untouched.
pub fn midpoint<S: Splitter>(split: &S, x: &[f64], w: usize, out: &mut [f64]) {
    midprice(split, x, x, w, out)
}

/// MIDPRICE (TA-Lib): `(highest high + lowest low) / 2.0`; rows `< w - 1` untouched.
pub fn midprice<S: Splitter>(split: &S, high: &[f64], low: &[f64], w: usize, out: &mut [f64]) {
    for_each_max_min_tile(split, high.len(), w, [out], |[o], rows, extremes, suf| {
        van_herk_mid([high, low], w, rows, suf, extremes, o)
    });
}

/// DONCHIAN (TA-Lib): upper = highest high, lower = lowest low, middle = `(upper + lower) / 2.0`
/// (bit-identical to [`midprice`]); rows `< w - 1` untouched.
pub fn donchian<S: Splitter>(
    split: &S,
    high: &[f64],
    low: &[f64],
    w: usize,
    [upper, middle, lower]: [&mut [f64]; 3],
) {
    run_max_min(
        split,
        high,
        low,
        w,
        [upper, middle, lower],
        |[u, m, l], hh, ll| {
            u.copy_from_slice(hh);
            l.copy_from_slice(ll);
            for ((d, &h), &l) in m.iter_mut().zip(hh).zip(ll) {
                *d = mid(h, l);
            }
        },
    );
}

/// TA-Lib's fast %K of one row from its highest high and lowest low: a branch-free select, so the
/// loop over a tile vectorises (the division of a zero range is computed and thrown away).
#[inline(always)]
fn fast_k(close: f64, hh: f64, ll: f64) -> f64 {
    // A range that overflows (finite extremes of opposite signs) is taken on halved values
    // (exact): `(close - ll) / inf` would be a wrong 0. Otherwise the scale is 1, no bit changes.
    let h = select((hh - ll).is_infinite(), 0.5, 1.0);
    let (close, hh, ll) = (close * h, hh * h, ll * h);
    let diff = (hh - ll) / 100.0;
    select(diff != 0.0, (close - ll) / diff, 0.0)
}

/// Rows of output a stoch tile computes together. The four tile buffers (highest high, lowest low,
/// fast %K, slow %K) then stay in L1/L2 between the passes, and the recomputed halo (`slowk - 1 +
/// slowd - 1` rows, plus up to two blocks of each grid) is small next to the tile.
const TILE_ROWS: usize = 1024;

/// Rows per tile for these windows: at least 8 of the widest block, so that the partial blocks a
/// tile recomputes at its start stay a small fraction of its work.
fn tile_rows(widest: usize) -> usize {
    TILE_ROWS.max(8 * widest)
}

/// Fast %K of rows `[lo, hi)` (`lo >= fk - 1`) into `out`, through `hh`, `ll` (at least `hi - lo`
/// elements each) and `suf` ([`max_min_scratch`]`(fk)`). NaNs as computed: STOCH's SMAs read these rows and write
/// canonical NaNs; [`fastk`] canonicalises its own output.
#[allow(clippy::too_many_arguments)]
fn fastk_rows(
    [high, low, close]: [&[f64]; 3],
    fk: usize,
    (lo, hi): (usize, usize),
    hh: &mut [f64],
    ll: &mut [f64],
    suf: &mut [f64],
    out: &mut [f64],
) {
    let rows = hi - lo;
    let (hh, ll) = (&mut hh[..rows], &mut ll[..rows]);
    van_herk_max_min([high, low], fk, (lo, hi), suf, [&mut *hh, &mut *ll]);
    for (((d, &c), &h), &l) in out[..rows]
        .iter_mut()
        .zip(&close[lo..hi])
        .zip(&*hh)
        .zip(&*ll)
    {
        *d = fast_k(c, h, l);
    }
}

/// Fast %K (TA-Lib's formula); rows `< fastk - 1` untouched.
pub fn fastk<S: Splitter>(
    split: &S,
    high: &[f64],
    low: &[f64],
    close: &[f64],
    fk: usize,
    out: &mut [f64],
) {
    for_each_max_min_tile(
        split,
        high.len(),
        fk,
        [out],
        |[dst], rows, [hh, ll], suf| {
            fastk_rows([high, low, close], fk, rows, hh, ll, suf, dst);
            canon_rows(dst);
        },
    );
}

/// The three grids of STOCH: the extrema blocks start at row 0, slow %K's at `k_origin`, slow
/// %D's at `d_origin` (the first slow %K row); slow %D starts at `first_d`.
#[derive(Clone, Copy)]
struct StochGrid {
    fk: usize,
    sk: usize,
    sd: usize,
}

impl StochGrid {
    fn k_origin(self) -> usize {
        self.fk - 1
    }
    fn d_origin(self) -> usize {
        self.k_origin() + self.sk - 1
    }
    fn first_d(self) -> usize {
        self.d_origin() + self.sd - 1
    }
}

/// Scratch buffers of one stoch piece: the tile buffers and the blocks' suffixes.
struct StochBufs<'a> {
    hh: &'a mut [f64],
    ll: &'a mut [f64],
    fast: &'a mut [f64],
    slow: &'a mut [f64],
    suf_x: &'a mut [f64],
    suf_m: &'a mut [f64],
}

/// Slow %K rows `[t0, t1)` into `k_out` and slow %D rows `[max(t0, first_d), t1)` into the matching
/// tail of `d_out` (both indexed from `t0`). Each level is computed on exactly the rows the next
/// level's windows need, from the global grids, so the tile's bits are those of the whole series.
fn stoch_tile(
    hlc: [&[f64]; 3],
    g: StochGrid,
    (t0, t1): (usize, usize),
    bufs: &mut StochBufs,
    k_out: &mut [f64],
    d_out: &mut [f64],
) {
    let (ko, kd) = (g.k_origin(), g.d_origin());
    let ks = (t0 + 1).saturating_sub(g.sd).max(kd); // first slow %K row slow %D needs
    let fs = ks + 1 - g.sk; // first fast %K row slow %K needs
    let (nf, nk) = (t1 - fs, t1 - ks);
    let b = bufs;
    fastk_rows(hlc, g.fk, (fs, t1), b.hh, b.ll, b.suf_x, b.fast);
    let slow = &mut b.slow[..nk];
    sma_rows(
        &b.fast[..nf],
        fs - ko,
        g.sk,
        (ks - ko, t1 - ko),
        b.suf_m,
        slow,
    );
    k_out.copy_from_slice(&slow[t0 - ks..]);
    let d0 = t0.max(g.first_d());
    if d0 < t1 {
        let dst = &mut d_out[d0 - t0..];
        sma_rows(slow, ks - kd, g.sd, (d0 - kd, t1 - kd), b.suf_m, dst);
    }
}

/// STOCH(fastk, slowk, slowd) with SMA smoothing; rows before the lookback are untouched, except
/// slow %K from its own first row `fastk + slowk - 2` on.
///
/// One pass over tiles of rows: extrema, fast %K, slow %K and slow %D of a tile are computed while
/// its data is in cache, with no full-length intermediate array.
#[allow(clippy::too_many_arguments)]
pub fn stoch<S: Splitter>(
    split: &S,
    high: &[f64],
    low: &[f64],
    close: &[f64],
    (fk, sk, sd): (usize, usize, usize),
    slowk: &mut [f64],
    slowd: &mut [f64],
) {
    let n = high.len();
    let g = StochGrid { fk, sk, sd };
    if fk == 0 || sk == 0 || sd == 0 || n <= g.d_origin() {
        return;
    }
    let kd = g.d_origin();
    let outs = [&mut slowk[kd..n], &mut slowd[kd..n]];
    split.for_each_piece(kd, outs, |lo, [k_piece, d_piece]| {
        let hi = lo + k_piece.len();
        let span = tile_rows(fk.max(sk).max(sd)).min(hi - lo);
        let cap = span + sk + sd;
        let m = sk.max(sd);
        with_scratch(4 * cap + max_min_scratch(fk) + m, |scratch| {
            let [hh, ll, fast, slow, suf_x, suf_m] =
                carve(scratch, [cap, cap, cap, cap, max_min_scratch(fk), m]);
            let mut bufs = StochBufs {
                hh,
                ll,
                fast,
                slow,
                suf_x,
                suf_m,
            };
            for t0 in (lo..hi).step_by(span) {
                let t1 = (t0 + span).min(hi);
                let (k_out, d_out) = (
                    &mut k_piece[t0 - lo..t1 - lo],
                    &mut d_piece[t0 - lo..t1 - lo],
                );
                stoch_tile([high, low, close], g, (t0, t1), &mut bufs, k_out, d_out);
            }
        })
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::reference as naive;
    use crate::kernels::split::{CutAt, Sequential};
    use crate::kernels::testing::{assert_bits_eq, assert_close, random_cuts, series_zoo, Lcg};

    /// The paired fold gives each series' own fold bits, for every width, range and NaN case.
    #[test]
    fn paired_max_min_and_fused_midpoints_give_the_single_folds_bits() {
        let mut rng = Lcg(77);
        for w in [1usize, 2, 5, 6, 7, 14, 33] {
            for nan_at in [None, Some(40usize)] {
                let n = 300;
                let high: Vec<f64> = (0..n).map(|_| (rng.normal() * 4.0).round()).collect();
                let mut low: Vec<f64> = high
                    .iter()
                    .map(|h| h - (rng.uniform() * 3.0).round())
                    .collect();
                if let Some(t) = nan_at {
                    low[t] = f64::NAN;
                }
                for _ in 0..20 {
                    let lo = w - 1 + rng.below(n - w);
                    let hi = lo + 1 + rng.below(n - lo);
                    let mut suf = vec![0.0; max_min_scratch(w)];
                    let (mut hh, mut ll) = (vec![0.0; hi - lo], vec![0.0; hi - lo]);
                    van_herk_max_min([&high, &low], w, (lo, hi), &mut suf, [&mut hh, &mut ll]);
                    let (mut h1, mut l1) = (vec![0.0; hi - lo], vec![0.0; hi - lo]);
                    van_herk_rows::<Max>(&high, w, (lo, hi), &mut suf, &mut h1);
                    van_herk_rows::<Min>(&low, w, (lo, hi), &mut suf, &mut l1);
                    assert_bits_eq(&hh, &h1, "paired max");
                    assert_bits_eq(&ll, &l1, "paired min");
                    let mut mids = vec![0.0; hi - lo];
                    let (mut h2, mut l2) = (vec![0.0; hi - lo], vec![0.0; hi - lo]);
                    van_herk_mid(
                        [&high, &low],
                        w,
                        (lo, hi),
                        &mut suf,
                        [&mut h2, &mut l2],
                        &mut mids,
                    );
                    let want: Vec<f64> = h1.iter().zip(&l1).map(|(&h, &l)| mid(h, l)).collect();
                    assert_bits_eq(&mids, &want, "fused midpoints");
                }
            }
        }
    }

    #[test]
    fn max_min_combinations_are_the_extrema_bits_and_split_invariant() {
        let mut rng = Lcg(19);
        let mut inputs = series_zoo(2000, 7);
        inputs.push(awkward(2000, 3));
        for x in &inputs {
            let y: Vec<f64> = x.iter().rev().copied().collect();
            for w in [1, 2, 3, 5, 14, 40, 500] {
                let n = x.len();
                let (mut hh, mut ll) = (vec![0.0; n], vec![0.0; n]);
                rolling_max(&Sequential, x, w, &mut hh);
                rolling_min(&Sequential, &y, w, &mut ll);
                let mid: Vec<f64> = hh.iter().zip(&ll).map(|(h, l)| (h + l) / 2.0).collect();
                let all = |split: &CutAt| {
                    let (mut mp, mut u, mut m, mut l) =
                        (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
                    let (mut mn, mut mx) = (vec![0.0; n], vec![0.0; n]);
                    midprice(split, x, &y, w, &mut mp);
                    donchian(split, x, &y, w, [&mut u, &mut m, &mut l]);
                    min_max(split, x, w, &mut mn, &mut mx);
                    [mp, u, m, l, mn, mx]
                };
                let whole = all(&CutAt(vec![]));
                let t = w - 1;
                let canon0 = |v: &[f64]| -> Vec<f64> {
                    v.iter()
                        .map(|&a| if a.is_nan() { f64::NAN } else { a })
                        .collect()
                };
                assert_bits_eq(&canon0(&whole[0][t..]), &canon0(&mid[t..]), "midprice");
                assert_bits_eq(&whole[1][t..], &hh[t..], "donchian upper");
                assert_bits_eq(
                    &canon0(&whole[2][t..]),
                    &canon0(&mid[t..]),
                    "donchian middle",
                );
                assert_bits_eq(&whole[3][t..], &ll[t..], "donchian lower");
                let mut lx = vec![0.0; n];
                rolling_min(&Sequential, x, w, &mut lx);
                assert_bits_eq(&whole[4][t..], &lx[t..], "minmax min");
                assert_bits_eq(&whole[5][t..], &hh[t..], "minmax max");
                let mut mp = vec![0.0; n];
                midpoint(&Sequential, x, w, &mut mp);
                let own: Vec<f64> = hh.iter().zip(&lx).map(|(h, l)| (h + l) / 2.0).collect();
                assert_bits_eq(&canon0(&mp[t..]), &canon0(&own[t..]), "midpoint");
                // A sum of two NaNs may keep either payload (the compiler may swap the operands
                // of a vectorised add), but every NaN is written as the canonical one: exact bits.
                for _ in 0..3 {
                    let got = all(&CutAt(random_cuts(&mut rng, n, 16)));
                    for (g, w0) in got.iter().zip(&whole) {
                        assert_bits_eq(&g[t..], &w0[t..], "cuts");
                    }
                }
            }
        }
    }

    #[test]
    fn max_min_match_naive_including_nan() {
        for mut x in series_zoo(1500, 21) {
            x[333] = f64::NAN;
            for w in [1, 2, 3, 14, 50] {
                let mut mx = vec![0.0; x.len()];
                let mut mn = vec![0.0; x.len()];
                rolling_max(&Sequential, &x, w, &mut mx);
                rolling_min(&Sequential, &x, w, &mut mn);
                assert_bits_eq(&mx[w - 1..], &naive::rolling_max(&x, w)[w - 1..], "max");
                assert_bits_eq(&mn[w - 1..], &naive::rolling_min(&x, w)[w - 1..], "min");
            }
        }
    }

    /// The spec's block fold, literally (the implementation before the tiled kernels): prefix and
    /// suffix arrays per block, the block-ending row taken from the prefix alone.
    fn spec_rows(x: &[f64], w: usize, pick: fn(f64, f64) -> f64) -> Vec<f64> {
        let (lo, hi) = (w - 1, x.len());
        let mut out = vec![0.0; hi - lo];
        let (mut pre, mut suf) = (vec![0.0; w], vec![0.0; w]);
        for b in lo / w..=(hi - 1) / w {
            let b_start = b * w;
            let o_lo = lo.max(b_start) - b_start;
            let o_hi = hi.min(b_start + w) - b_start;
            let mut acc = x[b_start];
            pre[0] = acc;
            for o in 1..o_hi {
                acc = pick(acc, x[b_start + o]);
                pre[o] = acc;
            }
            if o_lo < w - 1 {
                let a_start = b_start - w;
                let mut acc = x[a_start + w - 1];
                suf[w - 1] = acc;
                for o in (o_lo + 1..w - 1).rev() {
                    acc = pick(x[a_start + o], acc);
                    suf[o] = acc;
                }
            }
            for o in o_lo..o_hi {
                out[b_start + o - lo] = canon(if o == w - 1 {
                    pre[o]
                } else {
                    pick(suf[o + 1], pre[o])
                });
            }
        }
        out
    }

    /// Signed zeros, infinities and NaNs with distinct payloads: the bits the spec's fold order
    /// decides (which zero) must be the same from the tiled kernel, and every NaN is written as
    /// the canonical one.
    fn awkward(n: usize, seed: u64) -> Vec<f64> {
        let nan_a = f64::from_bits(0x7ff8_0000_0000_0001);
        let nan_b = f64::from_bits(0xfff8_0000_0000_0002);
        let pool = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            nan_a,
            nan_b,
            0.5,
        ];
        let mut rng = Lcg(seed);
        (0..n)
            .map(|_| {
                let r = rng.below(40);
                if r < pool.len() {
                    pool[r]
                } else {
                    [0.0, -0.0, 1.0][r % 3]
                }
            })
            .collect()
    }

    #[test]
    fn tiled_fold_is_the_spec_fold_bit_for_bit() {
        for seed in 0..6 {
            let x = awkward(700, seed);
            for w in [1, 2, 3, 4, 5, 8, 13, 64] {
                let (mut mx, mut mn) = (vec![0.0; x.len()], vec![0.0; x.len()]);
                rolling_max(&Sequential, &x, w, &mut mx);
                rolling_min(&Sequential, &x, w, &mut mn);
                assert_bits_eq(&mx[w - 1..], &spec_rows(&x, w, nan_max), "max");
                assert_bits_eq(&mn[w - 1..], &spec_rows(&x, w, nan_min), "min");
            }
        }
    }

    #[test]
    fn max_min_are_split_invariant() {
        let mut rng = Lcg(41);
        let x = awkward(3000, 77);
        for w in [1, 3, 5, 14, 200] {
            let mut whole = vec![0.0; x.len()];
            rolling_max(&Sequential, &x, w, &mut whole);
            for _ in 0..8 {
                let mut got = vec![0.0; x.len()];
                rolling_max(&CutAt(random_cuts(&mut rng, 3000, 16)), &x, w, &mut got);
                assert_bits_eq(&got, &whole, "max");
            }
        }
    }

    /// The row the spec's fold picks, straight from its characterisation (module notes): the
    /// leftmost NaN, else the most recent row comparing equal to the extremum.
    fn naive_pick_row(x: &[f64], w: usize, t: usize, better: fn(f64, f64) -> bool) -> usize {
        let win = t + 1 - w..=t;
        if let Some(i) = win.clone().find(|&i| x[i].is_nan()) {
            return i;
        }
        let best = win
            .clone()
            .fold(x[t + 1 - w], |m, i| if better(x[i], m) { x[i] } else { m });
        win.rev().find(|&i| x[i] == best).unwrap()
    }

    fn run_index<S: Splitter>(s: &S, x: &[f64], w: usize, max: bool) -> [Vec<f64>; 2] {
        let (mut v, mut r) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        if max {
            rolling_max_index(s, x, w, &mut v, &mut r);
        } else {
            rolling_min_index(s, x, w, &mut v, &mut r);
        }
        [v, r]
    }

    #[test]
    fn extrema_index_matches_naive_and_values_match_extrema() {
        let mut inputs = series_zoo(800, 31);
        inputs.extend((0..4).map(|seed| awkward(800, seed)));
        for x in &inputs {
            for w in [1, 2, 3, 5, 14, 64] {
                for max in [true, false] {
                    let [v, r] = run_index(&Sequential, x, w, max);
                    let mut plain = vec![0.0; x.len()];
                    let better: fn(f64, f64) -> bool = if max {
                        rolling_max(&Sequential, x, w, &mut plain);
                        |a, b| a > b
                    } else {
                        rolling_min(&Sequential, x, w, &mut plain);
                        |a, b| a < b
                    };
                    assert_bits_eq(&v[w - 1..], &plain[w - 1..], "value");
                    for (t, &got) in r.iter().enumerate().skip(w - 1) {
                        let want = naive_pick_row(x, w, t, better);
                        assert_eq!(got, want as f64, "row of extremum, t={t} w={w} max={max}");
                    }
                }
            }
        }
    }

    #[test]
    fn extrema_index_is_split_invariant() {
        let mut rng = Lcg(8);
        let x = awkward(3000, 12);
        for w in [1, 4, 5, 33] {
            let whole = run_index(&Sequential, &x, w, true);
            for _ in 0..8 {
                let got = run_index(&CutAt(random_cuts(&mut rng, 3000, 16)), &x, w, true);
                assert_bits_eq(&got[0], &whole[0], "value");
                assert_bits_eq(&got[1], &whole[1], "row");
            }
        }
    }

    /// TA-Lib's MAXINDEX loop (ta_MAXINDEX.c): agrees with ours when the maximum is unique.
    fn talib_maxindex(x: &[f64], w: usize) -> Vec<f64> {
        let mut out = vec![f64::NAN; x.len()];
        let (mut hi_idx, mut hi) = (None::<usize>, 0.0);
        for today in w - 1..x.len() {
            let trailing = today + 1 - w;
            if hi_idx.is_none_or(|i| i < trailing) {
                let mut i = trailing;
                hi = x[i];
                hi_idx = Some(i);
                while i < today {
                    i += 1;
                    if x[i] > hi {
                        hi = x[i];
                        hi_idx = Some(i);
                    }
                }
            } else if x[today] >= hi {
                hi = x[today];
                hi_idx = Some(today);
            }
            out[today] = hi_idx.unwrap() as f64;
        }
        out
    }

    #[test]
    fn extrema_index_agrees_with_talib_on_distinct_values() {
        let zoo = series_zoo(2000, 5);
        for x in [&zoo[0], &zoo[4]] {
            for w in [2, 5, 30] {
                let [_, r] = run_index(&Sequential, x, w, true);
                assert_bits_eq(&r[w - 1..], &talib_maxindex(x, w)[w - 1..], "maxindex");
            }
        }
    }

    fn ohlc(n: usize, seed: u64) -> [Vec<f64>; 3] {
        let mut rng = Lcg(seed);
        let c = &series_zoo(n, seed)[0];
        let h: Vec<f64> = c.iter().map(|v| v + rng.uniform()).collect();
        let l: Vec<f64> = c.iter().map(|v| v - rng.uniform()).collect();
        [h, l, c.clone()]
    }

    fn run_stoch<S: Splitter>(
        s: &S,
        [h, l, c]: &[Vec<f64>; 3],
        p: (usize, usize, usize),
    ) -> [Vec<f64>; 2] {
        let (mut k, mut d) = (vec![0.0; h.len()], vec![0.0; h.len()]);
        stoch(s, h, l, c, p, &mut k, &mut d);
        [k, d]
    }

    #[test]
    fn stoch_matches_talib_loop() {
        let data = ohlc(3000, 3);
        for p in [(5, 3, 3), (14, 3, 3), (1, 1, 1), (9, 5, 2)] {
            let [k, d] = run_stoch(&Sequential, &data, p);
            let [wk, wd] = naive::stoch(&data[0], &data[1], &data[2], p.0, p.1, p.2);
            let lb = p.0 + p.1 + p.2 - 3;
            assert_close(&k[lb..], &wk[lb..], 1e-11, "slowk");
            assert_close(&d[lb..], &wd[lb..], 1e-11, "slowd");
        }
    }

    /// The tiled pass is the spec's three levels run one after the other over whole series.
    #[test]
    fn stoch_is_the_composition_of_its_levels() {
        let mut data = ohlc(5000, 4);
        for (k, col) in data.iter_mut().enumerate() {
            let bad = awkward(5000, k as u64);
            for t in (100 + 37 * k..5000).step_by(613) {
                col[t] = bad[t];
            }
            col[2000..2200].fill(42.0);
        }
        let [h, l, c] = &data;
        for p @ (fk, sk, sd) in [(5, 3, 3), (14, 1, 1), (1, 4, 2), (21, 5, 8), (700, 9, 1300)] {
            let n = h.len();
            let (mut fast, mut k, mut d) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
            fastk(&Sequential, h, l, c, fk, &mut fast);
            crate::kernels::moments::sma(&Sequential, &fast[fk - 1..], sk, &mut k[fk - 1..]);
            let kd = fk + sk - 2;
            crate::kernels::moments::sma(&Sequential, &k[kd..], sd, &mut d[kd..]);
            let [gk, gd] = run_stoch(&Sequential, &data, p);
            assert_bits_eq(&gk[kd..], &k[kd..], "slowk");
            assert_bits_eq(&gd[kd + sd - 1..], &d[kd + sd - 1..], "slowd");
        }
    }

    #[test]
    fn stoch_is_split_invariant() {
        let data = ohlc(4000, 9);
        let mut rng = Lcg(5);
        for p in [(5, 3, 3), (21, 7, 4), (1, 1, 1), (300, 2, 150), (3, 200, 1)] {
            let whole = run_stoch(&Sequential, &data, p);
            for _ in 0..8 {
                let got = run_stoch(&CutAt(random_cuts(&mut rng, 4000, 16)), &data, p);
                assert_bits_eq(&got[0], &whole[0], "slowk");
                assert_bits_eq(&got[1], &whole[1], "slowd");
            }
        }
    }
}
