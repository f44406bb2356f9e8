//! Indicators on price changes over a fixed lag, on volume flow, and running totals: ROC, OBV and
//! CUMSUM.
//!
//! # Spec
//! * ROC(n) (TA-Lib): `((x_t / x_{t-n}) - 1)·100`, or `0.0` when `x_{t-n} == 0`; lookback `n`.
//!   Row-local, so trivially split-invariant.
//! * OBV (TA-Lib): `obv_0 = volume_0`; then `+volume_t` when `close_t > close_{t-1}`, `-volume_t`
//!   when `close_t < close_{t-1}`, else unchanged; NaN when either close is NaN (TA-Lib's comparisons
//!   would silently read "unchanged"), so a NaN close, like a NaN volume, reaches every later row. The
//!   running total is the [`super::scan`] recurrence with `a = 1` (so its block partial sums, not a
//!   single left-to-right sum, define the bits). Lookback 0.
//! * CUMSUM (TA-Lib): `cumsum_0 = x_0`, `cumsum_t = cumsum_{t-1} + x_t`, as the [`super::scan`]
//!   recurrence with `a = 1` and drive `x_t` (its block partial sums define the bits, as for OBV);
//!   a NaN reaches every later row. Lookback 0.

use super::canon;
use super::extrema::select;
use super::scan::{fill_rows, run_scan, write_rows, Recurrence};
use super::split::Splitter;

/// ROC(period); rows `< period` untouched.
pub fn roc<S: Splitter>(split: &S, x: &[f64], period: usize, out: &mut [f64]) {
    let n = x.len();
    if n <= period {
        return;
    }
    split.for_each_piece(period, [&mut out[period..n]], |lo, [piece]| {
        for (i, v) in piece.iter_mut().enumerate() {
            let t = lo + i;
            let prev = x[t - period];
            *v = canon(if prev != 0.0 {
                ((x[t] / prev) - 1.0) * 100.0
            } else {
                0.0
            });
        }
    });
}

/// On-balance volume; every row is written.
pub fn obv<S: Splitter>(split: &S, close: &[f64], volume: &[f64], out: &mut [f64]) {
    if close.is_empty() {
        return;
    }
    let rec = Recurrence {
        decay: [1.0],
        seed_row: 0,
        seed: [volume[0]],
    };
    let drive = |start: usize, b: &mut [[f64; 1]]| {
        fill_rows(start, b, |t| {
            let (now, before) = (close[t], close[t - 1]);
            let step = select(
                now < before,
                -volume[t],
                select(now > before, volume[t], 0.0),
            );
            // A NaN close has no direction: NaN, not TA-Lib's silent "unchanged".
            [select(now.is_nan() | before.is_nan(), f64::NAN, step)]
        })
    };
    run_scan(split, close.len(), &rec, drive, [out], |o, i, t, ys, st| {
        write_rows(o[0], i, t, ys, st, |_, y| y[0])
    });
}

/// Running total (TA-Lib's CUMSUM); every row is written.
pub fn cumsum<S: Splitter>(split: &S, x: &[f64], out: &mut [f64]) {
    if x.is_empty() {
        return;
    }
    let rec = Recurrence {
        decay: [1.0],
        seed_row: 0,
        seed: [x[0]],
    };
    let drive = |start: usize, b: &mut [[f64; 1]]| fill_rows(start, b, |t| [x[t]]);
    run_scan(split, x.len(), &rec, drive, [out], |o, i, t, ys, st| {
        write_rows(o[0], i, t, ys, st, |_, y| y[0])
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::reference as naive;
    use crate::kernels::split::{CutAt, Sequential};
    use crate::kernels::testing::{assert_bits_eq, assert_close, random_cuts, series_zoo, Lcg};

    #[test]
    fn cumsum_matches_the_plain_loop_and_splits() {
        let mut rng = Lcg(12);
        for x in series_zoo(7000, 2) {
            let mut whole = vec![0.0; x.len()];
            cumsum(&Sequential, &x, &mut whole);
            let mut acc = 0.0;
            let want: Vec<f64> = x
                .iter()
                .map(|v| {
                    acc += v;
                    acc
                })
                .collect();
            // The wave crosses zero: compare with an absolute slack of its scale.
            let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            for (g, w) in whole.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-12 * scale, "{g} vs {w}");
            }
            for _ in 0..5 {
                let mut got = vec![0.0; x.len()];
                cumsum(&CutAt(random_cuts(&mut rng, x.len(), 16)), &x, &mut got);
                assert_bits_eq(&got, &whole, "cumsum split");
            }
        }
        let mut out = [0.0; 4];
        cumsum(&Sequential, &[1.0, f64::NAN, 2.0, 3.0], &mut out);
        assert_eq!(out[0], 1.0);
        assert!(out[1..].iter().all(|v| v.is_nan()));
    }

    #[test]
    fn obv_matches_talib_loop_and_splits() {
        let mut rng = Lcg(10);
        let c = series_zoo(9000, 5)[3].clone();
        let v: Vec<f64> = (0..c.len()).map(|_| (rng.below(1000) + 1) as f64).collect();
        let mut whole = vec![0.0; c.len()];
        obv(&Sequential, &c, &v, &mut whole);
        assert_close(&whole, &naive::obv(&c, &v), 1e-12, "obv");
        for _ in 0..6 {
            let mut got = vec![0.0; c.len()];
            obv(&CutAt(random_cuts(&mut rng, c.len(), 16)), &c, &v, &mut got);
            assert_bits_eq(&got, &whole, "obv split");
        }
    }

    #[test]
    fn roc_zero_base_gives_zero() {
        let x = [0.0, 1.0, 2.0, 4.0];
        let mut out = [9.0; 4];
        roc(&Sequential, &x, 1, &mut out);
        assert_eq!(&out[1..], &[0.0, 100.0, 100.0]);
    }
}
