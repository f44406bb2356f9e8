//! Weighted moving average (weights 1..=w, newest heaviest) on the global block grid.
//!
//! # Spec
//! Blocks of `w` rows aligned to row 0. For block `a`, suffix sums from the right:
//! `A1[o] = x[o] + A1[o+1]`, `AW[o] = AW[o+1] + A1[o]` (so `AW[o] = Σ_{i>=o} (i-o+1)·x[i]`, built
//! without multiplying), starting from `A1[w] = AW[w] = 0.0`. For block `b`, prefix sums from the
//! left: `B1[o] = B1[o-1] + x[o]`, `BW[o] = BW[o-1] + (o+1)·x[o]`, from `0.0`.
//! Row `t` at offset `o` of block `b`: if `o = w - 1`, `sum = BW[w-1]`; else
//! `sum = AW_{b-1}[o+1] + (BW_b[o] + (w-1-o)·B1_b[o])`. Result `sum / (w(w+1)/2)`.
//! Only additions of weighted values: no cancellation beyond the data's own.

use super::canon_rows;
use super::split::Splitter;

fn wma_rows(x: &[f64], w: usize, lo: usize, hi: usize, out: &mut [f64]) {
    if lo >= hi {
        return;
    }
    let denom = (w * (w + 1) / 2) as f64;
    let mut b1 = vec![0.0; w];
    let mut bw = vec![0.0; w];
    let mut aw = vec![0.0; w + 1];
    for b in lo / w..=(hi - 1) / w {
        let b_start = b * w;
        let o_lo = lo.max(b_start) - b_start;
        let o_hi = hi.min(b_start + w) - b_start;
        let (mut s1, mut sw) = (0.0f64, 0.0f64);
        for o in 0..o_hi {
            let v = x[b_start + o];
            s1 = s1 + v;
            sw = sw + (o + 1) as f64 * v;
            b1[o] = s1;
            bw[o] = sw;
        }
        let mut finite = s1.is_finite() && sw.is_finite();
        if o_lo < w - 1 {
            let a_start = b_start - w;
            let (mut s1, mut sw) = (0.0f64, 0.0f64);
            for o in (o_lo + 1..w).rev() {
                s1 = x[a_start + o] + s1;
                sw = sw + s1;
                aw[o] = sw;
            }
            finite = finite && s1.is_finite() && sw.is_finite();
        }
        let rows = &mut out[b_start + o_lo - lo..b_start + o_hi - lo];
        for (o, dst) in (o_lo..o_hi).zip(rows.iter_mut()) {
            let sum = if o == w - 1 {
                bw[o]
            } else {
                aw[o + 1] + (bw[o] + (w - 1 - o) as f64 * b1[o])
            };
            *dst = sum / denom;
        }
        // ±inf and NaN absorb additions: when the last prefix and suffix sums are finite, every
        // partial sum is, a row's sum is finite or ±inf (one product may overflow), and no row
        // is NaN. Otherwise the block's rows are written canonical ([`canon_rows`]).
        if !finite {
            canon_rows(rows);
        }
    }
}

/// Weighted moving average; rows `< period - 1` untouched.
pub fn wma<S: Splitter>(split: &S, x: &[f64], period: usize, out: &mut [f64]) {
    let n = x.len();
    if period == 0 || n < period {
        return;
    }
    split.for_each_piece(period - 1, [&mut out[period - 1..n]], |lo, [piece]| {
        wma_rows(x, period, lo, lo + piece.len(), piece)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::reference as naive;
    use crate::kernels::split::{CutAt, Sequential};
    use crate::kernels::testing::{assert_bits_eq, assert_close, random_cuts, series_zoo, Lcg};

    #[test]
    fn matches_naive_and_is_split_invariant() {
        let mut rng = Lcg(1);
        for x in series_zoo(3000, 4) {
            for w in [1, 2, 7, 30, 200] {
                let mut whole = vec![0.0; x.len()];
                wma(&Sequential, &x, w, &mut whole);
                assert_close(&whole[w - 1..], &naive::wma(&x, w)[w - 1..], 1e-12, "wma");
                for _ in 0..4 {
                    let mut got = vec![0.0; x.len()];
                    wma(&CutAt(random_cuts(&mut rng, x.len(), 16)), &x, w, &mut got);
                    assert_bits_eq(&got, &whole, "wma split");
                }
            }
        }
    }
}
