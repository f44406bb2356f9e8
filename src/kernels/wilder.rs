//! Wilder-smoothed indicators: RSI, ATR, NATR, on the fixed-block scan of [`super::scan`].
//!
//! # Spec (TA-Lib 0.8.1 values; Wilder's update `y = (y·(n-1) + v) / n` written as the linear
//! recurrence `y = a·y + v·inv` with `a = (n-1)/n` and `inv = 1/n`, each one IEEE division)
//! * RSI(n): `diff_t = x_t - x_{t-1}`; `gain = diff` unless `diff < 0` (then 0), `loss = -diff` when
//!   `diff < 0` (else 0). Seeds at row `n`: the left-to-right sums of gains and losses over rows
//!   `1..=n`, each divided by `n` (`ema::seed_mean_of`). Output `100·(g/(g+l))` (any NaN written
//!   as the canonical NaN; when `g + l` overflows, `g` and `l` are halved first).
//!   Where `g + l < 2^-1022` (zero, or subnormal) the output *holds*: it is the output of the
//!   latest earlier row whose total was a normal number, or `0.0` when there is none (a series flat
//!   from its start: TA-Lib's value). Both averages decay by the same factor, so their ratio is
//!   constant through a flat run; after about `708/ln(n/(n-1))` flat rows (≈9,500 for n = 14,
//!   ≈1,020 for n = 2) they sink into the subnormals together, where the ratio loses its digits
//!   (one may round to zero before the other) and then both reach zero. Holding keeps the exact
//!   limit instead of drifting or collapsing to 0. TA-Lib 0.8 tests exact zero; its
//!   multiply-then-divide update sticks at the smallest subnormal for n ≥ 3, which gives 50 on any
//!   run that ends in the subnormals, the exact limit only when that limit is 50. Holding is a pure
//!   function of the whole output column ([`resolve_holds`]), applied after every piece is
//!   written, so it keeps any split's bits.
//! * ATR(n): `tr_t = max(h_t - l_t, |c_{t-1} - h_t|, |c_{t-1} - l_t|)` for `t >= 1` with a
//!   NaN-propagating max; seed at row `n` = the left-to-right sum of `tr_1..=tr_n` divided by `n`
//!   (`ema::seed_mean_of`).
//! * NATR(n) = `(atr_t / c_t)·100`, or `0.0` when `c_t == 0` (TA-Lib: below 1e-8).
//!
//! A NaN in the input reaches every later row of these filters: their memory is infinite.

use std::sync::atomic::{AtomicBool, Ordering};

use super::ema::seed_mean_of;
use super::extrema::{nan_max, select};
use super::scan::{fill_rows, run_scan, write_rows, Recurrence};
use super::split::Splitter;
use super::stream_store::store_rows;

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
    let (a, inv) = wilder(period);
    let rec = Recurrence {
        decay: [a, a],
        seed_row: period,
        seed: [
            seed_mean_of(period, |i| gain_loss(x, i + 1)[0]),
            seed_mean_of(period, |i| gain_loss(x, i + 1)[1]),
        ],
    };
    (rec, inv)
}

/// ATR's recurrence and the drive coefficient `1/n` (`1 <= period < h.len()`).
pub fn atr_recurrence((h, l, c): (&[f64], &[f64], &[f64]), period: usize) -> (Recurrence<1>, f64) {
    let seed = seed_mean_of(period, |i| true_range(h, l, c, i + 1));
    let (a, inv) = wilder(period);
    let rec = Recurrence {
        decay: [a],
        seed_row: period,
        seed: [seed],
    };
    (rec, inv)
}

/// What an RSI writer puts on a row whose averages sum below `2^-1022`, until [`resolve_holds`]
/// replaces it: a quiet NaN with a payload no arithmetic result carries (writers canonicalise
/// every computed NaN, so input NaN payloads cannot collide with it). The CUDA kernel writes the
/// same bits.
pub const RSI_HOLD_BITS: u64 = 0x7ff8_0000_5253_4901;

/// One RSI output row from the averages (see the module spec); `hold` is set when the row holds.
#[inline(always)]
pub fn rsi_row(g: f64, l: f64, hold: &AtomicBool) -> f64 {
    // Two finite averages whose sum overflows are halved first (exact): `g / inf` would be a
    // wrong 0. Otherwise the scale is 1 and changes no bit.
    let h = select((g + l).is_infinite(), 0.5, 1.0);
    let (g, l) = (g * h, l * h);
    let total = g + l;
    // NaN stays on the computing side (it is not below the normal range).
    if total >= f64::MIN_POSITIVE || total.is_nan() {
        let v = 100.0 * (g / total);
        select(v.is_nan(), f64::NAN, v)
    } else {
        hold.store(true, Ordering::Relaxed);
        f64::from_bits(RSI_HOLD_BITS)
    }
}

/// Replaces every held row from `from` on with the latest earlier value, or `0.0` when there is
/// none. Idempotent; a pure function of the column, so it is applied once the whole output exists.
pub fn resolve_holds(out: &mut [f64], from: usize) {
    let mut held = 0.0;
    for v in out.iter_mut().skip(from) {
        if v.to_bits() == RSI_HOLD_BITS {
            *v = held;
        } else {
            held = *v;
        }
    }
}

/// RSI(period); rows `< period` untouched.
pub fn rsi<S: Splitter>(split: &S, x: &[f64], period: usize, out: &mut [f64]) {
    if period == 0 || x.len() <= period {
        return;
    }
    let hold = AtomicBool::new(false);
    let (rec, inv) = rsi_recurrence(x, period);
    let drive = |start: usize, b: &mut [[f64; 2]]| {
        fill_rows(start, b, |t| {
            let [dg, dl] = gain_loss(x, t);
            [dg * inv, dl * inv]
        })
    };
    // `store_rows`, not `write_rows`: the hold marker is a NaN that must reach `resolve_holds`
    // as it is (`rsi_row` writes every other NaN as the canonical one itself).
    run_scan(split, x.len(), &rec, drive, [out], |o, i, _, ys, st| {
        store_rows(&mut o[0][i..i + ys.len()], ys, st, |_, &[g, l]| {
            rsi_row(g, l, &hold)
        })
    });
    // Rare (a flat start, or a flat run of thousands of rows), so the pass is only paid then.
    if hold.load(Ordering::Relaxed) {
        resolve_holds(out, period);
    }
}

/// RMA's recurrence and drive coefficient `inv = 1/n` (`1 <= period <= x.len()`).
pub fn rma_recurrence(x: &[f64], period: usize) -> (Recurrence<1>, f64) {
    let (a, inv) = wilder(period);
    let rec = Recurrence {
        decay: [a],
        seed_row: period - 1,
        seed: [seed_mean_of(period, |i| x[i])],
    };
    (rec, inv)
}

/// RMA(period), Wilder's smoothing of `x` (TA-Lib's RMA): seed row `period - 1`, seed the
/// left-to-right mean of `x[..period]` (`ema::seed_mean_of`), then `y = a·y + x·inv` with ATR's
/// `a = (n-1)/n`, `inv = 1/n`; rows `< period - 1` untouched.
pub fn rma<S: Splitter>(split: &S, x: &[f64], period: usize, out: &mut [f64]) {
    if period == 0 || x.len() < period {
        return;
    }
    let (rec, inv) = rma_recurrence(x, period);
    let drive = |start: usize, b: &mut [[f64; 1]]| {
        let rows = &x[start..start + b.len()];
        for (v, &xt) in b.iter_mut().zip(rows) {
            *v = [xt * inv];
        }
    };
    run_scan(split, x.len(), &rec, drive, [out], |o, i, t, ys, st| {
        write_rows(o[0], i, t, ys, st, |_, y| y[0])
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

    /// A bump then a flat run long enough for both averages to underflow: the ratio of the common
    /// decays is constant, so RSI holds its value (TA-Lib 0.8.2 gives 50 on every row of this).
    #[test]
    fn rsi_holds_its_value_when_both_averages_underflow() {
        let mut rng = Lcg(11);
        // The seed window (rows 1..=n) holds both moves for n = 14; for n = 2 the gain has decayed
        // once (by a = 1/2) when the loss comes: 100·0.5/(0.5 + 1).
        for (n, bump_up, bump_down, want) in [
            (14, 1.0, 1.0, 50.0),
            (2, 1.0, 1.0, 100.0 / 3.0),
            (14, 3.0, 1.0, 75.0),
        ] {
            let mut x = vec![10.0; 14_000];
            x[10] += bump_up;
            x[11] = x[10] - bump_down;
            let settled_price = x[11];
            x[12..].fill(settled_price);
            let mut whole = vec![0.0; x.len()];
            rsi(&Sequential, &x, n, &mut whole);
            // Every row within rounding of the limit (the decayed ratio moves in the last bits).
            for (t, v) in whole.iter().enumerate().skip(n.max(12)) {
                assert!((v - want).abs() < 1e-12, "n={n} row {t}: {v}");
            }
            for _ in 0..4 {
                let mut got = vec![0.0; x.len()];
                rsi(&CutAt(random_cuts(&mut rng, x.len(), 16)), &x, n, &mut got);
                assert_bits_eq(&got, &whole, "rsi hold split");
            }
        }
    }

    /// A series flat from its start has no earlier value to hold: 0, as TA-Lib; the first move
    /// ends it. NaN stays NaN.
    #[test]
    fn rsi_of_a_flat_start_is_zero_until_the_first_move() {
        let mut x = vec![5.0; 40];
        x[30] = 6.0;
        let mut out = vec![-1.0; x.len()];
        rsi(&Sequential, &x, 14, &mut out);
        assert!(out[14..30].iter().all(|v| v.to_bits() == 0.0f64.to_bits()));
        assert_eq!(out[30], 100.0);
        let mut y = x.clone();
        y[20] = f64::from_bits(RSI_HOLD_BITS);
        rsi(&Sequential, &y, 14, &mut out);
        assert!(out[20..]
            .iter()
            .all(|v| v.is_nan() && v.to_bits() != RSI_HOLD_BITS));
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
