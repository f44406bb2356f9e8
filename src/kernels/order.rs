//! Order statistics of a sliding window: `percentile` (TA-Lib PERCENTILE) and `percentrank`
//! (TA-Lib PERCENTRANK).
//!
//! # Spec
//!
//! Order statistics are values of the window, not sums, so there is no rounding to fix: any
//! algorithm that finds the right element gives the same bits, and any split does too.
//!
//! * **percentile** (window `w`, percentile `P` in `[0, 100]`): `rank = ceil(P * w / 100.0)` in
//!   doubles, multiply before divide (TA-Lib's order, which lands exactly on integers for round
//!   percentages), clamped to `[1, w]`. Row `t >= w - 1` is the `rank`-th smallest value of
//!   `x[t - w + 1 ..= t]` (nearest rank, no interpolation). Equal values are ordered by age (older
//!   first), which only the sign of a zero can observe: with `-0.0` and `0.0` in the window, the
//!   one returned is the one at that position in (value, age) order, as TA-Lib.
//! * **percentrank** (window `w`): row `t >= w` is `count / w * 100.0` (divide, then scale, as
//!   TA-Lib), where `count` is the number of the `w` previous values `x[t - w .. t]` strictly
//!   below `x[t]` (so `-0.0` is not below `0.0`). The lookback is `w`.
//!
//! A window holding a NaN gives NaN (for percentrank, the current value or any of the previous
//! `w`); infinities are ordinary values.
//!
//! # Algorithm
//!
//! Each piece of rows keeps its window sorted in a vector (ties in age order, NaNs only counted),
//! initialised from its own halo (the `w - 1`, or `w`, rows before its first row) by a stable
//! sort, then slides one row at a time: the departing value is found by binary search (the first
//! of its run of equals, which is the oldest of them) and the arriving one goes after its equals,
//! with one `copy_within` of the elements between the two positions. Cost O(log w + d) per row,
//! `d` the distance between the two positions (about `w / 3` on random data), plus
//! O(w log w) per piece. PERCENTRANK counts directly (a branch-free O(w) pass per row, which the
//! compiler vectorises) up to `w = 256`, where that is faster; the count is the same.

use std::cmp::Ordering;

use super::split::Splitter;

/// `a <=> b` for non-NaN values (`-0.0 == 0.0`, as TA-Lib's comparisons).
#[inline(always)]
fn cmp(a: &f64, b: &f64) -> Ordering {
    a.partial_cmp(b).unwrap_or(Ordering::Equal)
}

/// A multiset of the window's values, sorted ascending with equal values in age order, plus the
/// number of NaNs it holds.
struct SortedWindow {
    v: Vec<f64>,
    nans: usize,
}

impl SortedWindow {
    /// The values of `init`, in (value, age) order.
    fn new(init: &[f64], cap: usize) -> Self {
        let mut v = Vec::with_capacity(cap.max(init.len()));
        v.extend(init.iter().copied().filter(|x| !x.is_nan()));
        // Stable: equal values keep their order in `init`, which is age order.
        v.sort_by(cmp);
        let nans = init.len() - v.len();
        SortedWindow { v, nans }
    }

    /// Replaces the oldest value `old` (which must be in the window) with the newest `new`.
    #[inline]
    fn replace(&mut self, old: f64, new: f64) {
        match (old.is_nan(), new.is_nan()) {
            (true, true) => {}
            (true, false) => {
                self.nans -= 1;
                let at = self.v.partition_point(|e| *e <= new);
                self.v.insert(at, new);
            }
            (false, true) => {
                self.nans += 1;
                let at = self.v.partition_point(|e| *e < old);
                self.v.remove(at);
            }
            (false, false) => {
                // `del`: the first of old's equals (the oldest of them). `ins`: after new's
                // equals, counted with `old` still in place.
                let del = self.v.partition_point(|e| *e < old);
                let ins = self.v.partition_point(|e| *e <= new);
                if ins > del {
                    // Elements (del, ins) move down one; new lands just before the old `ins`.
                    self.v.copy_within(del + 1..ins, del);
                    self.v[ins - 1] = new;
                } else {
                    // Elements [ins, del) move up one; new lands at `ins`.
                    self.v.copy_within(ins..del, ins + 1);
                    self.v[ins] = new;
                }
            }
        }
    }
}

/// TA-Lib's rank for percentile `pct` of `w` values: `ceil(pct * w / 100.0)` clamped to `[1, w]`.
pub fn percentile_rank(w: usize, pct: f64) -> usize {
    let r = (pct * w as f64 / 100.0).ceil();
    if r < 1.0 {
        1
    } else if r > w as f64 {
        w
    } else {
        r as usize
    }
}

/// The `pct`-th percentile (nearest rank) of every window of `period` rows (module doc). Rows
/// `< period - 1` are left untouched.
pub fn percentile<S: Splitter>(split: &S, x: &[f64], period: usize, pct: f64, out: &mut [f64]) {
    let (n, w) = (x.len(), period);
    if w == 0 || n < w {
        return;
    }
    let k = percentile_rank(w, pct) - 1;
    split.for_each_piece(w - 1, [&mut out[w - 1..n]], |lo, [piece]| {
        let mut win = SortedWindow::new(&x[lo + 1 - w..=lo], w);
        for (i, dst) in piece.iter_mut().enumerate() {
            let t = lo + i;
            if i > 0 {
                win.replace(x[t - w], x[t]);
            }
            *dst = if win.nans > 0 { f64::NAN } else { win.v[k] };
        }
    });
}

/// Windows up to this long are counted directly (a branch-free pass the compiler vectorises),
/// longer ones through the sorted window; the counts, hence the bits, are the same.
const DIRECT_RANK_MAX_W: usize = 256;

/// The percent rank of each value among the `period` values before it (module doc). Rows
/// `< period` are left untouched.
pub fn percentrank<S: Splitter>(split: &S, x: &[f64], period: usize, out: &mut [f64]) {
    percentrank_with(split, x, period, period <= DIRECT_RANK_MAX_W, out)
}

/// [`percentrank`] by direct counting (`direct`) or through the sorted window.
fn percentrank_with<S: Splitter>(
    split: &S,
    x: &[f64],
    period: usize,
    direct: bool,
    out: &mut [f64],
) {
    let (n, w) = (x.len(), period);
    if w == 0 || n <= w {
        return;
    }
    let wf = w as f64;
    if direct {
        split.for_each_piece(w, [&mut out[w..n]], |lo, [piece]| {
            // NaNs among the w previous values, kept as the window slides.
            let mut nans = x[lo - w..lo].iter().filter(|v| v.is_nan()).count();
            for (i, dst) in piece.iter_mut().enumerate() {
                let t = lo + i;
                if i > 0 {
                    nans = nans + x[t - 1].is_nan() as usize - x[t - 1 - w].is_nan() as usize;
                }
                let cur = x[t];
                *dst = if nans > 0 || cur.is_nan() {
                    f64::NAN
                } else {
                    let count: usize = x[t - w..t].iter().map(|v| (*v < cur) as usize).sum();
                    count as f64 / wf * 100.0
                };
            }
        });
        return;
    }
    split.for_each_piece(w, [&mut out[w..n]], |lo, [piece]| {
        let mut win = SortedWindow::new(&x[lo - w..lo], w);
        for (i, dst) in piece.iter_mut().enumerate() {
            let t = lo + i;
            if i > 0 {
                win.replace(x[t - 1 - w], x[t - 1]);
            }
            let cur = x[t];
            *dst = if win.nans > 0 || cur.is_nan() {
                f64::NAN
            } else {
                let count = win.v.partition_point(|e| *e < cur);
                count as f64 / wf * 100.0
            };
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::split::{CutAt, Sequential};
    use crate::kernels::testing::{assert_bits_eq, random_cuts, series_zoo, Lcg};

    /// The rank-th value of the window in (value, age) order: a stable sort per row.
    fn naive_percentile(x: &[f64], w: usize, pct: f64) -> Vec<f64> {
        let k = percentile_rank(w, pct) - 1;
        let mut out = vec![f64::NAN; x.len()];
        for t in w - 1..x.len() {
            let win = &x[t + 1 - w..=t];
            if win.iter().any(|v| v.is_nan()) {
                continue;
            }
            let mut s = win.to_vec();
            s.sort_by(cmp);
            out[t] = s[k];
        }
        out
    }

    fn naive_percentrank(x: &[f64], w: usize) -> Vec<f64> {
        let mut out = vec![f64::NAN; x.len()];
        for t in w..x.len() {
            let prev = &x[t - w..t];
            if x[t].is_nan() || prev.iter().any(|v| v.is_nan()) {
                continue;
            }
            let count = prev.iter().filter(|v| **v < x[t]).count();
            out[t] = count as f64 / w as f64 * 100.0;
        }
        out
    }

    /// Zoo series plus ties, signed zeros, infinities and NaN holes.
    fn series(n: usize, seed: u64) -> Vec<Vec<f64>> {
        let mut rng = Lcg(seed);
        let mut all = series_zoo(n, seed);
        let zeros: Vec<f64> = (0..n)
            .map(|_| [0.0, -0.0, 1.0, -1.0, 0.0][rng.below(5)])
            .collect();
        all.push(zeros);
        let mut holes = all[0].clone();
        for _ in 0..(n / 200).max(1) {
            let i = rng.below(n);
            holes[i] = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY][rng.below(3)];
        }
        all.push(holes);
        all
    }

    fn run_pct<S: Splitter>(s: &S, x: &[f64], w: usize, p: f64) -> Vec<f64> {
        let mut out = vec![f64::NAN; x.len()];
        percentile(s, x, w, p, &mut out);
        out
    }

    fn run_rank<S: Splitter>(s: &S, x: &[f64], w: usize) -> Vec<f64> {
        let mut out = vec![f64::NAN; x.len()];
        percentrank(s, x, w, &mut out);
        out
    }

    #[test]
    fn ranks_follow_talib() {
        assert_eq!(percentile_rank(30, 50.0), 15);
        assert_eq!(percentile_rank(30, 0.0), 1);
        assert_eq!(percentile_rank(30, 100.0), 30);
        assert_eq!(percentile_rank(10, 10.0), 1);
        assert_eq!(percentile_rank(10, 10.5), 2);
        assert_eq!(percentile_rank(7, 50.0), 4);
    }

    #[test]
    fn percentile_and_percentrank_match_naive_and_every_split() {
        let mut rng = Lcg(5);
        for x in series(1500, 3) {
            for w in [2, 3, 5, 14, 30, 101] {
                for p in [0.0, 10.0, 33.3, 50.0, 90.0, 100.0] {
                    let got = run_pct(&Sequential, &x, w, p);
                    assert_bits_eq(&got[w - 1..], &naive_percentile(&x, w, p)[w - 1..], "pct");
                    for _ in 0..2 {
                        let cuts = CutAt(random_cuts(&mut rng, x.len(), 16));
                        assert_bits_eq(&run_pct(&cuts, &x, w, p)[w - 1..], &got[w - 1..], "cut");
                    }
                }
                let got = run_rank(&Sequential, &x, w);
                assert_bits_eq(&got[w..], &naive_percentrank(&x, w)[w..], "rank");
                for direct in [false, true] {
                    let mut other = vec![f64::NAN; x.len()];
                    percentrank_with(&Sequential, &x, w, direct, &mut other);
                    assert_bits_eq(&other[w..], &got[w..], "rank: direct vs sorted window");
                }
                for _ in 0..3 {
                    let cuts = CutAt(random_cuts(&mut rng, x.len(), 16));
                    assert_bits_eq(&run_rank(&cuts, &x, w)[w..], &got[w..], "rank cut");
                }
            }
        }
    }

    #[test]
    fn signed_zero_ties_resolve_by_age() {
        // Window [-0.0, 0.0]: the median (rank 1) is the older one, -0.0; then [0.0, -0.0] gives 0.0.
        let x = [-0.0, 0.0, -0.0, 0.0];
        let got = run_pct(&Sequential, &x, 2, 50.0);
        assert_eq!(got[1].to_bits(), (-0.0f64).to_bits());
        assert_eq!(got[2].to_bits(), 0.0f64.to_bits());
        assert_eq!(got[3].to_bits(), (-0.0f64).to_bits());
    }
}
