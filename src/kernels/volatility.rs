//! Band, candle and volatility indicators composed from the families: ACCBANDS, KC, HA, ADR, CVI,
//! MASSI, RVI. Each stage is a family kernel run through the splitter over the whole series
//! (elementwise maps, windowed moments, fixed-block scans); a stage whose output the next one reads
//! at other rows is written to a full-length temporary first, and a derived series read at the same
//! rows (the ranges, ACCBANDS' bands) is computed where it is read. Every stage is
//! split-invariant, so the composition is.
//!
//! # Spec (TA-Lib 0.8.1's values; IEEE operations as written, no FMA)
//! With `hl_t = h_t - l_t`, `tp_t = ((h_t + l_t) + c_t) / 3.0` (TYPPRICE), `tr_t` the true range
//! of [`wilder::true_range`] (`t >= 1`), `seed_mean` the left-to-right mean of
//! [`ema::seed_mean_of`], and scans as in [`super::scan`]:
//! * ACCBANDS(n): `s = h_t + l_t`; when `s != 0.0`, `r = (4.0 * (h_t - l_t)) / s` (from `h/8`
//!   and `l/8` when `s` or `4(h - l)` overflows for finite prices: `r` is scale-free),
//!   `u_t = h_t * (1.0 + r)`, `d_t = l_t * (1.0 - r)`, else `u_t = h_t`, `d_t = l_t`.
//!   `upper = sma_n(u)`, `middle = sma_n(c)`, `lower = sma_n(d)` ([`moments::sma`]); lookback
//!   `n - 1`. (TA-Lib tests `|s| < 1e-8` instead of `s == 0`.)
//! * KC(n, m, k): seed row `p = max(n - 1, m)`; one two-channel scan seeded at `p`:
//!   the EMA of `tp` (`a = 1 - 2/(n+1)`, drive `(2/(n+1))·tp_t`, seed `seed_mean(tp[p+1-n ..= p])`)
//!   and Wilder's ATR (`a = (m-1)/m`, drive `tr_t·(1/m)`, seed `seed_mean(tr[p+1-m ..= p])`);
//!   `middle = ema`, `d = atr * k`, `upper = middle + d`, `lower = middle - d`. Both legs are
//!   seeded at the later of their two lookbacks, as TA-Lib enters each at the common start.
//! * HA: `hc_t = (((o_t + h_t) + l_t) + c_t) / 4.0` (the sum of the quarters when that overflows
//!   for finite prices); `ho` is the scan with `a = 0.5`, seed `(o_0 + c_0) / 2.0` at row 0 (the
//!   sum of the halves when that overflows) and drive `0.5 * hc_{t-1}` (per step the bits of TA-Lib's
//!   `(ho + hc) / 2.0`; the block fix-up rounds once more, ≈1e-16 relative);
//!   `high = nan_max(hc, nan_max(ho, h))`, `low = nan_min(hc, nan_min(ho, l))` (NaN-propagating;
//!   on ties the result is the value TA-Lib's comparisons keep); lookback 0.
//! * ADR(n) = `sma_n(hl)`; lookback `n - 1`.
//! * CVI(n, r): `e` = EMA(n) of `hl` (seed row `n - 1`, seed `seed_mean(hl[0..n))`); row
//!   `t >= n - 1 + r`: `100.0 * ((e_t - e_{t-r}) / e_{t-r})`, or `0.0` when `e_{t-r} == 0.0`.
//! * MASSI(f, s): `e1` = EMA(f) of `hl` (seed row `f - 1`); `e2` = EMA(f) of `e1` with seed row
//!   `q = 2(f - 1)` and seed `seed_mean(e1[f-1 ..= q])`; `ratio_t = e1_t / e2_t`, or `1.0` when
//!   `e2_t == 0.0`, for `t >= q`; output = the window sum of `s` ratios ([`moments::rolling_sum`] on
//!   the series `ratio[q..]`); lookback `q + s - 1`.
//! * RVI(n, m): `sd_t` = population standard deviation of `x` over `m` rows
//!   ([`moments::rolling_std`], `ddof = 0`, `t >= m - 1`); `delta_t = x_t - x_{t-1}`;
//!   `up_t = sd_t` when `delta_t > 0`, `dn_t = sd_t` when `delta_t < 0`, else `0.0`; both NaN when
//!   `delta_t` is NaN (a NaN has no direction; TA-Lib's comparisons would read it as a tie).
//!   A two-channel Wilder scan (`a = (n-1)/n`, drive `v·(1/n)`) seeded at `p = m + n - 2` with
//!   `seed_mean` of `up` and `dn` over rows `m-1 ..= p`; output `50.0` when `u + d == 0.0`, else
//!   `100.0 * (u / (u + d))`; lookback `p`.

use super::elementwise::{map_rows, Op};
use super::ema::{seed_mean, seed_mean_of, smoothing};
use super::extrema::{nan_max, nan_min, select};
use super::ma;
use super::moments;
use super::scan::{fill_rows, run_scan, write_rows, Recurrence};
use super::split::Splitter;
use super::wilder::true_range;

/// Wilder's decay and drive coefficient for `period`: `((n-1)/n, 1/n)`.
fn wilder(period: usize) -> (f64, f64) {
    let nf = period as f64;
    ((period - 1) as f64 / nf, 1.0 / nf)
}

/// A one-channel scan of `rec` driven by `coef * v(t)`, written to `out` from the seed row on.
fn scan_into<S: Splitter>(
    split: &S,
    n: usize,
    rec: &Recurrence<1>,
    coef: f64,
    v: impl Fn(usize) -> f64 + Sync + Send,
    out: &mut [f64],
) {
    let drive = |start: usize, b: &mut [[f64; 1]]| fill_rows(start, b, |t| [coef * v(t)]);
    run_scan(split, n, rec, drive, [out], |o, i, t, ys, st| {
        write_rows(o[0], i, t, ys, st, |_, y| y[0])
    });
}

/// The EMA(period) of the range `hl_t = h_t - l_t` (seed row `period - 1`) into a full-length
/// vector; the ranges are computed where the scan reads them, never stored.
fn range_ema<S: Splitter>(split: &S, h: &[f64], l: &[f64], period: usize) -> Vec<f64> {
    let mut e = vec![0.0; h.len()];
    let hl = |t: usize| h[t] - l[t];
    let (rec, k) = ma::ema_from_recurrence(0, period, hl);
    scan_into(split, h.len(), &rec, k, hl, &mut e);
    e
}

/// ACCBANDS' band values `[u_t, d_t]` of one row's high and low (module spec).
#[inline(always)]
fn accbands_band(ht: f64, lt: f64) -> [f64; 2] {
    // `r` is scale-free: finite prices whose sum or difference overflows are divided by 8
    // (exact) first, so it is never a wrong 0; any other row takes the unscaled bits.
    let unscaled = (ht + lt).is_finite() && (4.0 * (ht - lt)).is_finite();
    let q = select(unscaled || !(ht.is_finite() && lt.is_finite()), 1.0, 0.125);
    let (hq, lq) = (ht * q, lt * q);
    let s = hq + lq;
    if s != 0.0 {
        let r = (4.0 * (hq - lq)) / s;
        [ht * (1.0 + r), lt * (1.0 - r)]
    } else {
        [ht, lt]
    }
}

/// ACCBANDS(period); rows `< period - 1` untouched.
#[allow(clippy::too_many_arguments)]
pub fn accbands<S: Splitter>(
    split: &S,
    h: &[f64],
    l: &[f64],
    c: &[f64],
    period: usize,
    upper: &mut [f64],
    middle: &mut [f64],
    lower: &mut [f64],
) {
    let n = h.len();
    if period == 0 || n < period {
        return;
    }
    // Each band's SMA computes its rows' values where it reads them: no temporaries.
    let band = |t: usize| accbands_band(h[t], l[t]);
    moments::sma_of(split, n, period, |t| band(t)[0], upper);
    moments::sma(split, c, period, middle);
    moments::sma_of(split, n, period, |t| band(t)[1], lower);
}

/// The seed row of KC: the later of its EMA's and its ATR's lookbacks.
pub fn kc_seed_row(period: usize, atr_period: usize) -> usize {
    (period - 1).max(atr_period)
}

/// KC's two-channel (EMA of the typical price, ATR) recurrence and drive coefficients `[k, 1/n]`
/// (`kc_seed_row < h.len()`); the GPU pipeline builds its stage from it.
pub fn kc_recurrence(
    (h, l, c): (&[f64], &[f64], &[f64]),
    period: usize,
    atr_period: usize,
) -> (Recurrence<2>, [f64; 2]) {
    let p = kc_seed_row(period, atr_period);
    let tp = |t: usize| Op::TypicalPrice.at(t, &[h, l, c, &[]]);
    let k = smoothing(period);
    let (a, inv) = wilder(atr_period);
    let rec = Recurrence {
        decay: [1.0 - k, a],
        seed_row: p,
        seed: [
            seed_mean_of(period, |i| tp(p + 1 - period + i)),
            seed_mean_of(atr_period, |i| true_range(h, l, c, p + 1 - atr_period + i)),
        ],
    };
    (rec, [k, inv])
}

/// KC(period, atr_period, multiplier); rows `< kc_seed_row` untouched.
#[allow(clippy::too_many_arguments)]
pub fn kc<S: Splitter>(
    split: &S,
    h: &[f64],
    l: &[f64],
    c: &[f64],
    (period, atr_period, mult): (usize, usize, f64),
    upper: &mut [f64],
    middle: &mut [f64],
    lower: &mut [f64],
) {
    let n = h.len();
    if period == 0 || atr_period == 0 {
        return;
    }
    let p = kc_seed_row(period, atr_period);
    if n <= p {
        return;
    }
    let tp = |t: usize| Op::TypicalPrice.at(t, &[h, l, c, &[]]);
    let (rec, [k, inv]) = kc_recurrence((h, l, c), period, atr_period);
    let drive = |start: usize, b: &mut [[f64; 2]]| {
        fill_rows(start, b, |t| [k * tp(t), true_range(h, l, c, t) * inv])
    };
    run_scan(
        split,
        n,
        &rec,
        drive,
        [upper, middle, lower],
        |o, i, t, ys, st| {
            write_rows(o[0], i, t, ys, st, |_, y| y[0] + y[1] * mult);
            write_rows(o[1], i, t, ys, st, |_, y| y[0]);
            write_rows(o[2], i, t, ys, st, |_, y| y[0] - y[1] * mult);
        },
    );
}

/// Heikin-Ashi candles; every row is written.
pub fn ha<S: Splitter>(split: &S, [o, h, l, c]: [&[f64]; 4], [ho, hh, hl, hc]: [&mut [f64]; 4]) {
    let n = o.len();
    if n == 0 {
        return;
    }
    // Finite prices whose sum overflows are quartered (halved) first: exact, so the mean is never
    // a wrong ±inf; any other row takes the bits of the plain sum.
    let close = |t: usize| {
        let plain = (((o[t] + h[t]) + l[t]) + c[t]) / 4.0;
        let quarters = ((o[t] * 0.25 + h[t] * 0.25) + l[t] * 0.25) + c[t] * 0.25;
        select(plain.is_infinite() && quarters.is_finite(), quarters, plain)
    };
    let seed = {
        let plain = (o[0] + c[0]) / 2.0;
        let halves = o[0] * 0.5 + c[0] * 0.5;
        select(plain.is_infinite() && halves.is_finite(), halves, plain)
    };
    let rec = Recurrence {
        decay: [0.5],
        seed_row: 0,
        seed: [seed],
    };
    let drive = |start: usize, b: &mut [[f64; 1]]| fill_rows(start, b, |t| [0.5 * close(t - 1)]);
    run_scan(
        split,
        n,
        &rec,
        drive,
        [ho, hh, hl, hc],
        |out, i, t, ys, st| {
            write_rows(out[0], i, t, ys, st, |_, y| y[0]);
            write_rows(out[1], i, t, ys, st, |t, y| {
                nan_max(close(t), nan_max(y[0], h[t]))
            });
            write_rows(out[2], i, t, ys, st, |t, y| {
                nan_min(close(t), nan_min(y[0], l[t]))
            });
            write_rows(out[3], i, t, ys, st, |t, _| close(t));
        },
    );
}

/// ADR(period) = SMA of the high-low range; rows `< period - 1` untouched.
pub fn adr<S: Splitter>(split: &S, h: &[f64], l: &[f64], period: usize, out: &mut [f64]) {
    if period == 0 || h.len() < period {
        return;
    }
    let fill = |t0: usize, xs: &mut [f64]| {
        let rows = t0..t0 + xs.len();
        for ((v, h), l) in xs.iter_mut().zip(&h[rows.clone()]).zip(&l[rows]) {
            *v = h - l;
        }
    };
    moments::sma_of_filled(split, h.len(), period, fill, out);
}

/// CVI(period, roc_period); rows `< period - 1 + roc_period` untouched.
pub fn cvi<S: Splitter>(
    split: &S,
    h: &[f64],
    l: &[f64],
    (period, roc): (usize, usize),
    out: &mut [f64],
) {
    if period == 0 || roc == 0 || h.len() < period + roc {
        return;
    }
    let e = range_ema(split, h, l, period);
    map_rows(split, period - 1 + roc, [&e], [out], |t, [e]| {
        let lag = e[t - roc];
        [if lag != 0.0 {
            100.0 * ((e[t] - lag) / lag)
        } else {
            0.0
        }]
    });
}

/// MASSI(fast, slow); rows `< 2(fast - 1) + slow - 1` untouched.
pub fn massi<S: Splitter>(
    split: &S,
    h: &[f64],
    l: &[f64],
    (fast, slow): (usize, usize),
    out: &mut [f64],
) {
    let n = h.len();
    if fast == 0 || slow == 0 {
        return;
    }
    let q = 2 * (fast - 1);
    if n < q + slow {
        return;
    }
    let e1 = range_ema(split, h, l, fast);
    let k = smoothing(fast);
    let rec = Recurrence {
        decay: [1.0 - k],
        seed_row: q,
        seed: [seed_mean(&e1[fast - 1..=q])],
    };
    let mut ratio = vec![0.0; n];
    let drive = |start: usize, b: &mut [[f64; 1]]| fill_rows(start, b, |t| [k * e1[t]]);
    run_scan(split, n, &rec, drive, [&mut ratio], |o, i, t, ys, st| {
        write_rows(o[0], i, t, ys, st, |t, y| {
            if y[0] == 0.0 {
                1.0
            } else {
                e1[t] / y[0]
            }
        })
    });
    moments::rolling_sum(split, &ratio[q..], slow, &mut out[q..n]);
}

/// RVI(period, std_period); rows `< std_period + period - 2` untouched.
pub fn rvi<S: Splitter>(
    split: &S,
    x: &[f64],
    (period, std_period): (usize, usize),
    out: &mut [f64],
) {
    let n = x.len();
    if period == 0 || std_period < 2 {
        return;
    }
    let p = std_period + period - 2;
    if n <= p {
        return;
    }
    let mut sd = vec![0.0; n];
    moments::rolling_std(split, x, std_period, 0, &mut sd);
    let sd = &sd;
    let up_dn = |t: usize| {
        let delta = x[t] - x[t - 1];
        let s = sd[t];
        let nan = delta.is_nan();
        [
            select(nan, f64::NAN, select(delta > 0.0, s, 0.0)),
            select(nan, f64::NAN, select(delta < 0.0, s, 0.0)),
        ]
    };
    let (a, inv) = wilder(period);
    let first = std_period - 1;
    let rec = Recurrence {
        decay: [a, a],
        seed_row: p,
        seed: [
            seed_mean_of(period, |i| up_dn(first + i)[0]),
            seed_mean_of(period, |i| up_dn(first + i)[1]),
        ],
    };
    let drive = |start: usize, b: &mut [[f64; 2]]| {
        fill_rows(start, b, |t| {
            let [u, d] = up_dn(t);
            [u * inv, d * inv]
        })
    };
    run_scan(split, n, &rec, drive, [out], |o, i, t, ys, st| {
        write_rows(o[0], i, t, ys, st, |_, &[u, d]| {
            let total = u + d;
            if total == 0.0 {
                50.0
            } else {
                100.0 * (u / total)
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

    /// Open, high, low, close from a zoo series (high >= max(open, close), low <= their min).
    fn ohlc(n: usize, seed: u64) -> Vec<[Vec<f64>; 4]> {
        let mut rng = Lcg(seed);
        series_zoo(n, seed)
            .into_iter()
            .map(|c| {
                let o: Vec<f64> = c
                    .iter()
                    .map(|v| v + v.abs() * 1e-3 * (rng.uniform() - 0.5))
                    .collect();
                let h: Vec<f64> = c
                    .iter()
                    .zip(&o)
                    .map(|(c, o)| c.max(*o) + c.abs() * 1e-3 * rng.uniform())
                    .collect();
                let l: Vec<f64> = c
                    .iter()
                    .zip(&o)
                    .map(|(c, o)| c.min(*o) - c.abs() * 1e-3 * rng.uniform())
                    .collect();
                [o, h, l, c]
            })
            .collect()
    }

    fn run<const K: usize>(n: usize, f: impl Fn(&mut [&mut [f64]; K])) -> [Vec<f64>; K] {
        let mut outs: [Vec<f64>; K] = std::array::from_fn(|_| vec![-7.0; n]);
        {
            let mut refs: [&mut [f64]; K] = outs.each_mut().map(|v| v.as_mut_slice());
            f(&mut refs);
        }
        outs
    }

    fn check_cuts<const K: usize>(
        whole: &[Vec<f64>; K],
        from: usize,
        rng: &mut Lcg,
        f: impl Fn(&CutAt, &mut [&mut [f64]; K]),
    ) {
        let n = whole[0].len();
        for _ in 0..4 {
            let cuts = CutAt(random_cuts(rng, n, 16));
            let got = run::<K>(n, |o| f(&cuts, o));
            for k in 0..K {
                assert_bits_eq(&got[k][from..], &whole[k][from..], "cuts");
            }
        }
    }

    fn naive_ema_from(x: &[f64], period: usize, seed_row: usize, seed: f64) -> Vec<f64> {
        let k = 2.0 / (period as f64 + 1.0);
        naive::ema_seeded(x, period, k, seed_row, seed)
    }

    fn mean(v: &[f64]) -> f64 {
        v.iter().fold(0.0, |s, x| s + x) / v.len() as f64
    }

    #[test]
    fn accbands_matches_talib_loop_and_splits() {
        let mut rng = Lcg(31);
        for [_, h, l, c] in ohlc(3000, 2) {
            for p in [2, 20, 64] {
                let whole = run::<3>(h.len(), |[u, m, d]| {
                    accbands(&Sequential, &h, &l, &c, p, u, m, d)
                });
                let (mut ui, mut di) = (vec![0.0; h.len()], vec![0.0; h.len()]);
                for t in 0..h.len() {
                    let s = h[t] + l[t];
                    let r = 4.0 * (h[t] - l[t]) / s;
                    ui[t] = h[t] * (1.0 + r);
                    di[t] = l[t] * (1.0 - r);
                }
                let lb = p - 1;
                assert_close(
                    &whole[0][lb..],
                    &naive::rolling_mean(&ui, p)[lb..],
                    1e-11,
                    "up",
                );
                assert_close(
                    &whole[1][lb..],
                    &naive::rolling_mean(&c, p)[lb..],
                    1e-11,
                    "mid",
                );
                assert_close(
                    &whole[2][lb..],
                    &naive::rolling_mean(&di, p)[lb..],
                    1e-11,
                    "lo",
                );
                check_cuts(&whole, lb, &mut rng, |s, [u, m, d]| {
                    accbands(s, &h, &l, &c, p, u, m, d)
                });
            }
        }
        // h + l == 0: the bands take the raw high and low.
        let (h, l, c) = ([1.0, 2.0], [-1.0, -2.0], [0.0, 0.0]);
        let out = run::<3>(2, |[u, m, d]| accbands(&Sequential, &h, &l, &c, 2, u, m, d));
        assert_eq!((out[0][1], out[1][1], out[2][1]), (1.5, 0.0, -1.5));
    }

    #[test]
    fn kc_matches_talib_loop_and_splits() {
        let mut rng = Lcg(32);
        for [_, h, l, c] in ohlc(3000, 3) {
            for (p, m, k) in [(20, 10, 2.0), (5, 30, 1.5), (2, 1, 0.0), (40, 40, 3.0)] {
                let n = h.len();
                let whole = run::<3>(n, |[u, mid, d]| {
                    kc(&Sequential, &h, &l, &c, (p, m, k), u, mid, d)
                });
                let s = kc_seed_row(p, m);
                let tp: Vec<f64> = (0..n).map(|t| (h[t] + l[t] + c[t]) / 3.0).collect();
                let ema = naive_ema_from(&tp, p, s, mean(&tp[s + 1 - p..=s]));
                let tr = naive::true_range(&h, &l, &c);
                let mut atr = vec![f64::NAN; n];
                atr[s] = mean(&tr[s + 1 - m..=s]);
                for t in s + 1..n {
                    atr[t] = (atr[t - 1] * (m - 1) as f64 + tr[t]) / m as f64;
                }
                let up: Vec<f64> = (0..n).map(|t| ema[t] + atr[t] * k).collect();
                let lo: Vec<f64> = (0..n).map(|t| ema[t] - atr[t] * k).collect();
                assert_close(&whole[0][s..], &up[s..], 1e-10, "kc upper");
                assert_close(&whole[1][s..], &ema[s..], 1e-10, "kc middle");
                assert_close(&whole[2][s..], &lo[s..], 1e-10, "kc lower");
                check_cuts(&whole, s, &mut rng, |sp, [u, mid, d]| {
                    kc(sp, &h, &l, &c, (p, m, k), u, mid, d)
                });
            }
        }
    }

    #[test]
    fn ha_matches_talib_loop_and_splits() {
        let mut rng = Lcg(33);
        for [o, h, l, c] in ohlc(5000, 4) {
            let n = o.len();
            let whole = run::<4>(n, |[a, b, cc, d]| {
                ha(&Sequential, [&o, &h, &l, &c], [a, b, cc, d])
            });
            let (mut ho, mut hc) = ((o[0] + c[0]) / 2.0, (o[0] + h[0] + l[0] + c[0]) / 4.0);
            for t in 0..n {
                if t > 0 {
                    ho = (ho + hc) / 2.0;
                    hc = (o[t] + h[t] + l[t] + c[t]) / 4.0;
                }
                let hh = h[t].max(ho).max(hc);
                let ll = l[t].min(ho).min(hc);
                assert_eq!(whole[3][t], hc, "ha close row {t}");
                assert!(
                    (whole[0][t] - ho).abs() <= 1e-14 * ho.abs(),
                    "ha open row {t}"
                );
                assert!(
                    (whole[1][t] - hh).abs() <= 1e-14 * hh.abs(),
                    "ha high row {t}"
                );
                assert!(
                    (whole[2][t] - ll).abs() <= 1e-14 * ll.abs(),
                    "ha low row {t}"
                );
            }
            check_cuts(&whole, 0, &mut rng, |s, [a, b, cc, d]| {
                ha(s, [&o, &h, &l, &c], [a, b, cc, d])
            });
        }
    }

    #[test]
    fn adr_cvi_massi_match_talib_loops_and_split() {
        let mut rng = Lcg(34);
        for [_, h, l, _] in ohlc(3000, 5) {
            let n = h.len();
            let hl: Vec<f64> = (0..n).map(|t| h[t] - l[t]).collect();
            for p in [1, 2, 14, 100] {
                let [got] = run::<1>(n, |[o]| adr(&Sequential, &h, &l, p, o));
                assert_close(
                    &got[p - 1..],
                    &naive::rolling_mean(&hl, p)[p - 1..],
                    1e-11,
                    "adr",
                );
                check_cuts(&[got], p - 1, &mut rng, |s, [o]| adr(s, &h, &l, p, o));
            }
            for (p, r) in [(10, 10), (2, 1), (30, 7)] {
                let [got] = run::<1>(n, |[o]| cvi(&Sequential, &h, &l, (p, r), o));
                let e = naive_ema_from(&hl, p, p - 1, mean(&hl[..p]));
                let lb = p - 1 + r;
                let want: Vec<f64> = (0..n)
                    .map(|t| {
                        if t < lb {
                            f64::NAN
                        } else {
                            100.0 * ((e[t] - e[t - r]) / e[t - r])
                        }
                    })
                    .collect();
                assert_close(&got[lb..], &want[lb..], 1e-8, "cvi");
                check_cuts(&[got], lb, &mut rng, |s, [o]| cvi(s, &h, &l, (p, r), o));
            }
            for (f, sl) in [(9, 25), (2, 2), (5, 40)] {
                let [got] = run::<1>(n, |[o]| massi(&Sequential, &h, &l, (f, sl), o));
                let q = 2 * (f - 1);
                let e1 = naive_ema_from(&hl, f, f - 1, mean(&hl[..f]));
                let e2 = naive_ema_from(&e1, f, q, mean(&e1[f - 1..=q]));
                let ratio: Vec<f64> = (0..n).map(|t| e1[t] / e2[t]).collect();
                let lb = q + sl - 1;
                let want: Vec<f64> = (0..n)
                    .map(|t| {
                        if t < lb {
                            f64::NAN
                        } else {
                            ratio[t + 1 - sl..=t].iter().sum()
                        }
                    })
                    .collect();
                assert_close(&got[lb..], &want[lb..], 1e-10, "massi");
                check_cuts(&[got], lb, &mut rng, |s, [o]| massi(s, &h, &l, (f, sl), o));
            }
        }
        // A flat market: CVI's base is 0 (0.0), MASSI's ratios are 1 (the sum is the window).
        let (h, l) = ([5.0; 40], [5.0; 40]);
        let [c] = run::<1>(40, |[o]| cvi(&Sequential, &h, &l, (3, 2), o));
        assert!(c[4..].iter().all(|v| *v == 0.0));
        let [m] = run::<1>(40, |[o]| massi(&Sequential, &h, &l, (3, 6), o));
        assert!(m[9..].iter().all(|v| *v == 6.0));
    }

    #[test]
    fn rvi_matches_talib_loop_and_splits() {
        let mut rng = Lcg(35);
        for [_, _, _, x] in ohlc(3000, 6) {
            let n = x.len();
            for (p, m) in [(14, 10), (1, 2), (5, 30)] {
                let [got] = run::<1>(n, |[o]| rvi(&Sequential, &x, (p, m), o));
                let sd = naive::rolling_std(&x, m, 0);
                let lb = m + p - 2;
                let (mut u, mut d) = (0.0, 0.0);
                for t in m - 1..=lb {
                    let delta = x[t] - x[t - 1];
                    if delta > 0.0 {
                        u += sd[t];
                    } else if delta < 0.0 {
                        d += sd[t];
                    }
                }
                u /= p as f64;
                d /= p as f64;
                let pf = p as f64;
                for t in lb..n {
                    if t > lb {
                        let delta = x[t] - x[t - 1];
                        let (uv, dv) = if delta > 0.0 {
                            (sd[t], 0.0)
                        } else if delta < 0.0 {
                            (0.0, sd[t])
                        } else {
                            (0.0, 0.0)
                        };
                        u = (u * (pf - 1.0) + uv) / pf;
                        d = (d * (pf - 1.0) + dv) / pf;
                    }
                    let want = if u + d == 0.0 {
                        50.0
                    } else {
                        100.0 * (u / (u + d))
                    };
                    assert!(
                        (got[t] - want).abs() <= 1e-8,
                        "rvi({p},{m}) row {t}: {} vs {want}",
                        got[t]
                    );
                }
                check_cuts(&[got], lb, &mut rng, |s, [o]| rvi(s, &x, (p, m), o));
            }
        }
        // No move at all: neither leg gets anything, 50.
        let [flat] = run::<1>(30, |[o]| rvi(&Sequential, &[3.0; 30], (4, 3), o));
        assert!(flat[5..].iter().all(|v| *v == 50.0));
    }
}
