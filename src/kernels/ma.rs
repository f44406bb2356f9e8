//! Moving averages composed from the other families: DEMA, TEMA, T3 (chains of EMAs), TRIMA (an SMA
//! of an SMA), HMA (WMAs), ZLEMA (an EMA of a de-lagged series), KAMA (a time-varying scan), VWMA
//! (two SMAs), RMA (Wilder smoothing, `wilder::rma`), and [`moving_average`]: the one function every
//! indicator with a TA-Lib `matype` parameter calls (MA, MAVP, Bollinger bands; later STOCH, APO, …).
//!
//! # Spec (TA-Lib 0.8.1 values; every stage is a full-column call of its family on global rows)
//! Period `p >= 1`. With `p = 1` every type is the identity (a copy of the input, lookback 0: TA-Lib
//! copies too), and so is [`MaType::Disabled`] for any period.
//! * `ema_from(x, from, p)`: the EMA of `x` from row `from` on, on the scan grid of `scan.rs`
//!   (blocks aligned to row 0): seed row `from + p - 1`, seed `seed_mean(x[from .. from + p])`,
//!   `y_t = (1 - k)·y_{t-1} + k·x_t`, `k = 2 / (p + 1)`. `ema_from(x, 0, p)` is `ema::ema`.
//! * DEMA: `e1 = ema_from(x, 0)`, `e2 = ema_from(e1, p - 1)`; `2·e1 - e2`; lookback `2(p - 1)`.
//! * TEMA: `e3 = ema_from(e2, 2(p - 1))`; `(3·e1 - 3·e2) + e3`; lookback `3(p - 1)`.
//! * T3(p, v): `e_{i+1} = ema_from(e_i, i(p - 1))` for `i = 0..6` (`e_0 = x`); with `a2 = v·v`,
//!   `c1 = -(a2·v)`, `c2 = 3·(a2 - c1)`, `c3 = -6·a2 - 3·(v - c1)`, `c4 = ((1 + 3·v) - c1) + 3·a2`:
//!   `((c1·e6 + c2·e5) + c3·e4) + c4·e3`; lookback `6(p - 1)`.
//! * TRIMA: `SMA_a(SMA_b(x))` with `a = b = (p + 1) / 2` for odd `p`, `a = p / 2`, `b = p / 2 + 1`
//!   for even `p` (TA-Lib's triangular weights); the outer SMA's grid origin is row `b - 1`, the
//!   first row of its input (as STOCH's SMAs); lookback `p - 1`.
//! * HMA: `h = p / 2`, `s = floor(sqrt(p))`; `d_t = 2·WMA_h(x)_t - WMA_p(x)_t` for `t >= p - 1`;
//!   `WMA_s(d)` on the grid whose origin is row `p - 1`; lookback `(p - 1) + (s - 1)`.
//! * ZLEMA: `lag = (p - 1) / 2`, `d_t = 2·x_t - x_{t - lag}` for `t >= lag`; `ema_from(d, lag, p)`
//!   (its seed is the left-to-right mean of `d_lag ..= d_{lag + p - 1}`); lookback `lag + p - 1`.
//! * KAMA: with `g = 2^-j`, `2^j` the smallest power of two `>= 2p` (exact scaling, so neither
//!   the differences nor the path length of finite prices overflow): `S_t` = the path length,
//!   the sum of `u_i = |x_i·g - x_{i-1}·g|` over `i = t - p + 1 ..= t`; `r_t = x_t·g - x_{t-p}·g`.
//!   For `p <= 256` the sum is the *binary segment sum*: the window is cut into segments of
//!   `2^k` rows, one for each set bit `k` of `p`, the lowest bit's segment the most recent rows
//!   and each next one just before those already covered; a segment's sum is the balanced tree
//!   `T(i, 2m) = T(i - m, m) + T(i, m)` (`T(i, 1) = u_i`; `T(i, m)` sums the `m` values ending at
//!   `i`), and `S_t = ((seg_0 + seg_1) + seg_2) + …`, lowest bit first. Every tree level is shared
//!   by all rows, so it costs `O(log p)` additions per row with no serial chain. Longer windows:
//!   the windowed sum ([`window_sums`], grid origin row 1, `u`'s first row). `er = 1` when
//!   `S_t <= r_t` or `-1e-8·g < S_t < 1e-8·g` (TA-Lib's tests, on the unscaled values), else
//!   `|r_t / S_t|` (the scale cancels: these are the unscaled bits unless a value underflows
//!   below 2^-1000);
//!   `sc = (er·(2/3 - 2/31) + 2/31)`, squared; `y_t = (1 - sc)·y_{t-1} + sc·x_t` on the
//!   time-varying scan of `varscan.rs`, seed `y_{p-1} = x_{p-1}`; lookback `p`.
//! * VWMA: `SMA_p(x·v) / SMA_p(v)` (each an `sma` of `moments.rs`); lookback `p - 1`.
//! * MAVP(min, max, type): row `t >= L = lookback(type, max)` takes the period
//!   `q = clamp(trunc(periods_t), min, max)` (NaN: `min`; ±inf and values past the integer range
//!   saturate) and the value at `t` of the moving average of period `q` computed as TA-Lib does
//!   from its start row `L`: [`moving_average`] of `x[L - lookback(type, q) ..]`, so a recursive
//!   type is seeded from the `q` rows ending at `L - lookback(type, q) + q - 1`.
//! * Bollinger bands with a `matype` ([`bollinger_ma`]): `middle = moving_average(type, p)`,
//!   `s = rolling_std(p, ddof = 0)` (the population deviation around the window's SMA, as TA-Lib);
//!   `upper = middle + up·s`, `lower = middle - down·s`; lookback `max(lookback(type, p), p - 1)`.
//!
//! Windowed sums ([`window_sums`]): blocks of `w` rows aligned to the series' row 0; a row at the
//! end of its block is the left-to-right prefix sum of the block, any other row the right-to-left
//! suffix sum of the previous block from offset `o + 1` plus the prefix sum of its block through
//! `o` (no running sum ever has a value subtracted; a window of zeros sums to exactly 0).
//!
//! No FMA, no `pow`. Every stage's rows are a function of global row indices only, so any split
//! gives the same bits (tested with random cuts).
//!
//! Execution (never the bits): DEMA, TEMA and T3 run their EMAs as one fused pass
//! (`cascade.rs`) that writes only the combination; KAMA (period <= 256: its segment sums, level
//! by level over 512 rows at a time), VWMA's `x·v` and ADR compute their derived series where the
//! next stage reads them; the stage-by-stage compositions above are the definition, and the tests
//! compare against them.

use super::canon;
use super::cascade::run_cascade;
use super::ema::{seed_mean_of, smoothing};
use super::extrema::select;
use super::moments;
use super::scan::{run_scan, write_rows, Recurrence};
use super::scratch::with_scratch;
use super::split::{Sequential, Splitter};
use super::varscan::{run_varscan, write_y};
use super::wilder;
use super::wma;

/// A moving-average type of TA-Lib's `matype` parameters (MAMA not yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaType {
    Sma,
    Ema,
    Wma,
    Dema,
    Tema,
    Trima,
    Kama,
    T3,
    Hma,
    /// TA-Lib's "disabled" (code 10): the identity.
    Disabled,
    Zlema,
    Rma,
}

/// T3's volume factor when it is a `matype` (TA-Lib's MA uses 0.7).
pub const MA_T3_VFACTOR: f64 = 0.7;

impl MaType {
    /// The type of TA-Lib code `code`; `11` ("the function's own default") is `default`. `None`
    /// for MAMA (7) and codes outside `[0, 13]`.
    pub fn from_code(code: i64, default: MaType) -> Option<MaType> {
        Some(match code {
            0 => MaType::Sma,
            1 => MaType::Ema,
            2 => MaType::Wma,
            3 => MaType::Dema,
            4 => MaType::Tema,
            5 => MaType::Trima,
            6 => MaType::Kama,
            8 => MaType::T3,
            9 => MaType::Hma,
            10 => MaType::Disabled,
            11 => default,
            12 => MaType::Zlema,
            13 => MaType::Rma,
            _ => return None,
        })
    }

    /// TA-Lib's lookback of this type at `period >= 1`.
    pub fn lookback(self, period: usize) -> usize {
        let p = period;
        if p <= 1 {
            return 0;
        }
        match self {
            MaType::Sma | MaType::Ema | MaType::Wma | MaType::Trima | MaType::Rma => p - 1,
            MaType::Dema => 2 * (p - 1),
            MaType::Tema => 3 * (p - 1),
            MaType::T3 => 6 * (p - 1),
            MaType::Kama => p,
            MaType::Hma => (p - 1) + (isqrt(p) - 1),
            MaType::Zlema => (p - 1) / 2 + (p - 1),
            MaType::Disabled => 0,
        }
    }
}

/// `floor(sqrt(n))`, exactly.
pub fn isqrt(n: usize) -> usize {
    let mut r = (n as f64).sqrt() as usize;
    while r * r > n {
        r -= 1;
    }
    while (r + 1) * (r + 1) <= n {
        r += 1;
    }
    r
}

/// `out[t] = canon(f(t, out[t]))` for rows `t` in `from .. out.len()`, through the splitter.
fn update_rows<S: Splitter>(
    split: &S,
    from: usize,
    out: &mut [f64],
    f: impl Fn(usize, f64) -> f64 + Sync + Send,
) {
    let n = out.len();
    if from >= n {
        return;
    }
    split.for_each_piece(from, [&mut out[from..n]], |lo, [piece]| {
        for (i, v) in piece.iter_mut().enumerate() {
            *v = canon(f(lo + i, *v));
        }
    });
}

/// `out[t] = x[t]` for every row.
fn copy_rows<S: Splitter>(split: &S, x: &[f64], out: &mut [f64]) {
    update_rows(split, 0, &mut out[..x.len()], |t, _| x[t]);
}

/// The EMA of `x` from row `from` on (see the module spec); rows before its seed row untouched.
pub fn ema_from<S: Splitter>(split: &S, x: &[f64], from: usize, period: usize, out: &mut [f64]) {
    ema_of(split, x.len(), from, period, |t| x[t], out);
}

/// [`ema_from`] of the series `value(t)` (rows `t >= from`, `n` rows in all).
fn ema_of<S: Splitter>(
    split: &S,
    n: usize,
    from: usize,
    period: usize,
    value: impl Fn(usize) -> f64 + Sync + Send,
    out: &mut [f64],
) {
    if period == 0 || n < from + period {
        return;
    }
    let (rec, k) = ema_from_recurrence(from, period, &value);
    let drive = |start: usize, b: &mut [[f64; 1]]| {
        for (i, v) in b.iter_mut().enumerate() {
            *v = [k * value(start + i)];
        }
    };
    run_scan(split, n, &rec, drive, [&mut out[..n]], |o, i, t, ys, st| {
        write_rows(o[0], i, t, ys, st, |_, y| y[0])
    });
}

/// [`ema_from`]'s recurrence and drive coefficient `k` for the series `value(t)` (rows
/// `from ..= from + period - 1` are read for the seed); the GPU pipeline builds its stages from it.
pub fn ema_from_recurrence(
    from: usize,
    period: usize,
    value: impl Fn(usize) -> f64,
) -> (Recurrence<1>, f64) {
    let k = smoothing(period);
    let rec = Recurrence {
        decay: [1.0 - k],
        seed_row: from + period - 1,
        seed: [seed_mean_of(period, |i| value(from + i))],
    };
    (rec, k)
}

/// ZLEMA's lag `(period - 1) / 2`.
pub fn zlema_lag(period: usize) -> usize {
    (period - 1) / 2
}

/// ZLEMA's de-lagged series at row `t >= lag`.
#[inline(always)]
pub fn zlema_value(x: &[f64], lag: usize, t: usize) -> f64 {
    2.0 * x[t] - x[t - lag]
}

/// The cascade of `M` EMAs of DEMA, TEMA and T3: `e_1 = ema_from(value, 0)`,
/// `e_{s+1} = ema_from(e_s, s(p - 1))`, written as `combine([e_1, …, e_M])` from the lookback
/// `M(p - 1)` on (earlier rows untouched). One fused pass ([`run_cascade`]): the stages' rows
/// are those of the stage-by-stage definition ([`ema_stages`]), never stored; a splitter with
/// pieces but no workers runs that definition through its pieces instead.
fn ema_cascade<S: Splitter, const M: usize>(
    split: &S,
    n: usize,
    period: usize,
    value: impl Fn(usize) -> f64 + Sync + Send,
    out: &mut [f64],
    combine: impl Fn([f64; M]) -> f64 + Sync,
) {
    let lb = M * (period - 1);
    if n <= lb {
        return;
    }
    if split.workers() <= 1 && split.max_pieces() > 1 {
        // Pieces but no workers for a chained pass (a device set's members take their shares of
        // the rows through `for_each_piece`): the stages one after another through its pieces,
        // as `run_scan` does for such a splitter. Same bits.
        let e = ema_stages::<_, M>(split, n, period, &value);
        return update_rows(split, lb, &mut out[..n], |t, _| {
            combine(std::array::from_fn(|s| e[s][t]))
        });
    }
    let (stages, k, prefix) = ema_cascade_stages::<M>(period, &value);
    out[lb] = canon(combine(std::array::from_fn(|s| prefix[s][lb])));
    if n == lb + 1 {
        // No row after the last seed row, so no cascade pass to report the stages' states: each
        // one's state after the last row is its row `lb`, handed on as a scan ending at its seed
        // row hands on the seed (a device set's GPUs continue from them).
        for e in &prefix {
            split.scan_carry_out(&[e[lb]]);
        }
        return;
    }
    let drive = |start: usize, b: &mut [[f64; 1]]| {
        for (i, v) in b.iter_mut().enumerate() {
            *v = [k * value(start + i)];
        }
    };
    run_cascade(split, n, &stages, (drive, k), out, combine);
}

/// The `M` EMAs of DEMA, TEMA and T3 as scan stages, their drive coefficient `k` (stage `s` is
/// driven by `k` times the stage before, stage 0 by `k·value(t)`, and seeded at row
/// `(s + 1)(p - 1)`), and every stage's rows `0 ..= M(p - 1)` (the lookback; `value` is read on
/// those rows). The rows come from the definition ([`ema_stages`]): a row depends on no later
/// row and the scan grid is aligned to row 0, so they are the full series' bits, seeds included.
/// The GPU pipeline chains its stages from the same recurrences.
pub fn ema_cascade_stages<const M: usize>(
    period: usize,
    value: impl Fn(usize) -> f64 + Sync + Send,
) -> ([Recurrence<1>; M], f64, Vec<Vec<f64>>) {
    let p = period;
    let prefix = ema_stages::<_, M>(&Sequential, M * (p - 1) + 1, p, &value);
    let k = smoothing(p);
    let stages = std::array::from_fn(|s| {
        let seed_row = (s + 1) * (p - 1);
        Recurrence {
            decay: [1.0 - k],
            seed_row,
            seed: [prefix[s][seed_row]],
        }
    });
    (stages, k, prefix)
}

/// `e_1 … e_M` of [`ema_cascade`] over rows `0..n`, stage by stage through full-length vectors
/// (the definition; rows before each stage's seed row are 0).
fn ema_stages<S: Splitter, const M: usize>(
    split: &S,
    n: usize,
    period: usize,
    value: &(impl Fn(usize) -> f64 + Sync + Send),
) -> Vec<Vec<f64>> {
    let mut e: Vec<Vec<f64>> = Vec::with_capacity(M);
    for s in 0..M {
        let mut y = vec![0.0; n];
        match e.last() {
            None => ema_of(split, n, 0, period, value, &mut y),
            Some(prev) => ema_from(split, prev, s * (period - 1), period, &mut y),
        }
        e.push(y);
    }
    e
}

/// DEMA's combination of its two EMAs.
fn dema_of(e: [f64; 2]) -> f64 {
    2.0 * e[0] - e[1]
}

/// TEMA's combination of its three EMAs.
fn tema_of(e: [f64; 3]) -> f64 {
    (3.0 * e[0] - 3.0 * e[1]) + e[2]
}

/// DEMA(period); rows before the lookback untouched.
pub fn dema<S: Splitter>(split: &S, x: &[f64], period: usize, out: &mut [f64]) {
    if period <= 1 {
        return copy_rows(split, x, out);
    }
    ema_cascade(split, x.len(), period, |t| x[t], out, dema_of);
}

/// TEMA(period); rows before the lookback untouched.
pub fn tema<S: Splitter>(split: &S, x: &[f64], period: usize, out: &mut [f64]) {
    if period <= 1 {
        return copy_rows(split, x, out);
    }
    ema_cascade(split, x.len(), period, |t| x[t], out, tema_of);
}

/// T3's coefficients `[c1, c2, c3, c4]` for the volume factor `v`, in TA-Lib's operations.
pub fn t3_coefficients(v: f64) -> [f64; 4] {
    let a2 = v * v;
    let c1 = -(a2 * v);
    let c2 = 3.0 * (a2 - c1);
    let c3 = -6.0 * a2 - 3.0 * (v - c1);
    let c4 = ((1.0 + 3.0 * v) - c1) + 3.0 * a2;
    [c1, c2, c3, c4]
}

/// T3(period, vfactor); rows before the lookback untouched.
pub fn t3<S: Splitter>(split: &S, x: &[f64], period: usize, vfactor: f64, out: &mut [f64]) {
    if period <= 1 {
        return copy_rows(split, x, out);
    }
    let [c1, c2, c3, c4] = t3_coefficients(vfactor);
    ema_cascade(
        split,
        x.len(),
        period,
        |t| x[t],
        out,
        |e: [f64; 6]| ((c1 * e[5] + c2 * e[4]) + c3 * e[3]) + c4 * e[2],
    );
}

/// TRIMA's two SMA widths `(first, second)`: `SMA_second(SMA_first(x))`.
pub fn trima_widths(period: usize) -> (usize, usize) {
    if period % 2 == 1 {
        let a = period.div_ceil(2);
        (a, a)
    } else {
        (period / 2 + 1, period / 2)
    }
}

/// TRIMA(period); rows before the lookback untouched.
pub fn trima<S: Splitter>(split: &S, x: &[f64], period: usize, out: &mut [f64]) {
    let (n, p) = (x.len(), period);
    if p <= 1 {
        return copy_rows(split, x, out);
    }
    if n < p {
        return;
    }
    let (b, a) = trima_widths(p);
    let mut s1 = vec![0.0; n];
    moments::sma(split, x, b, &mut s1);
    moments::sma(split, &s1[b - 1..], a, &mut out[b - 1..n]);
}

/// HMA(period); rows before the lookback untouched.
pub fn hma<S: Splitter>(split: &S, x: &[f64], period: usize, out: &mut [f64]) {
    let (n, p) = (x.len(), period);
    if p <= 1 {
        return copy_rows(split, x, out);
    }
    let (h, s) = (p / 2, isqrt(p));
    if n < p + s - 1 {
        return;
    }
    let (mut full, mut d) = (vec![0.0; n], vec![0.0; n]);
    wma::wma(split, x, p, &mut full);
    wma::wma(split, x, h, &mut d);
    update_rows(split, p - 1, &mut d, |t, half| 2.0 * half - full[t]);
    wma::wma(split, &d[p - 1..], s, &mut out[p - 1..n]);
}

/// ZLEMA(period); rows before the lookback untouched.
pub fn zlema<S: Splitter>(split: &S, x: &[f64], period: usize, out: &mut [f64]) {
    let p = period;
    if p <= 1 {
        return copy_rows(split, x, out);
    }
    let lag = zlema_lag(p);
    ema_of(split, x.len(), lag, p, |t| zlema_value(x, lag, t), out);
}

/// `out[t] = Σ u(t - w + 1 ..= t)` for rows `t >= w - 1` of the series `u` (`n` rows) on the
/// block grid of `w` rows aligned to row 0 of `u` (see the module spec); earlier rows untouched.
pub fn window_sums<S: Splitter>(
    split: &S,
    n: usize,
    u: impl Fn(usize) -> f64 + Sync + Send,
    w: usize,
    out: &mut [f64],
) {
    if w == 0 || n < w {
        return;
    }
    split.for_each_piece(w - 1, [&mut out[w - 1..n]], |lo, [piece]| {
        let hi = lo + piece.len();
        with_scratch(2 * w, |scratch| {
            let (pre, suf) = scratch.split_at_mut(w);
            window_sum_rows(&u, w, (lo, hi), pre, suf, |t, sums| {
                piece[t - lo..t - lo + sums.len()].copy_from_slice(sums)
            });
        })
    });
}

/// Rows `lo..hi` (`lo >= w - 1`) of [`window_sums`] of `u`, handed to `emit(t, sums)` block by
/// block in order (`sums[i]` is row `t + i`'s); `pre` and `suf` are scratch of `w` values each.
#[inline(always)]
fn window_sum_rows(
    u: impl Fn(usize) -> f64,
    w: usize,
    (lo, hi): (usize, usize),
    pre: &mut [f64],
    suf: &mut [f64],
    mut emit: impl FnMut(usize, &[f64]),
) {
    for b in lo / w..=(hi - 1) / w {
        let bs = b * w;
        let (o_lo, o_hi) = (lo.max(bs) - bs, hi.min(bs + w) - bs);
        let mut acc = 0.0f64;
        for (o, p) in pre[..o_hi].iter_mut().enumerate() {
            acc = acc + u(bs + o);
            *p = acc;
        }
        if o_lo < w - 1 {
            let mut acc = 0.0f64;
            for o in (o_lo + 1..w).rev() {
                acc = u(bs - w + o) + acc;
                suf[o] = acc;
            }
        }
        // The window sums over the prefix sums (the block-ending row's is its prefix sum).
        let paired = o_hi.min(w - 1);
        if o_lo < paired {
            let (pre, suf) = (&mut pre[o_lo..paired], &suf[o_lo + 1..paired + 1]);
            for (p, &s) in pre.iter_mut().zip(suf) {
                *p = s + *p;
            }
        }
        emit(bs + o_lo, &pre[o_lo..o_hi]);
    }
}

/// KAMA's smoothing constant from the window's path length `s` and net change `r`.
#[inline(always)]
pub fn kama_sc(s: f64, r: f64) -> f64 {
    kama_sc_scaled(s, r, 1e-8)
}

/// KAMA's slowest smoothing constant, `2 / (30 + 1)`.
pub const KAMA_SLOWEST: f64 = 2.0 / (30.0 + 1.0);
/// The span of KAMA's constants, `2 / (2 + 1) - KAMA_SLOWEST`.
pub const KAMA_SPAN: f64 = 2.0 / (2.0 + 1.0) - KAMA_SLOWEST;

/// KAMA's exact scale `g = 2^-j` (`2^j` the smallest power of two `>= 2p`; see the module spec).
pub fn kama_scale(period: usize) -> f64 {
    2f64.powi(-((2 * period).next_power_of_two().trailing_zeros() as i32))
}

/// [`kama_sc`] of a path length and change both scaled by `g`; `zero = 1e-8·g`.
#[inline(always)]
fn kama_sc_scaled(s: f64, r: f64, zero: f64) -> f64 {
    const SC_MAX: f64 = KAMA_SLOWEST;
    let diff = KAMA_SPAN;
    // A select, not a branch: the rows of a drive vectorise (a discarded quotient is computed
    // and thrown away).
    let er = select((s <= r) | ((-zero < s) & (s < zero)), 1.0, (r / s).abs());
    let sc = er * diff + SC_MAX;
    sc * sc
}

/// KAMA(period); rows before the lookback untouched.
pub fn kama<S: Splitter>(split: &S, x: &[f64], period: usize, out: &mut [f64]) {
    let (n, p) = (x.len(), period);
    if p <= 1 {
        return copy_rows(split, x, out);
    }
    if n <= p {
        return;
    }
    // u(i) = |x[i + 1]·g - x[i]·g|; the path length at row t is the window sum ending at u(t - 1).
    let g = kama_scale(p);
    let u = |i: usize| (x[i + 1] * g - x[i] * g).abs();
    if p <= KAMA_FUSED_MAX {
        // Each chunk's path lengths from `x` at once (O(log p) per row): no temporaries.
        return kama_scan(split, x, p, g, out, |t0, s, levels| {
            path_lengths(&x[t0 - p..t0 + s.len()], g, p, levels, s)
        });
    }
    // Long windows: one full-length pass of window sums (O(1) per row whatever `p`).
    let mut path = vec![0.0; n - 1];
    window_sums(split, n - 1, u, p, &mut path);
    kama_scan(split, x, p, g, out, |t0, s, _| {
        s.copy_from_slice(&path[t0 - 1..t0 - 1 + s.len()])
    });
}

/// KAMA windows up to this long take binary segment sums, computed inside the scan's drive
/// (`TX_KAMA_SEGMENT_MAX` in `scan.cu`; the host tests cover periods either side).
const KAMA_FUSED_MAX: usize = 256;

/// Rows of KAMA's drive computed together: their path lengths, then their coefficients, in L1.
const KAMA_CHUNK: usize = 512;

/// One chunk's levels of [`path_lengths`]: three buffers of `u`'s tree sums.
type Levels = [[f64; KAMA_CHUNK + KAMA_FUSED_MAX]; 3];

/// `(&bufs[read], &mut bufs[write])` for `read != write`.
fn read_write(bufs: &mut Levels, read: usize, write: usize) -> (&[f64], &mut [f64]) {
    let (lo, hi) = bufs.split_at_mut(read.max(write));
    if read < write {
        (&lo[read], &mut hi[0])
    } else {
        (&hi[0], &mut lo[write])
    }
}

/// KAMA's path lengths for `p <= KAMA_FUSED_MAX` (module spec: binary segment sums) of the rows
/// `t0 .. t0 + out.len()`, from `xs = x[t0 - p .. t0 + out.len()]`: `u_j = |xs[j+1]·g - xs[j]·g|`
/// and row `t0 + i` sums `u_{i ..= i + p - 1}`.
#[inline(always)]
fn path_lengths(xs: &[f64], g: f64, p: usize, levels: &mut Levels, out: &mut [f64]) {
    let len = out.len();
    let cnt = p + len - 1;
    let u = |j: usize| (xs[j + 1] * g - xs[j] * g).abs();
    // `levels[cur][j]`: the tree sum of the `width` values of `u` ending at `j`. With `p` even,
    // level 1 is never a segment: level 2 comes straight from `x` (the same sums, one pass less).
    let (mut cur, mut width) = (0, 1);
    let base = &mut levels[0][..cnt];
    if p.is_multiple_of(2) {
        let (older, now, newer) = (&xs[..cnt - 1], &xs[1..cnt], &xs[2..cnt + 1]);
        for (((d, &a), &b), &c) in base[1..].iter_mut().zip(older).zip(now).zip(newer) {
            *d = (b * g - a * g).abs() + (c * g - b * g).abs();
        }
        width = 2;
    } else {
        for (j, d) in base.iter_mut().enumerate() {
            *d = u(j);
        }
    }
    // The running sum of the segments so far stays where the first segment lies: (buffer, offset).
    let mut sum: Option<(usize, usize)> = None;
    let mut covered = 0;
    loop {
        if p & width != 0 {
            // The next segment back: the `width` values before the `covered` most recent ones.
            let end = p - 1 - covered;
            covered += width;
            let last = covered == p;
            match sum {
                None if last => out.copy_from_slice(&levels[cur][end..end + len]),
                None => sum = Some((cur, end)),
                Some((at, off)) => {
                    let (seg, acc) = read_write(levels, cur, at);
                    let (seg, acc) = (&seg[end..end + len], &mut acc[off..off + len]);
                    if last {
                        for ((o, &a), &v) in out.iter_mut().zip(&*acc).zip(seg) {
                            *o = a + v;
                        }
                    } else {
                        for (a, &v) in acc.iter_mut().zip(seg) {
                            *a = *a + v;
                        }
                    }
                }
            }
            if last {
                return;
            }
        }
        // The next level, in the buffer holding neither this level nor the running sum.
        let next = match sum {
            Some((at, _)) if at != cur => 3 - cur - at,
            _ => (cur + 1) % 3,
        };
        let lo = 2 * width - 1;
        let (src, dst) = read_write(levels, cur, next);
        let (older, newer) = (&src[lo - width..cnt - width], &src[lo..cnt]);
        for ((d, &a), &b) in dst[lo..cnt].iter_mut().zip(older).zip(newer) {
            *d = a + b;
        }
        cur = next;
        width *= 2;
    }
}

/// KAMA's scan over `x` with scale `g` (module spec); `paths(t0, s, scratch)` puts the path length
/// of row `t0 + i` in `s[i]` (at most [`KAMA_CHUNK`] rows at a time), which the drive then turns
/// into the rows' coefficients.
fn kama_scan<S: Splitter>(
    split: &S,
    x: &[f64],
    p: usize,
    g: f64,
    out: &mut [f64],
    paths: impl Fn(usize, &mut [f64], &mut Levels) + Sync + Send,
) {
    let (n, zero) = (x.len(), 1e-8 * g);
    let drive = |start: usize, a: &mut [f64], b: &mut [f64]| {
        let mut s = [0.0f64; KAMA_CHUNK];
        let mut scratch = [[0.0f64; KAMA_CHUNK + KAMA_FUSED_MAX]; 3];
        let chunks = a.chunks_mut(KAMA_CHUNK).zip(b.chunks_mut(KAMA_CHUNK));
        for (c, (a, b)) in chunks.enumerate() {
            let (t0, m) = (start + c * KAMA_CHUNK, a.len());
            let s = &mut s[..m];
            paths(t0, s, &mut scratch);
            // Slices cut to the chunk's rows: no bounds checks, so the rows vectorise.
            let (now, back) = (&x[t0..t0 + m], &x[t0 - p..t0 - p + m]);
            let rows = a.iter_mut().zip(b.iter_mut()).zip(&*s).zip(now).zip(back);
            for ((((a, b), &s), &xt), &xb) in rows {
                let sc = kama_sc_scaled(s, xt * g - xb * g, zero);
                (*a, *b) = (1.0 - sc, sc * xt);
            }
        }
    };
    run_varscan(
        split,
        n,
        p - 1,
        x[p - 1],
        drive,
        [&mut out[..n]],
        |o, i, _, ys, st| write_y(o[0], i, ys, st),
    );
}

/// VWMA(period) of `x` weighted by `v`; rows before the lookback untouched.
pub fn vwma<S: Splitter>(split: &S, x: &[f64], v: &[f64], period: usize, out: &mut [f64]) {
    let (n, p) = (x.len(), period);
    if p <= 1 {
        return copy_rows(split, x, out);
    }
    if n < p {
        return;
    }
    let mut sv = vec![0.0; n];
    moments::sma(split, v, p, &mut sv);
    let fill = |t0: usize, xs: &mut [f64]| {
        let rows = t0..t0 + xs.len();
        for ((d, x), v) in xs.iter_mut().zip(&x[rows.clone()]).zip(&v[rows]) {
            *d = x * v;
        }
    };
    moments::sma_of_filled(split, n, p, fill, out);
    update_rows(split, p - 1, &mut out[..n], |t, spv| spv / sv[t]);
}

/// The moving average of type `matype` and period `period >= 1` (T3 with volume factor 0.7, as
/// TA-Lib's MA); rows before `matype.lookback(period)` untouched.
pub fn moving_average<S: Splitter>(
    split: &S,
    x: &[f64],
    matype: MaType,
    period: usize,
    out: &mut [f64],
) {
    let p = period;
    if p <= 1 || matype == MaType::Disabled {
        return copy_rows(split, x, out);
    }
    match matype {
        MaType::Sma => moments::sma(split, x, p, out),
        MaType::Ema => ema_from(split, x, 0, p, out),
        MaType::Wma => wma::wma(split, x, p, out),
        MaType::Dema => dema(split, x, p, out),
        MaType::Tema => tema(split, x, p, out),
        MaType::Trima => trima(split, x, p, out),
        MaType::Kama => kama(split, x, p, out),
        MaType::T3 => t3(split, x, p, MA_T3_VFACTOR, out),
        MaType::Hma => hma(split, x, p, out),
        MaType::Zlema => zlema(split, x, p, out),
        MaType::Rma => wilder::rma(split, x, p, out),
        MaType::Disabled => copy_rows(split, x, out),
    }
}

/// MAVP's period for a row: `periods_t` truncated toward zero and clamped to `[min, max]` (NaN
/// gives `min`; ±inf and values beyond the integers saturate).
#[inline(always)]
pub fn mavp_period(v: f64, min: usize, max: usize) -> usize {
    let q = v as i64; // saturating; NaN gives 0
    q.clamp(min as i64, max as i64) as usize
}

/// MAVP: a moving average whose period varies per row (see the module spec); rows before
/// `matype.lookback(max)` untouched.
pub fn mavp<S: Splitter>(
    split: &S,
    x: &[f64],
    periods: &[f64],
    (min, max): (usize, usize),
    matype: MaType,
    out: &mut [f64],
) {
    let n = x.len();
    let start = matype.lookback(max);
    if n <= start || min == 0 || min > max {
        return;
    }
    let mut used = vec![false; max + 1];
    for &v in &periods[start..n] {
        used[mavp_period(v, min, max)] = true;
    }
    let mut buf = vec![0.0; n];
    for q in (min..=max).filter(|&q| used[q]) {
        let origin = start - matype.lookback(q);
        moving_average(split, &x[origin..], matype, q, &mut buf[origin..n]);
        update_rows(split, start, &mut out[..n], |t, cur| {
            if mavp_period(periods[t], min, max) == q {
                buf[t]
            } else {
                cur
            }
        });
    }
}

/// Bollinger bands around a moving average of type `matype` (see the module spec); rows before
/// `max(matype.lookback(period), period - 1)` untouched (`upper` also holds the deviation there).
#[allow(clippy::too_many_arguments)]
pub fn bollinger_ma<S: Splitter>(
    split: &S,
    x: &[f64],
    period: usize,
    (up, down): (f64, f64),
    matype: MaType,
    middle: &mut [f64],
    upper: &mut [f64],
    lower: &mut [f64],
) {
    let n = x.len();
    let lb = matype.lookback(period).max(period - 1);
    if period == 0 || n <= lb {
        return;
    }
    moving_average(split, x, matype, period, middle);
    moments::rolling_std(split, x, period, 0, upper);
    let m: &[f64] = middle;
    split.for_each_piece(lb, [&mut upper[lb..n], &mut lower[lb..n]], |lo, [u, l]| {
        for i in 0..u.len() {
            let (mid, s) = (m[lo + i], u[i]);
            u[i] = canon(mid + up * s);
            l[i] = canon(mid - down * s);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::ema;
    use crate::kernels::split::{CutAt, Sequential};
    use crate::kernels::testing::{assert_bits_eq, assert_close, random_cuts, series_zoo, Lcg};

    const ALL: [MaType; 12] = [
        MaType::Sma,
        MaType::Ema,
        MaType::Wma,
        MaType::Dema,
        MaType::Tema,
        MaType::Trima,
        MaType::Kama,
        MaType::T3,
        MaType::Hma,
        MaType::Disabled,
        MaType::Zlema,
        MaType::Rma,
    ];

    fn run<S: Splitter>(s: &S, x: &[f64], m: MaType, p: usize) -> Vec<f64> {
        let mut out = vec![0.0; x.len()];
        moving_average(s, x, m, p, &mut out);
        out
    }

    fn naive_ema_from(x: &[f64], from: usize, p: usize) -> Vec<f64> {
        let mut out = vec![f64::NAN; x.len()];
        let s = from + p - 1;
        if s >= x.len() {
            return out;
        }
        let k = 2.0 / (p as f64 + 1.0);
        let mut y = x[from..=s].iter().sum::<f64>() / p as f64;
        out[s] = y;
        for t in s + 1..x.len() {
            y = (x[t] - y) * k + y;
            out[t] = y;
        }
        out
    }

    fn naive_sma(x: &[f64], from: usize, p: usize) -> Vec<f64> {
        let mut out = vec![f64::NAN; x.len()];
        for t in from + p - 1..x.len() {
            out[t] = x[t + 1 - p..=t].iter().sum::<f64>() / p as f64;
        }
        out
    }

    fn naive_wma(x: &[f64], from: usize, p: usize) -> Vec<f64> {
        let mut out = vec![f64::NAN; x.len()];
        let den = (p * (p + 1) / 2) as f64;
        for t in from + p - 1..x.len() {
            let s: f64 = (0..p).map(|j| (j + 1) as f64 * x[t + 1 - p + j]).sum();
            out[t] = s / den;
        }
        out
    }

    /// TA-Lib's loops, written plainly (running sums and sequential recursions).
    fn naive(x: &[f64], m: MaType, p: usize) -> Vec<f64> {
        let n = x.len();
        if p == 1 || m == MaType::Disabled {
            return x.to_vec();
        }
        match m {
            MaType::Sma => naive_sma(x, 0, p),
            MaType::Ema => naive_ema_from(x, 0, p),
            MaType::Wma => naive_wma(x, 0, p),
            MaType::Dema => {
                let e1 = naive_ema_from(x, 0, p);
                let e2 = naive_ema_from(&e1, p - 1, p);
                (0..n).map(|t| 2.0 * e1[t] - e2[t]).collect()
            }
            MaType::Tema => {
                let e1 = naive_ema_from(x, 0, p);
                let e2 = naive_ema_from(&e1, p - 1, p);
                let e3 = naive_ema_from(&e2, 2 * (p - 1), p);
                (0..n).map(|t| 3.0 * e1[t] - 3.0 * e2[t] + e3[t]).collect()
            }
            MaType::T3 => {
                let mut e = vec![x.to_vec()];
                for i in 0..6 {
                    let next = naive_ema_from(&e[i], i * (p - 1), p);
                    e.push(next);
                }
                let v = MA_T3_VFACTOR;
                let (c1, c2) = (-v * v * v, 3.0 * v * v + 3.0 * v * v * v);
                let c3 = -6.0 * v * v - 3.0 * v - 3.0 * v * v * v;
                let c4 = 1.0 + 3.0 * v + v * v * v + 3.0 * v * v;
                (0..n)
                    .map(|t| c1 * e[6][t] + c2 * e[5][t] + c3 * e[4][t] + c4 * e[3][t])
                    .collect()
            }
            MaType::Trima => {
                // Triangular weights, summed directly.
                let (b, a) = trima_widths(p);
                let w: Vec<f64> = (0..p)
                    .map(|j| ((j + 1).min(p - j).min(a).min(b)) as f64)
                    .collect();
                let den: f64 = w.iter().sum();
                let mut out = vec![f64::NAN; n];
                for t in p - 1..n {
                    out[t] = (0..p).map(|j| w[j] * x[t + 1 - p + j]).sum::<f64>() / den;
                }
                out
            }
            MaType::Hma => {
                let (h, s) = (p / 2, isqrt(p));
                let (half, full) = (naive_wma(x, 0, h), naive_wma(x, 0, p));
                let d: Vec<f64> = (0..n).map(|t| 2.0 * half[t] - full[t]).collect();
                naive_wma(&d, p - 1, s)
            }
            MaType::Zlema => {
                let lag = (p - 1) / 2;
                let d: Vec<f64> = (0..n)
                    .map(|t| {
                        if t >= lag {
                            2.0 * x[t] - x[t - lag]
                        } else {
                            0.0
                        }
                    })
                    .collect();
                naive_ema_from(&d, lag, p)
            }
            MaType::Kama => {
                let mut out = vec![f64::NAN; n];
                let mut y = x[p - 1];
                for t in p..n {
                    let s: f64 = (t + 1 - p..=t).map(|j| (x[j] - x[j - 1]).abs()).sum();
                    let sc = kama_sc(s, x[t] - x[t - p]);
                    y = (x[t] - y) * sc + y;
                    out[t] = y;
                }
                out
            }
            MaType::Rma => {
                let mut out = vec![f64::NAN; n];
                let mut y = x[..p].iter().sum::<f64>() / p as f64;
                out[p - 1] = y;
                for t in p..n {
                    y = (y * (p - 1) as f64 + x[t]) / p as f64;
                    out[t] = y;
                }
                out
            }
            MaType::Disabled => x.to_vec(),
        }
    }

    fn finite_zoo(n: usize, seed: u64) -> Vec<Vec<f64>> {
        series_zoo(n, seed)
            .into_iter()
            .filter(|x| x.iter().all(|v| v.is_finite()))
            .collect()
    }

    #[test]
    fn every_type_matches_the_naive_loop_and_any_split() {
        let mut rng = Lcg(31);
        for x in finite_zoo(2600, 12) {
            for m in ALL {
                for p in [1, 2, 3, 4, 5, 9, 30, 101] {
                    let lb = m.lookback(p);
                    let whole = run(&Sequential, &x, m, p);
                    let want = naive(&x, m, p);
                    let scale = x.iter().fold(0.0f64, |a, v| a.max(v.abs())).max(1e-300);
                    let got: Vec<f64> = whole[lb..].iter().map(|v| v / scale).collect();
                    let exp: Vec<f64> = want[lb..].iter().map(|v| v / scale).collect();
                    assert_close(&got, &exp, 1e-9, &format!("{m:?}({p})"));
                    for _ in 0..3 {
                        let cut = run(&CutAt(random_cuts(&mut rng, x.len(), 16)), &x, m, p);
                        assert_bits_eq(&cut[lb..], &whole[lb..], &format!("{m:?}({p}) cuts"));
                    }
                }
            }
        }
    }

    #[test]
    fn nan_and_infinities_keep_split_invariance() {
        let mut rng = Lcg(41);
        for x in series_zoo(2100, 44) {
            for m in ALL {
                for p in [2, 7, 40] {
                    let lb = m.lookback(p);
                    let whole = run(&Sequential, &x, m, p);
                    for _ in 0..2 {
                        let cut = run(&CutAt(random_cuts(&mut rng, x.len(), 16)), &x, m, p);
                        assert_bits_eq(&cut[lb..], &whole[lb..], &format!("{m:?}({p})"));
                    }
                }
            }
        }
    }

    /// DEMA, TEMA and T3 on any schedule of workers give the bits of their EMAs computed stage by
    /// stage through full-length vectors (their definition), from the lookback on.
    #[test]
    fn ema_cascades_give_the_stage_by_stage_bits() {
        use crate::kernels::testing::Workers;
        let [c1, c2, c3, c4] = t3_coefficients(MA_T3_VFACTOR);
        for x in series_zoo(30_000, 5) {
            for p in [2, 5, 30, 1500] {
                let e = ema_stages::<_, 6>(&CutAt(vec![7000, 20_000]), x.len(), p, &|t| x[t]);
                let at = |t: usize| -> [f64; 6] { std::array::from_fn(|s| e[s][t]) };
                let want: [Vec<f64>; 3] = [
                    (2 * (p - 1)..x.len())
                        .map(|t| dema_of([at(t)[0], at(t)[1]]))
                        .collect(),
                    (3 * (p - 1)..x.len())
                        .map(|t| tema_of([at(t)[0], at(t)[1], at(t)[2]]))
                        .collect(),
                    (6 * (p - 1)..x.len())
                        .map(|t| {
                            let e = at(t);
                            ((c1 * e[5] + c2 * e[4]) + c3 * e[3]) + c4 * e[2]
                        })
                        .collect(),
                ];
                for (threads, turns) in [(0, 1), (2, 0), (3, 0)] {
                    let w = Workers::new(threads, turns);
                    for (m, want) in [MaType::Dema, MaType::Tema, MaType::T3]
                        .into_iter()
                        .zip(&want)
                    {
                        let got = run(&w, &x, m, p);
                        let what = format!("{m:?}({p}) threads={threads}");
                        assert_bits_eq(&got[m.lookback(p)..], want, &what);
                    }
                }
            }
        }
    }

    /// DEMA, TEMA and T3 hand on one state per EMA, in stage order: each EMA's value at the last
    /// row (a device set's GPUs continue the cascade from them), also when the series ends at the
    /// lookback row (the last EMA's seed row).
    #[test]
    fn ema_cascades_hand_on_every_stage_state() {
        use crate::kernels::testing::Workers;
        let x = &series_zoo(3000, 5)[1];
        for p in [2, 5, 342] {
            for (m, levels) in [(MaType::Dema, 2), (MaType::Tema, 3), (MaType::T3, 6)] {
                let lb = m.lookback(p);
                for n in [lb + 1, lb + 2, lb + 1500] {
                    if n > x.len() {
                        continue;
                    }
                    let e = ema_stages::<_, 6>(&Sequential, n, p, &|t| x[t]);
                    let w = Workers::new(0, 1);
                    run(&w, &x[..n], m, p);
                    let got = w.carry_out.into_inner().unwrap();
                    let want: Vec<Vec<f64>> = (0..levels).map(|s| vec![e[s][n - 1]]).collect();
                    assert_eq!(got.len(), levels, "{m:?}({p}) n={n}");
                    for (g, w) in got.iter().zip(&want) {
                        assert_bits_eq(g, w, &format!("{m:?}({p}) n={n}"));
                    }
                }
            }
        }
    }

    /// A splitter that cuts pieces and runs no workers, as a device set's members: a kernel that
    /// hands it a chained pass would leave the members' shares unused.
    struct PiecesOnly(CutAt);

    impl Splitter for PiecesOnly {
        fn for_each_piece<const K: usize, F>(&self, first: usize, outs: [&mut [f64]; K], fill: F)
        where
            F: Fn(usize, [&mut [f64]; K]) + Sync + Send,
        {
            self.0.for_each_piece(first, outs, fill)
        }

        fn map_indexed<T: Send, F>(&self, n: usize, f: F) -> Vec<T>
        where
            F: Fn(usize) -> T + Sync + Send,
        {
            self.0.map_indexed(n, f)
        }

        fn max_pieces(&self) -> usize {
            self.0.max_pieces()
        }

        fn last_piece_start(&self, first_row: usize, len: usize) -> usize {
            self.0.last_piece_start(first_row, len)
        }

        fn run_workers<F>(&self, _worker: F)
        where
            F: Fn() + Sync + Send,
        {
            panic!("run_workers on a splitter without workers");
        }
    }

    /// DEMA, TEMA and T3 on a splitter with pieces and no workers go through its pieces (never
    /// `run_workers`), with the one-piece bits.
    #[test]
    fn ema_cascades_use_the_pieces_of_a_splitter_without_workers() {
        let mut rng = Lcg(23);
        for x in series_zoo(20_000, 3) {
            for p in [2, 9, 400] {
                for m in [MaType::Dema, MaType::Tema, MaType::T3] {
                    let want = run(&Sequential, &x, m, p);
                    let split = PiecesOnly(CutAt(vec![rng.below(x.len()), 7000, 13_001]));
                    let got = run(&split, &x, m, p);
                    let lb = m.lookback(p);
                    assert_bits_eq(&got[lb..], &want[lb..], &format!("{m:?}({p}) in pieces"));
                }
            }
        }
    }

    #[test]
    fn ema_from_row_zero_is_ema_and_sma_is_the_moments_sma() {
        for x in series_zoo(3000, 3) {
            for p in [2, 14, 300] {
                let (mut a, mut b) = (vec![0.0; x.len()], vec![0.0; x.len()]);
                ema_from(&Sequential, &x, 0, p, &mut a);
                ema::ema(&Sequential, &x, p, &mut b);
                assert_bits_eq(&a[p - 1..], &b[p - 1..], "ema_from(0)");
            }
        }
    }

    #[test]
    fn window_sums_match_direct_sums_exactly_on_integers() {
        let mut rng = Lcg(5);
        let u: Vec<f64> = (0..3000).map(|_| rng.below(7) as f64).collect();
        for w in [1, 2, 5, 64, 999] {
            let mut out = vec![0.0; u.len()];
            let split = CutAt(random_cuts(&mut rng, u.len(), 16));
            window_sums(&split, u.len(), |i| u[i], w, &mut out);
            for t in w - 1..u.len() {
                assert_eq!(out[t], u[t + 1 - w..=t].iter().sum::<f64>(), "w={w} t={t}");
            }
        }
    }

    /// The module spec's window sums written out row by row (one chain per row, no sharing):
    /// the block-wise prefix and suffix chains must give these bits for every window and cut.
    #[test]
    fn window_sums_follow_the_spec_bit_for_bit() {
        let mut rng = Lcg(11);
        let u: Vec<f64> = (0..5000)
            .map(|i| rng.uniform() * 10f64.powi(i % 7 - 3))
            .collect();
        for w in [1, 2, 3, 7, 30, 64, 255, 256, 257, 1500] {
            let mut want = vec![0.0; u.len()];
            for (t, v) in want.iter_mut().enumerate().skip(w - 1) {
                let (bs, o) = (t - t % w, t % w);
                let mut pre = 0.0f64;
                for &x in &u[bs..=t] {
                    pre = pre + x;
                }
                *v = if o == w - 1 {
                    pre
                } else {
                    let mut suf = 0.0f64;
                    for &x in u[bs - w + o + 1..bs].iter().rev() {
                        suf = x + suf;
                    }
                    suf + pre
                };
            }
            for _ in 0..3 {
                let mut got = vec![0.0; u.len()];
                let split = CutAt(random_cuts(&mut rng, u.len(), 12));
                window_sums(&split, u.len(), |i| u[i], w, &mut got);
                assert_bits_eq(
                    &got[w - 1..],
                    &want[w - 1..],
                    &format!("window sums, w={w}"),
                );
            }
        }
    }

    #[test]
    fn kama_flat_windows_use_an_efficiency_of_one() {
        // A flat window has path length exactly 0: TA-Lib's tests give er = 1, the fastest
        // constant, as does a path under 1e-8 or one no longer than the net change.
        let fastest = kama_sc(0.0, 0.0);
        assert!((fastest - 4.0 / 9.0).abs() < 1e-15);
        assert_eq!(kama_sc(5e-9, 0.0), fastest);
        assert_eq!(kama_sc(2.0, 2.0), fastest);
        assert!(
            (kama_sc(2.0, -1.0) - (0.5f64 * (2.0 / 3.0 - 2.0 / 31.0) + 2.0 / 31.0).powi(2)).abs()
                < 1e-15
        );
        let mut x = vec![5.0; 40];
        x[35] = 6.0;
        let mut out = vec![0.0; 40];
        kama(&Sequential, &x, 10, &mut out);
        assert!(out[10..35].iter().all(|&v| (v - 5.0).abs() < 1e-14));
        assert!((out[35] - (5.0 + fastest)).abs() < 1e-14, "{}", out[35]);
    }

    /// The spec's binary segment sum of `u[e + 1 - p ..= e]`, written out recursively: segments
    /// for the set bits of `p`, lowest first and most recent first, each a balanced tree.
    fn segment_sum_spec(u: &[f64], e: usize, p: usize) -> f64 {
        fn tree(u: &[f64], i: usize, m: usize) -> f64 {
            if m == 1 {
                u[i]
            } else {
                tree(u, i - m / 2, m / 2) + tree(u, i, m / 2)
            }
        }
        let (mut sum, mut covered) = (None, 0);
        for k in 0..usize::BITS {
            let width = 1usize << k;
            if p & width != 0 {
                let seg = tree(u, e - covered, width);
                sum = Some(sum.map_or(seg, |s: f64| s + seg));
                covered += width;
            }
        }
        sum.unwrap()
    }

    /// KAMA's fused path lengths (periods up to `KAMA_FUSED_MAX`) are the spec's segment sums,
    /// bit for bit, with the rows cut into pieces; longer periods use the stored window sums.
    #[test]
    fn kama_path_lengths_follow_the_spec() {
        for mut x in series_zoo(5000, 7) {
            x[2100] = f64::NAN;
            // Odd and even periods, one to eight set bits, and either side of the fused limit.
            for p in [
                2,
                3,
                5,
                7,
                30,
                100,
                127,
                170,
                255,
                KAMA_FUSED_MAX,
                KAMA_FUSED_MAX + 1,
            ] {
                let split = CutAt(vec![1500, 3333]);
                let fused = run(&split, &x, MaType::Kama, p);
                let g = kama_scale(p);
                let u: Vec<f64> = x.windows(2).map(|w| (w[1] * g - w[0] * g).abs()).collect();
                let path: Vec<f64> = if p <= KAMA_FUSED_MAX {
                    (p..x.len())
                        .map(|t| segment_sum_spec(&u, t - 1, p))
                        .collect()
                } else {
                    let mut sums = vec![0.0; u.len()];
                    window_sums(&Sequential, u.len(), |i| u[i], p, &mut sums);
                    sums[p - 1..].to_vec()
                };
                let mut stored = vec![0.0; x.len()];
                kama_scan(&Sequential, &x, p, g, &mut stored, |t0, s, _| {
                    s.copy_from_slice(&path[t0 - p..t0 - p + s.len()])
                });
                assert_bits_eq(&fused[p..], &stored[p..], &format!("kama({p})"));
            }
        }
    }

    #[test]
    fn lookbacks_and_isqrt() {
        assert_eq!(MaType::Hma.lookback(20), 22);
        assert_eq!(MaType::Zlema.lookback(30), 43);
        assert_eq!(MaType::T3.lookback(5), 24);
        assert_eq!(MaType::Kama.lookback(30), 30);
        assert_eq!(MaType::Dema.lookback(1), 0);
        for n in 1..20000 {
            let r = isqrt(n);
            assert!(r * r <= n && (r + 1) * (r + 1) > n);
        }
        assert_eq!(MaType::from_code(11, MaType::Sma), Some(MaType::Sma));
        assert_eq!(MaType::from_code(7, MaType::Sma), None);
        assert_eq!(MaType::from_code(14, MaType::Sma), None);
    }

    #[test]
    fn mavp_picks_each_rows_period_and_splits() {
        let mut rng = Lcg(9);
        let x = &finite_zoo(3000, 8)[0];
        let periods: Vec<f64> = (0..x.len())
            .map(|_| rng.below(40) as f64 - 3.5 + f64::from(rng.below(2) as u8) * 0.75)
            .collect();
        for m in [
            MaType::Sma,
            MaType::Ema,
            MaType::Kama,
            MaType::Hma,
            MaType::T3,
        ] {
            let (lo, hi) = (2, 25);
            let start = m.lookback(hi);
            let mut whole = vec![0.0; x.len()];
            mavp(&Sequential, x, &periods, (lo, hi), m, &mut whole);
            for t in (start..x.len()).step_by(97) {
                let q = mavp_period(periods[t], lo, hi);
                let origin = start - m.lookback(q);
                let want = run(&Sequential, &x[origin..], m, q);
                assert_eq!(
                    whole[t].to_bits(),
                    want[t - origin].to_bits(),
                    "{m:?} t={t}"
                );
            }
            let mut cut = vec![0.0; x.len()];
            let split = CutAt(random_cuts(&mut rng, x.len(), 16));
            mavp(&split, x, &periods, (lo, hi), m, &mut cut);
            assert_bits_eq(&cut[start..], &whole[start..], "mavp cuts");
        }
        assert_eq!(mavp_period(f64::NAN, 2, 30), 2);
        assert_eq!(mavp_period(-5.0, 2, 30), 2);
        assert_eq!(mavp_period(7.9, 2, 30), 7);
        assert_eq!(mavp_period(f64::INFINITY, 2, 30), 30);
    }

    #[test]
    fn bollinger_ma_with_sma_and_equal_widths_is_bollinger() {
        for x in series_zoo(2000, 17) {
            for p in [2, 20, 77] {
                let mut a = [vec![0.0; x.len()], vec![0.0; x.len()], vec![0.0; x.len()]];
                let mut b = a.clone();
                let [am, au, al] = &mut a;
                moments::bollinger(&Sequential, &x, p, 1.5, am, au, al);
                let [bm, bu, bl] = &mut b;
                bollinger_ma(&Sequential, &x, p, (1.5, 1.5), MaType::Sma, bm, bu, bl);
                for j in 0..3 {
                    assert_bits_eq(&b[j][p - 1..], &a[j][p - 1..], "bollinger_ma(sma)");
                }
            }
        }
    }
}
