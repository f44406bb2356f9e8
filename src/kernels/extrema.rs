//! Rolling maximum / minimum on the global block grid (van Herk / Gil–Werman) and the stochastic
//! oscillator built on them.
//!
//! # Spec
//! Blocks of `w` rows aligned to row 0. For row `t` at offset `o` in block `b`: if `o = w - 1` the
//! window is block `b` and the result is the left-to-right prefix fold of block `b`; otherwise it is
//! `pick(suffix_{b-1}[o + 1], prefix_b[o])`, where the prefix folds `pick(acc, x)` left to right and
//! the suffix folds `pick(x, acc)` right to left. `pick` propagates NaN (a window holding a NaN gives
//! NaN, unlike `f64::max`) and returns its second operand on ties. Max and min are exact, so any
//! fold order would give the same value; the order is fixed anyway so ±0.0 ties are reproducible.
//!
//! STOCH (TA-Lib, SMA smoothing): `fastk_t = (close_t - LL_t) / ((HH_t - LL_t) / 100)`, or `0.0`
//! when `HH_t - LL_t == 0`, with `HH`/`LL` the rolling max of `high` / min of `low` over
//! `fastk_period`. `slowk` is `moments::sma(slowk_period)` of the fastk rows (its grid origin is the
//! first fastk row, `fastk_period - 1`), `slowd` is `sma(slowd_period)` of the slowk rows (origin
//! `fastk_period + slowk_period - 2`). Lookback `(fastk-1) + (slowk-1) + (slowd-1)`.

use super::moments::sma;
use super::split::Splitter;

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

/// Writes the rolling fold of rows `[lo, hi)` into `out` (`out[i]` is row `lo + i`); `lo >= w - 1`.
fn extrema_rows(
    x: &[f64],
    w: usize,
    lo: usize,
    hi: usize,
    pick: impl Fn(f64, f64) -> f64 + Copy + Sync + Send,
    out: &mut [f64],
) {
    if lo >= hi {
        return;
    }
    let mut pre = vec![0.0; w];
    let mut suf = vec![0.0; w];
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
            out[b_start + o - lo] = if o == w - 1 {
                pre[o]
            } else {
                pick(suf[o + 1], pre[o])
            };
        }
    }
}

fn run_extrema<S: Splitter>(
    split: &S,
    x: &[f64],
    w: usize,
    pick: impl Fn(f64, f64) -> f64 + Copy + Sync + Send,
    out: &mut [f64],
) {
    let n = x.len();
    if w == 0 || n < w {
        return;
    }
    split.for_each_piece(w - 1, [&mut out[w - 1..n]], |lo, [piece]| {
        extrema_rows(x, w, lo, lo + piece.len(), pick, piece)
    });
}

/// Rolling maximum (NaN-propagating); rows `< w - 1` untouched.
pub fn rolling_max<S: Splitter>(split: &S, x: &[f64], w: usize, out: &mut [f64]) {
    run_extrema(split, x, w, nan_max, out)
}

/// Rolling minimum (NaN-propagating); rows `< w - 1` untouched.
pub fn rolling_min<S: Splitter>(split: &S, x: &[f64], w: usize, out: &mut [f64]) {
    run_extrema(split, x, w, nan_min, out)
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
    let n = high.len();
    if fk == 0 || n < fk {
        return;
    }
    split.for_each_piece(fk - 1, [&mut out[fk - 1..n]], |lo, [piece]| {
        let hi = lo + piece.len();
        let mut hh = vec![0.0; piece.len()];
        extrema_rows(high, fk, lo, hi, nan_max, &mut hh);
        extrema_rows(low, fk, lo, hi, nan_min, piece);
        for (i, v) in piece.iter_mut().enumerate() {
            let ll = *v;
            let diff = (hh[i] - ll) / 100.0;
            *v = if diff != 0.0 {
                (close[lo + i] - ll) / diff
            } else {
                0.0
            };
        }
    });
}

/// STOCH(fastk, slowk, slowd) with SMA smoothing; rows before the lookback are untouched.
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
    if n < fk {
        return;
    }
    let mut fast = vec![0.0; n];
    fastk(split, high, low, close, fk, &mut fast);
    let k_origin = fk - 1;
    sma(split, &fast[k_origin..], sk, &mut slowk[k_origin..]);
    let d_origin = k_origin + sk - 1;
    if n > d_origin {
        sma(split, &slowk[d_origin..], sd, &mut slowd[d_origin..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::reference as naive;
    use crate::kernels::split::{CutAt, Sequential};
    use crate::kernels::testing::{assert_bits_eq, assert_close, random_cuts, series_zoo, Lcg};

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

    #[test]
    fn stoch_is_split_invariant() {
        let data = ohlc(4000, 9);
        let mut rng = Lcg(5);
        for p in [(5, 3, 3), (21, 7, 4)] {
            let whole = run_stoch(&Sequential, &data, p);
            for _ in 0..8 {
                let got = run_stoch(&CutAt(random_cuts(&mut rng, 4000, 16)), &data, p);
                assert_bits_eq(&got[0], &whole[0], "slowk");
                assert_bits_eq(&got[1], &whole[1], "slowd");
            }
        }
    }
}
