//! The row of a window's extremum with TA-Lib's tie rule: MAXINDEX, MININDEX, MINMAXINDEX.
//!
//! # Spec
//! Values are ranked by a total preorder: for the maximum, `a` ranks above `b` when `a > b`, or
//! `a` is NaN and `b` is not (NaN ranks above every number, all NaNs tie, `-0.0` ties `0.0`); for
//! the minimum, when `a < b`, or `a` is NaN and `b` is not. So a window holding a NaN reports a NaN's
//! row, the way the value kernels ([`super::extrema`]) report NaN. The window of row `t` is
//! `t - w + 1 ..= t`; its *top* rows are those no other row of the window ranks above.
//!
//! With ties, TA-Lib's loop does not pick a fixed one of the top rows: it remembers the row `h`
//! it reported and, at each new row `t`,
//! * if `h` left the window (`h < t - w + 1`), or at the first row `t = w - 1`: rescans the
//!   window and takes its *first* (earliest) top row;
//! * else if `x[t]` is not ranked below `x[h]` (TA-Lib's `>=`): takes `t`;
//! * else keeps `h`.
//!
//! That is the definition here. Its answer is always the first or the last top row of the window
//! (a rescan gives the first; after it, an incoming row that ties or beats the top becomes the
//! last), but which one depends on the rows before the window: over a flat run it is the first
//! when the run began with rescans and the last when it began with a new top, however long the
//! run. It is still a function of the rows alone, evaluated from a row where it does not depend
//! on the past: a window whose top row is unique (first = last) or the first row `w - 1`. A piece
//! of rows `[lo, hi)` goes back from `lo` to the latest such row `s` (at worst `w - 1`) and runs
//! the loop from there, so its rows are those of one run over the whole series, for any cut.
//! First and last top rows come from two monotonic queues over the rows (exact comparisons only,
//! O(1) amortised per row).
//!
//! Outputs are row numbers of the series the kernel sees, written as `f64` (exact below 2^53);
//! the plugin maps them to rows of the input column and makes them Int32.

use std::collections::VecDeque;

use super::split::Splitter;

/// `a` ranks strictly above `b` (see the module spec).
#[inline(always)]
fn above<const MAX: bool>(a: f64, b: f64) -> bool {
    let nan = a.is_nan() & !b.is_nan();
    if MAX {
        (a > b) | nan
    } else {
        (a < b) | nan
    }
}

/// The first and last top rows of the sliding window, fed one row at a time.
struct Tops<'a, const MAX: bool> {
    x: &'a [f64],
    w: usize,
    /// Rows with no later row ranked strictly above them, in row order (ranks non-increasing):
    /// the front is the window's first top row.
    first: VecDeque<usize>,
    /// Rows ranked strictly above every later row: the front is the last top row.
    last: VecDeque<usize>,
}

impl<'a, const MAX: bool> Tops<'a, MAX> {
    fn new(x: &'a [f64], w: usize) -> Self {
        Tops {
            x,
            w,
            first: VecDeque::with_capacity(w.min(1 << 16)),
            last: VecDeque::with_capacity(w.min(1 << 16)),
        }
    }

    /// Takes row `t` in (rows must come in order, each once) and drops the rows before its
    /// window.
    #[inline]
    fn push(&mut self, t: usize) {
        let v = self.x[t];
        let x = self.x;
        while self.first.back().is_some_and(|&j| above::<MAX>(v, x[j])) {
            self.first.pop_back();
        }
        self.first.push_back(t);
        while self.last.back().is_some_and(|&j| !above::<MAX>(x[j], v)) {
            self.last.pop_back();
        }
        self.last.push_back(t);
        let start = (t + 1).saturating_sub(self.w);
        while self.first.front().is_some_and(|&j| j < start) {
            self.first.pop_front();
        }
        while self.last.front().is_some_and(|&j| j < start) {
            self.last.pop_front();
        }
    }

    /// (first, last) top row of the window of the row pushed last.
    #[inline]
    fn get(&self) -> (usize, usize) {
        // Cannot fail: the row just pushed is in both queues (only earlier rows are popped).
        (
            *self.first.front().expect("a row was pushed"),
            *self.last.front().expect("a row was pushed"),
        )
    }
}

/// The latest row `s` in `[w - 1, lo]` from which the loop does not depend on earlier rows (a
/// unique top, or `w - 1`), looking back in growing steps.
fn sync_row<const MAX: bool>(x: &[f64], w: usize, lo: usize) -> usize {
    let mut back = 2 * w + 64;
    loop {
        let a = lo.saturating_sub(back).max(w - 1);
        let mut tops = Tops::<MAX>::new(x, w);
        for t in a + 1 - w..a {
            tops.push(t);
        }
        let mut found = None;
        for t in a..=lo {
            tops.push(t);
            let (f, l) = tops.get();
            if f == l {
                found = Some(t);
            }
        }
        if let Some(s) = found {
            return s;
        }
        if a == w - 1 {
            return a;
        }
        back = back.saturating_mul(4);
    }
}

/// TA-Lib's rows for `[lo, hi)` (`lo >= w - 1`) into `out[..hi - lo]`.
fn index_rows<const MAX: bool>(x: &[f64], w: usize, (lo, hi): (usize, usize), out: &mut [f64]) {
    if lo >= hi {
        return;
    }
    let s = sync_row::<MAX>(x, w, lo);
    let mut tops = Tops::<MAX>::new(x, w);
    for t in s + 1 - w..s {
        tops.push(t);
    }
    tops.push(s);
    // At `s` the first top row is the answer: the rescan of row `w - 1`, or the unique top.
    let mut h = tops.get().0;
    if s >= lo {
        out[s - lo] = h as f64;
    }
    for t in s + 1..hi {
        tops.push(t);
        if h + w <= t {
            h = tops.get().0;
        } else if !above::<MAX>(x[h], x[t]) {
            h = t;
        }
        if t >= lo {
            out[t - lo] = h as f64;
        }
    }
}

fn run_index<S: Splitter, const MAX: bool>(split: &S, x: &[f64], w: usize, out: &mut [f64]) {
    let n = x.len();
    if w == 0 || n < w {
        return;
    }
    split.for_each_piece(w - 1, [&mut out[w - 1..n]], |lo, [piece]| {
        index_rows::<MAX>(x, w, (lo, lo + piece.len()), piece)
    });
}

/// TA-Lib's MAXINDEX: the row of the window's maximum (module spec); rows `< w - 1` untouched.
pub fn max_index<S: Splitter>(split: &S, x: &[f64], w: usize, out: &mut [f64]) {
    run_index::<S, true>(split, x, w, out)
}

/// TA-Lib's MININDEX: the row of the window's minimum (module spec); rows `< w - 1` untouched.
pub fn min_index<S: Splitter>(split: &S, x: &[f64], w: usize, out: &mut [f64]) {
    run_index::<S, false>(split, x, w, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::split::{CutAt, Sequential};
    use crate::kernels::testing::{assert_bits_eq, random_cuts, series_zoo, Lcg};

    /// TA-Lib's loop, literally: a rescan from the trailing row with a strict comparison when the
    /// remembered row left the window, else the incoming row when it ties or beats.
    fn talib_loop(x: &[f64], w: usize, max: bool) -> Vec<f64> {
        let above = |a: f64, b: f64| {
            if max {
                above::<true>(a, b)
            } else {
                above::<false>(a, b)
            }
        };
        let mut out = vec![f64::NAN; x.len()];
        let mut h: Option<usize> = None;
        for today in w - 1..x.len() {
            let trailing = today + 1 - w;
            if h.is_none_or(|i| i < trailing) {
                let mut best = trailing;
                for i in trailing + 1..=today {
                    if above(x[i], x[best]) {
                        best = i;
                    }
                }
                h = Some(best);
            } else if let Some(i) = h {
                if !above(x[i], x[today]) {
                    h = Some(today);
                }
            }
            out[today] = h.map_or(f64::NAN, |i| i as f64);
        }
        out
    }

    fn quantised(n: usize, seed: u64, levels: usize) -> Vec<f64> {
        let mut rng = Lcg(seed);
        let mut v = 10.0f64;
        (0..n)
            .map(|_| {
                if rng.below(3) == 0 {
                    v += rng.below(levels) as f64 - (levels / 2) as f64;
                }
                match rng.below(97) {
                    0 => f64::NAN,
                    1 => -0.0,
                    2 => 0.0,
                    _ => v,
                }
            })
            .collect()
    }

    fn inputs() -> Vec<Vec<f64>> {
        let mut all = series_zoo(1500, 3);
        all.push(vec![5.0; 700]);
        let mut steps = vec![9.0];
        steps.extend(vec![5.0; 600]);
        all.push(steps);
        let mut rise = vec![1.0];
        rise.extend(vec![5.0; 600]);
        all.push(rise);
        all.extend((0..4).map(|s| quantised(1500, s, 3)));
        all
    }

    fn run(s: &impl Splitter, x: &[f64], w: usize, max: bool) -> Vec<f64> {
        let mut out = vec![f64::NAN; x.len()];
        if max {
            max_index(s, x, w, &mut out);
        } else {
            min_index(s, x, w, &mut out);
        }
        out
    }

    #[test]
    fn index_matches_the_talib_loop_including_ties_and_nan() {
        for x in inputs() {
            for w in [1, 2, 3, 5, 14, 30, 200] {
                for max in [true, false] {
                    let got = run(&Sequential, &x, w, max);
                    let want = talib_loop(&x, w, max);
                    assert_bits_eq(&got[w - 1..], &want[w - 1..], "index");
                }
            }
        }
    }

    #[test]
    fn flat_runs_keep_the_phase_they_started_with() {
        // After a larger value: rescans, the first top row (the trailing row).
        let mut x = vec![9.0];
        x.extend(vec![5.0; 9]);
        assert_eq!(
            &run(&Sequential, &x, 3, true)[2..],
            &[0., 1., 2., 3., 4., 5., 6., 7.]
        );
        // After a smaller value: each new 5 ties the top and is taken.
        x[0] = 1.0;
        assert_eq!(
            &run(&Sequential, &x, 3, true)[2..],
            &[1., 3., 4., 5., 6., 7., 8., 9.]
        );
    }

    #[test]
    fn index_is_split_invariant() {
        let mut rng = Lcg(17);
        for x in inputs() {
            for w in [2, 3, 14, 77] {
                for max in [true, false] {
                    let whole = run(&Sequential, &x, w, max);
                    for _ in 0..6 {
                        let cuts = CutAt(random_cuts(&mut rng, x.len(), 16));
                        let got = run(&cuts, &x, w, max);
                        assert_bits_eq(&got[w - 1..], &whole[w - 1..], "index cuts");
                    }
                }
            }
        }
    }
}
