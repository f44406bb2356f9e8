//! Rolling mean and variance on the global block grid: `sma`, `rolling_std`, `zscore`, `bollinger`.
//!
//! # Spec (the answer is defined by this sequence of IEEE-754 double operations, no FMA)
//!
//! Window length `w`, rows `t >= w - 1`, window start `s = t - w + 1`. Rows are cut into blocks of
//! `w` rows aligned to row 0; block `k` holds rows `k*w .. k*w + w`, its *reference* is
//! `r_k = x[k*w]` when that value is finite, else `0.0`. Inside a block every value is shifted,
//! `d = x - r_k` (exact when the two are within a factor of two), which keeps the offset of the
//! data out of the variance.
//!
//! Partial aggregates `(mean, m2)` of shifted values are built with Welford pushes from
//! `(0.0, 0.0)`: the `j`-th push (`j = 1, 2, …`) of `d` does
//! `delta = d - mean; mean = mean + delta * inv[j]; m2 = m2 + delta * (d - mean)`,
//! where `inv[j] = 1.0 / j`. A *prefix* of block `b` pushes offsets `0, 1, …, o` left to right;
//! a *suffix* of block `a` pushes offsets `w-1, w-2, …, o` right to left.
//!
//! Let `o = t - b*w` be the offset of `t` in its block `b`.
//! * `o = w - 1` (the window is exactly block `b`): `mean = r_b + pmean`, `m2 = pm2` with
//!   `(pmean, pm2)` the prefix of block `b` through offset `w - 1`.
//! * otherwise the window is the suffix of block `a = b - 1` from offset `o + 1` (`n_a = w - n_b`
//!   values) and the prefix of block `b` through `o` (`n_b = o + 1` values); they are merged
//!   (Chan et al.) as
//!   `delta = (r_b - r_a) + (pmean - smean)`,
//!   `mean = r_a + (smean + delta * fb[n_b])`,
//!   `m2 = (sm2 + pm2) + (delta * delta) * cab[n_b]`,
//!   with `fb[j] = j / w` and `cab[j] = ((w - j) * j) / w` (integer products, then one division).
//!
//! Outputs: `sma = mean`; `rolling_std = sqrt(m2 / (w - ddof))`; `zscore = (x_t - mean) /
//! sqrt(m2 / w)`; `bollinger`: `dev = k * sqrt(m2 / w)`, `middle = mean`, `upper = mean + dev`,
//! `lower = mean - dev`. The mean is the same sequence of operations whether or not the variance is
//! needed, so `bollinger.middle` is bit-identical to `sma`.
//!
//! Cost O(1) amortised per row with no subtraction of running sums. A piece of rows
//! `[lo, hi)` reads inputs from the start of the block holding `lo - w + 1` (`Halo::Window`).
//! `m2` is never negative (each Welford increment is a product of two same-signed factors), and a
//! window of identical values has `m2 == 0.0` exactly.

use super::split::Splitter;

/// Tables shared by every piece of one call: `inv[j] = 1/j`, `fb[j] = j/w`, `cab[j] = (w-j)j/w`.
struct GridTables {
    inv: Vec<f64>,
    fb: Vec<f64>,
    cab: Vec<f64>,
}

impl GridTables {
    fn new(w: usize) -> Self {
        let wf = w as f64;
        let inv = (0..=w).map(|j| 1.0 / j as f64).collect();
        let fb = (0..=w).map(|j| j as f64 / wf).collect();
        let cab = (0..=w).map(|j| ((w - j) as f64 * j as f64) / wf).collect();
        GridTables { inv, fb, cab }
    }
}

#[inline(always)]
fn block_reference(x: &[f64], block_start: usize) -> f64 {
    let r = x[block_start];
    if r.is_finite() {
        r
    } else {
        0.0
    }
}

/// Per-piece scratch: prefix of the current block and suffix of the previous one.
struct Scratch {
    pre_mean: Vec<f64>,
    pre_m2: Vec<f64>,
    suf_mean: Vec<f64>,
    suf_m2: Vec<f64>,
}

/// Calls `emit(t, mean, m2)` for every row `t` in `[lo, hi)`; requires `lo >= w - 1`.
/// With `VAR == false` the `m2` argument is meaningless (0.0) and not computed.
fn moments_rows<const VAR: bool>(
    x: &[f64],
    w: usize,
    lo: usize,
    hi: usize,
    tables: &GridTables,
    mut emit: impl FnMut(usize, f64, f64),
) {
    debug_assert!(lo + 1 >= w && hi <= x.len());
    if lo >= hi {
        return;
    }
    let mut s = Scratch {
        pre_mean: vec![0.0; w],
        pre_m2: vec![0.0; w],
        suf_mean: vec![0.0; w],
        suf_m2: vec![0.0; w],
    };
    let inv = &tables.inv;
    for b in lo / w..=(hi - 1) / w {
        let b_start = b * w;
        let o_lo = lo.max(b_start) - b_start;
        let o_hi = hi.min(b_start + w) - b_start; // exclusive
        let r_b = block_reference(x, b_start);

        // Prefix of block b, offsets 0 .. o_hi.
        let (mut mean, mut m2) = (0.0f64, 0.0f64);
        for o in 0..o_hi {
            let d = x[b_start + o] - r_b;
            let delta = d - mean;
            mean = mean + delta * inv[o + 1];
            s.pre_mean[o] = mean;
            if VAR {
                m2 = m2 + delta * (d - mean);
                s.pre_m2[o] = m2;
            }
        }

        // Suffix of block a = b - 1 for offsets o_lo + 1 .. w (only rows not ending a block need it).
        let need_suffix = o_lo < w - 1;
        let r_a = if need_suffix {
            let a_start = b_start - w;
            let r_a = block_reference(x, a_start);
            let (mut mean, mut m2) = (0.0f64, 0.0f64);
            for o in (o_lo + 1..w).rev() {
                let d = x[a_start + o] - r_a;
                let delta = d - mean;
                mean = mean + delta * inv[w - o];
                s.suf_mean[o] = mean;
                if VAR {
                    m2 = m2 + delta * (d - mean);
                    s.suf_m2[o] = m2;
                }
            }
            r_a
        } else {
            0.0
        };

        let shift = r_b - r_a;
        for o in o_lo..o_hi.min(w - 1) {
            let n_b = o + 1;
            let (smean, pmean) = (s.suf_mean[o + 1], s.pre_mean[o]);
            let delta = shift + (pmean - smean);
            let mean = r_a + (smean + delta * tables.fb[n_b]);
            let m2 = if VAR {
                (s.suf_m2[o + 1] + s.pre_m2[o]) + (delta * delta) * tables.cab[n_b]
            } else {
                0.0
            };
            emit(b_start + o, mean, m2);
        }
        if o_hi == w {
            let o = w - 1;
            let m2 = if VAR { s.pre_m2[o] } else { 0.0 };
            emit(b_start + o, r_b + s.pre_mean[o], m2);
        }
    }
}

/// Runs a moments kernel over every output row `t >= w - 1` of `outs` (each as long as `x`).
fn run_moments<S: Splitter, const VAR: bool, const K: usize>(
    split: &S,
    x: &[f64],
    w: usize,
    outs: [&mut [f64]; K],
    write: impl Fn(&mut [&mut [f64]; K], usize, usize, f64, f64) + Sync,
) {
    let n = x.len();
    if w == 0 || n < w {
        return;
    }
    let tables = GridTables::new(w);
    let tail = outs.map(|o| &mut o[w - 1..n]);
    split.for_each_piece(w - 1, tail, |lo, mut piece| {
        let hi = lo + piece[0].len();
        moments_rows::<VAR>(x, w, lo, hi, &tables, |t, mean, m2| {
            write(&mut piece, t - lo, t, mean, m2)
        });
    });
}

/// Simple moving average; rows `< period - 1` are left untouched (warm-up).
pub fn sma<S: Splitter>(split: &S, x: &[f64], period: usize, out: &mut [f64]) {
    run_moments::<S, false, 1>(split, x, period, [out], |o, i, _, mean, _| o[0][i] = mean);
}

/// Rolling standard deviation with `ddof` degrees of freedom removed (`ddof < period`).
pub fn rolling_std<S: Splitter>(split: &S, x: &[f64], period: usize, ddof: usize, out: &mut [f64]) {
    let denom = (period - ddof) as f64;
    run_moments::<S, true, 1>(split, x, period, [out], |o, i, _, _, m2| {
        o[0][i] = (m2 / denom).sqrt()
    });
}

/// `(x - rolling mean) / rolling population std`; a window of identical values gives NaN (0/0).
pub fn zscore<S: Splitter>(split: &S, x: &[f64], period: usize, out: &mut [f64]) {
    let wf = period as f64;
    run_moments::<S, true, 1>(split, x, period, [out], |o, i, t, mean, m2| {
        o[0][i] = (x[t] - mean) / (m2 / wf).sqrt()
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
    let wf = period as f64;
    run_moments::<S, true, 3>(
        split,
        x,
        period,
        [middle, upper, lower],
        |o, i, _, mean, m2| {
            let dev = std_dev * (m2 / wf).sqrt();
            o[0][i] = mean;
            o[1][i] = mean + dev;
            o[2][i] = mean - dev;
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::reference as naive;
    use crate::kernels::split::{CutAt, Sequential};
    use crate::kernels::testing::{assert_bits_eq, assert_close, random_cuts, series_zoo, Lcg};

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
