//! Wilder-smoothed indicators: RSI, ATR, NATR, on the fixed-block scan of [`super::scan`].
//!
//! # Spec (TA-Lib 0.8.1 values; Wilder's update `y = (y·(n-1) + v) / n` written as the linear
//! recurrence `y = a·y + v·inv` with `a = (n-1)/n` and `inv = 1/n`, each one IEEE division)
//! * RSI(n): `diff_t = x_t - x_{t-1}`; `gain = diff` unless `diff < 0` (then 0), `loss = -diff` when
//!   `diff < 0` (else 0). Seeds at row `n`: the left-to-right sums of gains and losses over rows
//!   `1..=n`, each divided by `n`. Output `100·(g/(g+l))`, or `0.0` when `g + l == 0` (TA-Lib tests
//!   against 1e-8 instead of zero, which zeroes RSI on prices below ~1e-8; we test exact zero).
//! * ATR(n): `tr_t = max(h_t - l_t, |c_{t-1} - h_t|, |c_{t-1} - l_t|)` for `t >= 1` with a
//!   NaN-propagating max; seed at row `n` = the left-to-right sum of `tr_1..=tr_n` divided by `n`.
//! * NATR(n) = `(atr_t / c_t)·100`, or `0.0` when `c_t == 0` (TA-Lib: below 1e-8).
//!
//! A NaN in the input reaches every later row of these filters: their memory is infinite.

use super::extrema::{nan_max, select};
use super::scan::{fill_rows, run_scan, write_rows, Recurrence};
use super::split::Splitter;

fn wilder(period: usize) -> (f64, f64) {
    let nf = period as f64;
    ((period - 1) as f64 / nf, 1.0 / nf)
}

#[inline(always)]
fn gain_loss(x: &[f64], t: usize) -> [f64; 2] {
    let diff = x[t] - x[t - 1];
    let falling = diff < 0.0;
    [select(falling, 0.0, diff), select(falling, -diff, 0.0)]
}

/// RSI's two-channel (gain, loss) recurrence and the drive coefficient `1/n`
/// (`1 <= period < x.len()`).
pub fn rsi_recurrence(x: &[f64], period: usize) -> (Recurrence<2>, f64) {
    let nf = period as f64;
    let (mut g, mut l) = (0.0f64, 0.0f64);
    for t in 1..=period {
        let [dg, dl] = gain_loss(x, t);
        g = g + dg;
        l = l + dl;
    }
    let (a, inv) = wilder(period);
    let rec = Recurrence {
        decay: [a, a],
        seed_row: period,
        seed: [g / nf, l / nf],
    };
    (rec, inv)
}

/// ATR's recurrence and the drive coefficient `1/n` (`1 <= period < h.len()`).
pub fn atr_recurrence((h, l, c): (&[f64], &[f64], &[f64]), period: usize) -> (Recurrence<1>, f64) {
    let seed = (1..=period).fold(0.0, |s, t| s + true_range(h, l, c, t)) / period as f64;
    let (a, inv) = wilder(period);
    let rec = Recurrence {
        decay: [a],
        seed_row: period,
        seed: [seed],
    };
    (rec, inv)
}

/// RSI(period); rows `< period` untouched.
pub fn rsi<S: Splitter>(split: &S, x: &[f64], period: usize, out: &mut [f64]) {
    if period == 0 || x.len() <= period {
        return;
    }
    let (rec, inv) = rsi_recurrence(x, period);
    let drive = |start: usize, b: &mut [[f64; 2]]| {
        fill_rows(start, b, |t| {
            let [dg, dl] = gain_loss(x, t);
            [dg * inv, dl * inv]
        })
    };
    run_scan(split, x.len(), &rec, drive, [out], |o, i, t, ys, st| {
        write_rows(o[0], i, t, ys, st, |_, &[g, l]| {
            let total = g + l;
            if total != 0.0 {
                100.0 * (g / total)
            } else {
                0.0
            }
        })
    });
}

#[inline(always)]
pub fn true_range(h: &[f64], l: &[f64], c: &[f64], t: usize) -> f64 {
    true_range_of(h[t], l[t], c[t - 1])
}

/// [`true_range`] from the row's high and low and the previous close.
#[inline(always)]
fn true_range_of(h: f64, l: f64, prev: f64) -> f64 {
    nan_max(nan_max(h - l, (prev - h).abs()), (prev - l).abs())
}

fn atr_with<S: Splitter>(
    split: &S,
    (h, l, c): (&[f64], &[f64], &[f64]),
    period: usize,
    out: &mut [f64],
    finish: impl Fn(usize, f64) -> f64 + Sync,
) {
    if period == 0 || h.len() <= period {
        return;
    }
    let (rec, inv) = atr_recurrence((h, l, c), period);
    // The block's inputs are sliced once so the per-row loop has no bounds checks and vectorises.
    let drive = |start: usize, b: &mut [[f64; 1]]| {
        let end = start + b.len();
        let rows = h[start..end]
            .iter()
            .zip(&l[start..end])
            .zip(&c[start - 1..end - 1]);
        for (v, ((&ht, &lt), &prev)) in b.iter_mut().zip(rows) {
            *v = [true_range_of(ht, lt, prev) * inv];
        }
    };
    run_scan(split, h.len(), &rec, drive, [out], |o, i, t, ys, st| {
        write_rows(o[0], i, t, ys, st, |t, y| finish(t, y[0]))
    });
}

/// ATR(period); rows `< period` untouched.
pub fn atr<S: Splitter>(
    split: &S,
    h: &[f64],
    l: &[f64],
    c: &[f64],
    period: usize,
    out: &mut [f64],
) {
    atr_with(split, (h, l, c), period, out, |_, atr| atr)
}

/// NATR(period) = ATR / close · 100; rows `< period` untouched.
pub fn natr<S: Splitter>(
    split: &S,
    h: &[f64],
    l: &[f64],
    c: &[f64],
    period: usize,
    out: &mut [f64],
) {
    atr_with(split, (h, l, c), period, out, |t, atr| {
        if c[t] != 0.0 {
            (atr / c[t]) * 100.0
        } else {
            0.0
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::reference as naive;
    use crate::kernels::split::{CutAt, Sequential};
    use crate::kernels::testing::{assert_bits_eq, assert_close, random_cuts, series_zoo, Lcg};

    #[test]
    fn rsi_matches_talib_loop_and_splits() {
        let mut rng = Lcg(6);
        for x in series_zoo(5000, 12) {
            for n in [2, 14, 100] {
                let mut whole = vec![0.0; x.len()];
                rsi(&Sequential, &x, n, &mut whole);
                assert_close(&whole[n..], &naive::rsi(&x, n)[n..], 1e-9, "rsi");
                for _ in 0..4 {
                    let mut got = vec![0.0; x.len()];
                    rsi(&CutAt(random_cuts(&mut rng, x.len(), 16)), &x, n, &mut got);
                    assert_bits_eq(&got, &whole, "rsi split");
                }
            }
        }
    }

    #[test]
    fn atr_natr_match_talib_loop_and_split() {
        let mut rng = Lcg(8);
        let c = series_zoo(6000, 2)[0].clone();
        let h: Vec<f64> = c.iter().map(|v| v + rng.uniform()).collect();
        let l: Vec<f64> = c.iter().map(|v| v - rng.uniform()).collect();
        for n in [1, 2, 14, 300] {
            let mut whole = vec![0.0; c.len()];
            atr(&Sequential, &h, &l, &c, n, &mut whole);
            assert_close(&whole[n..], &naive::atr(&h, &l, &c, n)[n..], 1e-10, "atr");
            let mut nat = vec![0.0; c.len()];
            natr(&Sequential, &h, &l, &c, n, &mut nat);
            for t in n..c.len() {
                assert_eq!(nat[t].to_bits(), ((whole[t] / c[t]) * 100.0).to_bits());
            }
            for _ in 0..4 {
                let mut got = vec![0.0; c.len()];
                atr(
                    &CutAt(random_cuts(&mut rng, c.len(), 16)),
                    &h,
                    &l,
                    &c,
                    n,
                    &mut got,
                );
                assert_bits_eq(&got, &whole, "atr split");
            }
        }
    }
}
