//! Exponential moving averages: EMA and MACD, on the fixed-block scan of [`super::scan`].
//!
//! # Spec (TA-Lib 0.8.1 seeding, `k = 2 / (n + 1)`, recurrence `y = (1 - k)·y + k·x`)
//! * EMA(n): seed row `n - 1`, seed `(((0 + x_0) + x_1) + … + x_{n-1}) / n`; drive `k·x_t`.
//! * MACD(fast, slow, signal): one two-channel scan with seed row `slow - 1`; the slow channel is
//!   seeded with the mean of `x[0..slow)`, the fast one with the mean of `x[slow-fast..slow)` (the
//!   `fast` values that end on the same bar, as TA-Lib does); `macd_t = fast_t - slow_t`.
//!   The signal is an EMA(signal) of `macd` with seed row `slow + signal - 2`, seeded with the mean
//!   of the first `signal` MACD values; `hist = macd - signal`. Lookback `slow + signal - 2`.
//!   Sums are left-to-right folds from `0.0`, means are one division ([`seed_mean_of`]: finite
//!   terms whose sum overflows are averaged scaled down by a power of two, then scaled back).

use super::scan::{run_scan, run_scan_feeding_scan, write_rows, Recurrence};
use super::split::{Sequential, Splitter};
use super::stream_store::Store;

/// `(((0 + v_0) + v_1) + …) / len` — the seed of every SMA-seeded recursive indicator.
pub fn seed_mean(values: &[f64]) -> f64 {
    seed_mean_of(values.len(), |i| values[i])
}

/// [`seed_mean`] of the terms `term(0..len)` (`len >= 1`). When every term is finite but the sum
/// overflows, the mean is taken of the terms scaled by `2^-k` (`2^k >= 2·len`, exact for every term
/// that matters at that magnitude, and the scaled sum cannot overflow) and scaled back, so a
/// representable mean is never turned into ±inf (`ema(2)` of `[1e308, 1e308]` seeds at `1e308`).
/// Any other input gives exactly the plain fold's bits.
pub fn seed_mean_of(len: usize, term: impl Fn(usize) -> f64) -> f64 {
    let n = len as f64;
    let sum = (0..len).fold(0.0, |s, i| s + term(i));
    if sum.is_finite() || !(0..len).all(|i| term(i).is_finite()) {
        return sum / n;
    }
    let k = (2 * len).next_power_of_two().trailing_zeros() as i32;
    let (down, up) = (2f64.powi(-k), 2f64.powi(k));
    ((0..len).fold(0.0, |s, i| s + term(i) * down) / n) * up
}

pub fn smoothing(period: usize) -> f64 {
    2.0 / (period as f64 + 1.0)
}

/// EMA's recurrence and drive coefficient `k` (`1 <= period <= x.len()`).
pub fn ema_recurrence(x: &[f64], period: usize) -> (Recurrence<1>, f64) {
    let k = smoothing(period);
    let rec = Recurrence {
        decay: [1.0 - k],
        seed_row: period - 1,
        seed: [seed_mean(&x[..period])],
    };
    (rec, k)
}

/// MACD's two-channel (fast, slow) recurrence and drive coefficients (`0 < fast <= slow <= len`).
pub fn macd_recurrence(x: &[f64], fast: usize, slow: usize) -> (Recurrence<2>, [f64; 2]) {
    let (kf, ks) = (smoothing(fast), smoothing(slow));
    let rec = Recurrence {
        decay: [1.0 - kf, 1.0 - ks],
        seed_row: slow - 1,
        seed: [seed_mean(&x[slow - fast..slow]), seed_mean(&x[..slow])],
    };
    (rec, [kf, ks])
}

/// The signal line's recurrence over the MACD line `m` (valid from row `slow - 1` through at
/// least `slow + signal - 2`) and its drive coefficient.
pub fn signal_recurrence(m: &[f64], slow: usize, signal: usize) -> (Recurrence<1>, f64) {
    let start = slow + signal - 2;
    let kg = smoothing(signal);
    let rec = Recurrence {
        decay: [1.0 - kg],
        seed_row: start,
        seed: [seed_mean(&m[slow - 1..=start])],
    };
    (rec, kg)
}

/// EMA(period); rows `< period - 1` untouched.
pub fn ema<S: Splitter>(split: &S, x: &[f64], period: usize, out: &mut [f64]) {
    if period == 0 || x.len() < period {
        return;
    }
    let (rec, k) = ema_recurrence(x, period);
    let drive = |start: usize, b: &mut [[f64; 1]]| {
        let rows = &x[start..start + b.len()];
        for (v, &xt) in b.iter_mut().zip(rows) {
            *v = [k * xt];
        }
    };
    run_scan(split, x.len(), &rec, drive, [out], |o, i, t, ys, st| {
        write_rows(o[0], i, t, ys, st, |_, y| y[0])
    });
}

/// MACD(fast, slow, signal) with `fast < slow`; rows `< slow + signal - 2` untouched except that
/// `macd` also holds values from row `slow - 1` on (the signal's input).
pub fn macd<S: Splitter>(
    split: &S,
    x: &[f64],
    (fast, slow, signal): (usize, usize, usize),
    macd: &mut [f64],
    sig: &mut [f64],
    hist: &mut [f64],
) {
    let n = x.len();
    if n < slow || fast == 0 || signal == 0 || fast > slow {
        return;
    }
    let (rec, [kf, ks]) = macd_recurrence(x, fast, slow);
    let drive = |start: usize, b: &mut [[f64; 2]]| {
        let rows = &x[start..start + b.len()];
        for (v, &xt) in b.iter_mut().zip(rows) {
            *v = [kf * xt, ks * xt];
        }
    };
    let start = slow + signal - 2;
    if split.workers() > 1 && n > start + 1 {
        // One chained pass for both scans. The signal's seed averages the line's first values:
        // a scan's row t depends only on rows <= t, so the prefix alone gives their bits.
        let [mut pm, mut ps, mut ph] = [0, 1, 2].map(|_| vec![0.0; start + 1]);
        self::macd(
            &Sequential,
            &x[..=start],
            (fast, slow, signal),
            &mut pm,
            &mut ps,
            &mut ph,
        );
        let (srec, kg) = signal_recurrence(&pm, slow, signal);
        let signal_stage = (&srec, kg, pm[start]);
        let outs = [&mut *macd, &mut *sig, &mut *hist];
        if run_scan_feeding_scan(split, n, &rec, drive, |y| y[0] - y[1], signal_stage, outs) {
            return;
        }
    }
    // The signal pass below reads the line back at once: keep it in the cache, never streamed.
    run_scan(split, n, &rec, drive, [&mut *macd], |o, i, t, ys, _| {
        write_rows(o[0], i, t, ys, Store::Cached, |_, y| y[0] - y[1])
    });

    if n <= start {
        return;
    }
    let m: &[f64] = macd;
    let (rec, kg) = signal_recurrence(m, slow, signal);
    let drive = |start: usize, b: &mut [[f64; 1]]| {
        let rows = &m[start..start + b.len()];
        for (v, &mt) in b.iter_mut().zip(rows) {
            *v = [kg * mt];
        }
    };
    run_scan(split, n, &rec, drive, [sig, hist], |o, i, t, ys, st| {
        write_rows(o[0], i, t, ys, st, |_, y| y[0]);
        write_rows(o[1], i, t, ys, st, |t, y| m[t] - y[0]);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::reference as naive;
    use crate::kernels::split::{CutAt, Sequential};
    use crate::kernels::testing::{assert_bits_eq, assert_close, random_cuts, series_zoo, Lcg};

    #[test]
    fn ema_matches_talib_loop_and_splits() {
        let mut rng = Lcg(2);
        for x in series_zoo(6000, 8) {
            for n in [2, 5, 30, 1025] {
                let mut whole = vec![0.0; x.len()];
                ema(&Sequential, &x, n, &mut whole);
                assert_close(&whole[n - 1..], &naive::ema(&x, n)[n - 1..], 1e-11, "ema");
                for _ in 0..4 {
                    let mut got = vec![0.0; x.len()];
                    ema(&CutAt(random_cuts(&mut rng, x.len(), 16)), &x, n, &mut got);
                    assert_bits_eq(&got, &whole, "ema split");
                }
            }
        }
    }

    fn run_macd<S: Splitter>(s: &S, x: &[f64], p: (usize, usize, usize)) -> [Vec<f64>; 3] {
        let mut o = [vec![0.0; x.len()], vec![0.0; x.len()], vec![0.0; x.len()]];
        let [a, b, c] = &mut o;
        macd(s, x, p, a, b, c);
        o
    }

    #[test]
    fn macd_matches_talib_loop_and_splits() {
        let mut rng = Lcg(4);
        let x = &series_zoo(7000, 1)[0];
        for p in [(12, 26, 9), (3, 10, 16), (5, 5, 1), (2, 3, 2)] {
            let whole = run_macd(&Sequential, x, p);
            let want = naive::macd(x, p.0, p.1, p.2);
            let lb = p.1 + p.2 - 2;
            for j in 0..3 {
                assert_close(&whole[j][lb..], &want[j][lb..], 1e-9, "macd");
            }
            for _ in 0..4 {
                let got = run_macd(&CutAt(random_cuts(&mut rng, x.len(), 16)), x, p);
                for j in 0..3 {
                    assert_bits_eq(&got[j][lb..], &whole[j][lb..], "macd split");
                }
            }
        }
    }
}
