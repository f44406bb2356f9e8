//! Windowed co-moments of two series on the global block grid: the shifted sums `S_x`, `S_y`,
//! `S_xx`, `S_yy`, `S_xy` of every window, the centred moments built from them, and `correl`
//! (TA-Lib CORREL) as the first composition. BETA and the LINEARREG family compose the same sums
//! (LINEARREG with `y` = the row index within the window, or any second series).
//!
//! # Spec (the answer is defined by this sequence of IEEE-754 double operations, no FMA)
//!
//! Two series `x`, `y` of the same length, window length `w`, rows `t >= w - 1`, window
//! `s = t - w + 1 ..= t`. Rows are cut into blocks of `w` rows aligned to row 0 (the grid of
//! `moments.rs`). Let `b = t / w` be the block of `t` and `o = t - b*w` its offset. Each series has
//! its own *reference*, the value at the block start: `rx = x[b*w]` when finite, else `0.0`;
//! `ry = y[b*w]` when finite, else `0.0` (`moments::reference`) (the value always lies inside the window, so the shift keeps
//! the data's offset out of the second moments; a constant window has every shifted value exactly
//! `0.0`). Shifted values: `dx = x - rx`, `dy = y - ry`; the five summands of a row are `dx`, `dy`,
//! `dx*dx`, `dy*dy`, `dx*dy`.
//!
//! * `o = w - 1` (the window is block `b`): each sum is the left-to-right sum (from `0.0`,
//!   `acc = acc + v`) of its summand over the block.
//! * otherwise the window is the suffix of block `b - 1` from offset `o + 1` and the prefix of block
//!   `b` through `o`: each sum is `A + B`, where `A` is the right-to-left sum (from `0.0`,
//!   `acc = v + acc`) over the suffix and `B` the left-to-right sum (`acc = acc + v`) over the
//!   prefix, every summand shifted by the references of block `b`.
//!
//! These are [`CoSums`] `{rx, ry, sx, sy, sxx, syy, sxy}`. With `iw = 1.0 / w` the derived
//! statistics ([`CoStat`]) are:
//! * `mean_x = rx + sx*iw`, `mean_y = ry + sy*iw` (bit-identical to `moments::sma` of each series:
//!   the same references and the same operations);
//! * `m_xx = sxx - sx*(sx*iw)`, `m_yy = syy - sy*(sy*iw)`, each `0.0` if negative (NaN passes) —
//!   the centred sums of squares `Σ(x - mean)²`, not divided by `w` (bit-identical to the `m2` of
//!   `moments.rs`, so `sqrt(m_xx*iw)` is `rolling_std(ddof = 0)`);
//! * `m_xy = sxy - sx*(sy*iw)`, the centred sum of cross-products `Σ(x - mean_x)(y - mean_y)`, not
//!   clamped (it may be negative).
//!
//! `correl = m_xy / sqrt(m_xx*m_yy)` when `m_xx*m_yy > 0`; `0.0` when it is `0.0` (a constant
//! window in either series: TA-Lib's convention); NaN when it is NaN. TA-Lib tests
//! `m_xx*m_yy < 1e-8` instead of `== 0`, which zeroes CORREL on data below about 1e-2; like RSI and
//! NATR, threadx tests exactly zero. Rounding may put `|correl|` an ulp or two past 1; it is not
//! clamped. A window holding a NaN (or an infinity) gives NaN.
//!
//! **LINEARREG family** (TA-Lib LINEARREG, _SLOPE, _INTERCEPT, _ANGLE, TSF): `x` is the row index
//! `s` itself (as a double; exact below 2^53), so `rx = b*w` and every `dx` is a small exact
//! integer; `y` is the price. With `h = (w - 1) * 0.5` (the mean position in the window, oldest
//! row at 0): `slope = m_xy / m_xx`; `intercept = mean_y - slope*h` (the fitted value at the oldest
//! row of the window, TA-Lib's `b`); `linearreg = intercept + slope*(w - 1)` (at the newest row);
//! `tsf = intercept + slope*w` (one row ahead); `angle = atan(slope) * (180.0 / π)` in degrees
//! (the platform's `atan`, [`angle_of`]: the CUDA path applies it on the host to the device's
//! slope). Periods start at 2, so `m_xx > 0`.
//!
//! **BETA** (TA-Lib BETA): `x` and `y` are the one-row returns of the two input series,
//! `ret_s = (v_s - v_{s-1}) / v_{s-1}`, `0.0` when `v_{s-1} == 0.0` (TA-Lib tests `|v| < 1e-8`;
//! threadx tests exactly zero, as ROC does) and `0.0` at row 0 (never in a window of an output
//! row). Each return is recomputed where a sum reads it, never stored. `beta = m_xy / m_xx`, `0.0`
//! when `m_xx == 0.0` (the first series' returns are constant over the window); NaN passes. The
//! window of row `t` is the returns of rows `t - w + 1 ..= t`, so the lookback is `w` (TA-Lib's).
//!
//! Accuracy: the shift bounds the relative error of `m_xx`, `m_yy` by about `w·ε` (see
//! `moments.rs`); `m_xy` is accurate to `w·ε·sqrt(m_xx·m_yy)`. Cost O(1) amortised per row; a
//! piece of rows `[lo, hi)` reads inputs from the start of the block holding `lo - w + 1`.

use super::canon;
use super::scratch::{carve, with_scratch};
use super::split::Splitter;

/// The shifted sums of one window (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CoSums {
    pub rx: f64,
    pub ry: f64,
    pub sx: f64,
    pub sy: f64,
    pub sxx: f64,
    pub syy: f64,
    pub sxy: f64,
}

/// `s - a*b` clamped at `0.0` from below (NaN passes): the centred sum of squares.
#[inline(always)]
fn centred_square(s: f64, a: f64, md: f64) -> f64 {
    let m = s - a * md;
    if m < 0.0 {
        0.0
    } else {
        m
    }
}

impl CoSums {
    /// `rx + sx*iw`.
    #[inline(always)]
    pub fn mean_x(&self, iw: f64) -> f64 {
        self.rx + self.sx * iw
    }
    /// `ry + sy*iw`.
    #[inline(always)]
    pub fn mean_y(&self, iw: f64) -> f64 {
        self.ry + self.sy * iw
    }
    /// `sxx - sx*(sx*iw)`, clamped at `0.0`.
    #[inline(always)]
    pub fn m_xx(&self, iw: f64) -> f64 {
        centred_square(self.sxx, self.sx, self.sx * iw)
    }
    /// `syy - sy*(sy*iw)`, clamped at `0.0`.
    #[inline(always)]
    pub fn m_yy(&self, iw: f64) -> f64 {
        centred_square(self.syy, self.sy, self.sy * iw)
    }
    /// `sxy - sx*(sy*iw)`, not clamped.
    #[inline(always)]
    pub fn m_xy(&self, iw: f64) -> f64 {
        self.sxy - self.sx * (self.sy * iw)
    }
    /// One statistic of the window.
    #[inline(always)]
    pub fn stat(&self, stat: CoStat, iw: f64) -> f64 {
        match stat {
            CoStat::Sx => self.sx,
            CoStat::Sy => self.sy,
            CoStat::Sxx => self.sxx,
            CoStat::Syy => self.syy,
            CoStat::Sxy => self.sxy,
            CoStat::RefX => self.rx,
            CoStat::RefY => self.ry,
            CoStat::MeanX => self.mean_x(iw),
            CoStat::MeanY => self.mean_y(iw),
            CoStat::Mxx => self.m_xx(iw),
            CoStat::Myy => self.m_yy(iw),
            CoStat::Mxy => self.m_xy(iw),
        }
    }
}

/// A statistic [`comoments`] can write (formulas in the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoStat {
    /// The shifted sums.
    Sx,
    Sy,
    Sxx,
    Syy,
    Sxy,
    /// The references the sums are shifted by.
    RefX,
    RefY,
    /// `r + s*iw`.
    MeanX,
    MeanY,
    /// The centred sums of squares and of cross-products.
    Mxx,
    Myy,
    Mxy,
}

/// A block's reference: the value when finite, else `0.0` (`moments::reference`).
#[inline(always)]
fn finite_or_zero(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

/// `[x, y, x*x, y*y, x*y]` after the shift.
#[inline(always)]
fn summands(x: f64, y: f64, rx: f64, ry: f64) -> [f64; 5] {
    let dx = x - rx;
    let dy = y - ry;
    [dx, dy, dx * dx, dy * dy, dx * dy]
}

/// The channels of [`summands`] a kernel reads, as a bit mask over `[sx, sy, sxx, syy, sxy]`
/// (bit `c` for channel `c`): [`sums_rows`] computes only these (the others hold unspecified
/// values, which the kernel never reads).
const ALL_SUMS: u8 = 0b11111;
/// `sy` and `sxy`: what the LINEARREG family needs besides the row index's own sums.
const Y_AND_XY: u8 = 0b10010;
/// Every sum but `syy`: what BETA reads.
const ALL_BUT_YY: u8 = 0b10111;

/// `sx` and `sxx` of the window ending at offset `o` of its block (`w` rows) when `x` is the row
/// index: the shifted values are the integers `o + 1 - w ..= o`, so both sums are exact integers
/// below 2^53 (`w <= 100_000`) and any order of summing them, the spec's included, gives these
/// bits.
#[inline(always)]
fn index_sums(o: usize, w: usize) -> (f64, f64) {
    let (o, m) = (o as i64, (w - 1 - o) as i64);
    let sx = o * (o + 1) / 2 - m * (m + 1) / 2;
    let sxx = o * (o + 1) * (2 * o + 1) / 6 + m * (m + 1) * (2 * m + 1) / 6;
    (sx as f64, sxx as f64)
}

/// The shifted sums of the windows ending at consecutive rows of one block: `s[c][k]` is channel
/// `c` of `[sx, sy, sxx, syy, sxy]` for row `t0 + k` (channels a kernel does not use hold
/// unspecified values).
pub struct BlockSums<'a> {
    pub rx: f64,
    pub ry: f64,
    pub s: [&'a [f64]; 5],
}

impl BlockSums<'_> {
    /// The block's rows.
    pub fn rows(&self) -> usize {
        self.s[1].len()
    }

    /// Row `k`'s sums.
    #[inline(always)]
    pub fn row(&self, k: usize) -> CoSums {
        let [sx, sy, sxx, syy, sxy] = self.s.map(|c| c[k]);
        let (rx, ry) = (self.rx, self.ry);
        CoSums {
            rx,
            ry,
            sx,
            sy,
            sxx,
            syy,
            sxy,
        }
    }

    /// Writes `f(row k's sums)` to `out[k]` for every row, as written ([`canon`]). The slices are
    /// cut to the block's length first, so the loop has no bounds checks and, for a branch-free
    /// `f`, vectorises.
    #[inline(always)]
    pub fn write_each(&self, out: &mut [f64], f: impl Fn(&CoSums) -> f64) {
        let n = self.rows();
        // Written out, not `self.s.map(..)`: see `whole_blocks` on array combinators.
        let c = |i: usize| &self.s[i][..n];
        let (s, out) = ([c(0), c(1), c(2), c(3), c(4)], &mut out[..n]);
        for (k, d) in out.iter_mut().enumerate() {
            let row = CoSums {
                rx: self.rx,
                ry: self.ry,
                sx: s[0][k],
                sy: s[1][k],
                sxx: s[2][k],
                syy: s[3][k],
                sxy: s[4][k],
            };
            *d = canon(f(&row));
        }
    }
}

/// The shifted sums of every window ending in `[lo, hi)` (`lo >= w - 1`), block by block in row
/// order as `emit(t0, sums)`: the channels in `USE`, and with `INDEX_X` (`x` is the row index)
/// `sx` and `sxx` from [`index_sums`] instead of summed.
fn sums_rows<const USE: u8, const INDEX_X: bool>(
    x: impl Fn(usize) -> f64,
    y: impl Fn(usize) -> f64,
    w: usize,
    lo: usize,
    hi: usize,
    mut emit: impl FnMut(usize, &BlockSums),
) {
    debug_assert!(lo + 1 >= w);
    debug_assert!(!INDEX_X || w <= 100_000);
    if lo >= hi {
        return;
    }
    let used = |c: usize| USE & (1 << c) != 0;
    // Per block: the suffix sums of block b - 1 and the prefix sums of block b (the spec's
    // addition chains, every used channel interleaved), then the window sums in place of the
    // prefix sums, and `emit` of the whole block, whose rows do not depend on one another (the
    // output formulas' divisions and roots pipeline instead of waiting behind the chains). Runs
    // of SUM_GROUP whole blocks interleave their blocks' chains too ([`whole_blocks`]).
    const G: usize = SUM_GROUP;
    with_scratch((10 * G + 2) * w, |scratch| {
        let lens: [usize; 12] = std::array::from_fn(|i| if i < 10 { G * w } else { w });
        let [s0, s1, s2, s3, s4, p0, p1, p2, p3, p4, ix, ixx] = carve(scratch, lens);
        let (mut suf, mut sums) = ([s0, s1, s2, s3, s4], [p0, p1, p2, p3, p4]);
        if INDEX_X {
            for (o, (a, b)) in ix.iter_mut().zip(ixx.iter_mut()).enumerate() {
                (*a, *b) = index_sums(o, w);
            }
        }
        let (ix, ixx) = (&*ix, &*ixx);
        let index = INDEX_X.then_some((ix, ixx));
        let mut b = lo / w;
        while b <= (hi - 1) / w {
            let bs = b * w;
            if bs >= lo && (b + G) * w <= hi {
                let refs = whole_blocks::<G, USE>(&x, &y, w, b, &mut suf, &mut sums);
                for (g, r) in refs.into_iter().enumerate() {
                    emit(bs + g * w, &block_sums(r, &sums, index, (g * w, 0, w)));
                }
                b += G;
                continue;
            }
            let o_lo = lo.max(bs) - bs;
            let o_hi = hi.min(bs + w) - bs; // exclusive
            let (rx, ry) = (finite_or_zero(x(bs)), finite_or_zero(y(bs)));
            // Suffix sums of block b - 1 for the rows o_lo .. min(o_hi, w - 1): offsets w-1 down to
            // o_lo + 1, stored at the offset they start from.
            if o_lo < o_hi.min(w - 1) {
                let mut acc = [0.0f64; 5];
                for j in (o_lo + 1..w).rev() {
                    let v = summands(x(bs - w + j), y(bs - w + j), rx, ry);
                    for c in (0..5).filter(|&c| used(c)) {
                        acc[c] = v[c] + acc[c];
                        suf[c][j] = acc[c];
                    }
                }
            }
            // Prefix sums of block b from its start.
            let mut acc = [0.0f64; 5];
            #[allow(clippy::needless_range_loop)] // `o` is a row offset, not only an index
            for o in 0..o_hi {
                let v = summands(x(bs + o), y(bs + o), rx, ry);
                for c in (0..5).filter(|&c| used(c)) {
                    acc[c] = acc[c] + v[c];
                    sums[c][o] = acc[c];
                }
            }
            // Window sums of the rows o_lo.. (the block-ending row's is its prefix sum alone).
            let paired = o_hi.min(w - 1);
            for c in (0..5).filter(|&c| used(c)) {
                let (pre, sf) = (&mut sums[c][..paired], &suf[c][..paired + 1]);
                for o in o_lo..paired {
                    pre[o] = sf[o + 1] + pre[o];
                }
            }
            emit(
                bs + o_lo,
                &block_sums((rx, ry), &sums, index, (0, o_lo, o_hi)),
            );
            b += 1;
        }
    });
}

/// The sums of rows `o_lo..o_hi` of a block stored from `at` in `sums` (or, for the row index's
/// `sx` and `sxx`, read from the closed-form tables `index` by offset).
#[inline(always)]
fn block_sums<'a>(
    (rx, ry): (f64, f64),
    sums: &'a [&mut [f64]; 5],
    index: Option<(&'a [f64], &'a [f64])>,
    (at, o_lo, o_hi): (usize, usize, usize),
) -> BlockSums<'a> {
    let channel = |c: usize| match (index, c) {
        (Some((ix, _)), 0) => &ix[o_lo..o_hi],
        (Some((_, ixx)), 2) => &ixx[o_lo..o_hi],
        _ => &sums[c][at + o_lo..at + o_hi],
    };
    let s = [channel(0), channel(1), channel(2), channel(3), channel(4)];
    BlockSums { rx, ry, s }
}

/// Whole blocks [`sums_rows`] handles together.
const SUM_GROUP: usize = 4;

/// The window sums of every row of the `G` whole blocks `b .. b + G` (`b >= 1` unless `w == 1`)
/// into `sums[c][g·w + o]`, through `suf`; returns each block's references. Per block the same
/// additions in the same order as the one-block path of [`sums_rows`]. The blocks' chains are
/// independent, so they run side by side as `[f64; G]` lanes, offset-major in `suf` (offset `j`
/// of every block together): that hides the addition latency that bounds one block's chains and
/// lets each channel's `G` chains live in vector registers.
#[inline(always)]
fn whole_blocks<const G: usize, const USE: u8>(
    x: &impl Fn(usize) -> f64,
    y: &impl Fn(usize) -> f64,
    w: usize,
    b: usize,
    suf: &mut [&mut [f64]; 5],
    sums: &mut [&mut [f64]; 5],
) -> [(f64, f64); G] {
    let used = |c: usize| USE & (1 << c) != 0;
    let (mut bs, mut refs) = ([0usize; G], [(0.0f64, 0.0f64); G]);
    let (mut rx, mut ry) = ([0.0f64; G], [0.0f64; G]);
    for g in 0..G {
        bs[g] = (b + g) * w;
        refs[g] = (finite_or_zero(x(bs[g])), finite_or_zero(y(bs[g])));
        (rx[g], ry[g]) = refs[g];
    }
    // The summands of offset `o` of every block (row `bs[g] + o - back`), channel-major:
    // `v[c][g]`. Plain loops, not `array::from_fn` / `map`: those are calls LLVM inlines or not
    // depending on unrelated code (one build left them out of line here, and LINEARREG took 1.4x
    // its time); loops over constant bounds are always unrolled in place.
    let lanes = |o: usize, back: usize| -> [[f64; G]; 5] {
        let mut v = [[0.0f64; G]; 5];
        for g in 0..G {
            let t = bs[g] + o - back;
            let s = summands(x(t), y(t), rx[g], ry[g]);
            for c in 0..5 {
                v[c][g] = s[c];
            }
        }
        v
    };
    let [s0, s1, s2, s3, s4] = suf;
    let lane: [&mut [[f64; G]]; 5] = [
        lanes_of(s0, w),
        lanes_of(s1, w),
        lanes_of(s2, w),
        lanes_of(s3, w),
        lanes_of(s4, w),
    ];
    // Suffix sums of each block's predecessor, right to left: `lane[c][j]` from offset `j` on.
    let mut acc = [[0.0f64; G]; 5];
    for j in (1..w).rev() {
        let v = lanes(j, w);
        for c in (0..5).filter(|&c| used(c)) {
            for g in 0..G {
                acc[c][g] = v[c][g] + acc[c][g];
            }
            lane[c][j] = acc[c];
        }
    }
    // Prefix sums, left to right; offset `o`'s window sum (`suffix(o + 1) + prefix(o)`, the
    // block-ending row's the prefix alone) goes over `lane[c][o]`, whose suffix sum was read at
    // `o - 1`.
    let mut acc = [[0.0f64; G]; 5];
    for o in 0..w {
        let v = lanes(o, 0);
        for c in (0..5).filter(|&c| used(c)) {
            for g in 0..G {
                acc[c][g] = acc[c][g] + v[c][g];
            }
            let mut sum = acc[c];
            if let Some(sf) = lane[c].get(o + 1) {
                for g in 0..G {
                    sum[g] = sf[g] + acc[c][g];
                }
            }
            lane[c][o] = sum;
        }
    }
    // Block-major, as the emitters read them.
    for c in (0..5).filter(|&c| used(c)) {
        for (g, block) in sums[c][..G * w].chunks_exact_mut(w).enumerate() {
            for (d, v) in block.iter_mut().zip(lane[c].iter()) {
                *d = v[g];
            }
        }
    }
    refs
}

/// The first `w` rows of `G` lanes of `s` (offset-major, as [`whole_blocks`] stores them).
#[inline(always)]
fn lanes_of<const G: usize>(s: &mut [f64], w: usize) -> &mut [[f64; G]] {
    &mut s.as_chunks_mut::<G>().0[..w]
}

/// Runs a co-moments kernel over every output row `t >= w - 1` of `outs` (each as long as `x`):
/// `write(piece_outs, i, t, sums)` stores the outputs of rows `t ..` (one block's rows, `sums`) at
/// index `i ..` of the piece. Rows
/// `< w - 1` are left untouched (warm-up). `x` and `y` must have the same length.
pub fn run_comoments<S: Splitter, const K: usize>(
    split: &S,
    x: &[f64],
    y: &[f64],
    w: usize,
    outs: [&mut [f64]; K],
    write: impl Fn(&mut [&mut [f64]; K], usize, usize, &BlockSums) + Sync + Send,
) {
    assert_eq!(x.len(), y.len(), "comoments: x and y differ in length");
    let n = x.len();
    if w == 0 || n < w {
        return;
    }
    run_comoments_of::<S, K, ALL_SUMS, false>(split, n, |i| x[i], |i| y[i], w, outs, write);
}

/// [`run_comoments`] over two series given by their values at each row (`n` rows): a derived
/// series (returns, the row index) is read where the sums need it, never stored. `USE` and
/// `INDEX_X` as in [`sums_rows`].
fn run_comoments_of<S: Splitter, const K: usize, const USE: u8, const INDEX_X: bool>(
    split: &S,
    n: usize,
    x: impl Fn(usize) -> f64 + Sync + Send + Copy,
    y: impl Fn(usize) -> f64 + Sync + Send + Copy,
    w: usize,
    outs: [&mut [f64]; K],
    write: impl Fn(&mut [&mut [f64]; K], usize, usize, &BlockSums) + Sync + Send,
) {
    if w == 0 || n < w {
        return;
    }
    let tail = outs.map(|o| &mut o[w - 1..n]);
    split.for_each_piece(w - 1, tail, |lo, mut piece| {
        let hi = lo + piece[0].len();
        sums_rows::<USE, INDEX_X>(x, y, w, lo, hi, |t, s| write(&mut piece, t - lo, t, s));
    });
}

/// Fills `outs[j]` with statistic `stats[j]` of every window (rows `>= w - 1`; earlier rows are
/// left untouched): up to all five shifted sums with their references, or the means and centred
/// moments, in one pass.
pub fn comoments<S: Splitter, const K: usize>(
    split: &S,
    x: &[f64],
    y: &[f64],
    w: usize,
    stats: [CoStat; K],
    outs: [&mut [f64]; K],
) {
    let iw = 1.0 / w as f64;
    run_comoments(split, x, y, w, outs, |o, i, _, b| {
        for (dst, stat) in o.iter_mut().zip(stats) {
            b.write_each(&mut dst[i..], |s| s.stat(stat, iw));
        }
    });
}

/// Pearson's correlation coefficient over `period` rows (TA-Lib CORREL; see the module doc for
/// the exact-zero test). Rows `< period - 1` are left untouched.
pub fn correl<S: Splitter>(split: &S, x: &[f64], y: &[f64], period: usize, out: &mut [f64]) {
    let iw = 1.0 / period as f64;
    run_comoments(split, x, y, period, [out], |[o], i, _, b| {
        b.write_each(&mut o[i..], |s| correl_of(s, iw));
    });
}

/// `m_xy / sqrt(m_xx*m_yy)`, `0.0` when the product is zero.
#[inline(always)]
pub fn correl_of(s: &CoSums, iw: f64) -> f64 {
    let den = s.m_xx(iw) * s.m_yy(iw);
    if den == 0.0 {
        0.0
    } else {
        s.m_xy(iw) / den.sqrt()
    }
}

/// One output of the LINEARREG family (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinReg {
    /// TA-Lib LINEARREG: the fitted value at the newest row.
    Value,
    /// TA-Lib LINEARREG_SLOPE.
    Slope,
    /// TA-Lib LINEARREG_INTERCEPT: the fitted value at the oldest row of the window.
    Intercept,
    /// TA-Lib LINEARREG_ANGLE: the slope's angle in degrees.
    Angle,
    /// TA-Lib TSF: the fitted value one row past the newest.
    Tsf,
}

/// The least-squares line of `y` against the row index over `period` rows (`period >= 2`), as
/// `what`. Rows `< period - 1` are left untouched.
pub fn linreg<S: Splitter>(split: &S, y: &[f64], period: usize, what: LinReg, out: &mut [f64]) {
    let iw = 1.0 / period as f64;
    let h = (period - 1) as f64 * 0.5;
    let (last, ahead) = ((period - 1) as f64, period as f64);
    // The row index's sums are closed forms; `syy` is not read.
    run_comoments_of::<S, 1, Y_AND_XY, true>(
        split,
        y.len(),
        // Through i64: one conversion instruction; the same value (exact below 2^53).
        |i| i as i64 as f64,
        |i| y[i],
        period,
        [out],
        |[o], i, _, b| {
            let o = &mut o[i..];
            let slope = |s: &CoSums| s.m_xy(iw) / s.m_xx(iw);
            let intercept = |s: &CoSums| s.mean_y(iw) - slope(s) * h;
            // One loop per output, so none branches per row.
            match what {
                LinReg::Slope => b.write_each(o, slope),
                LinReg::Intercept => b.write_each(o, intercept),
                LinReg::Value => b.write_each(o, |s| intercept(s) + slope(s) * last),
                LinReg::Tsf => b.write_each(o, |s| intercept(s) + slope(s) * ahead),
                LinReg::Angle => b.write_each(o, |s| angle_of(slope(s))),
            }
        },
    );
}

/// LINEARREG_ANGLE from the slope: `atan(slope) * (180.0 / π)` with the platform's `atan` (the
/// CUDA pipeline applies it on the host to the device's slope bits, so both give these bits).
#[inline(always)]
pub fn angle_of(slope: f64) -> f64 {
    slope.atan() * (180.0 / std::f64::consts::PI)
}

/// The one-row return of `v` at row `s` (see the module doc).
#[inline(always)]
fn one_row_return(v: &[f64], s: usize) -> f64 {
    if s == 0 {
        return 0.0;
    }
    let p = v[s - 1];
    if p == 0.0 {
        0.0
    } else {
        (v[s] - p) / p
    }
}

/// TA-Lib BETA: the regression slope of `y`'s one-row returns on `x`'s over `period` returns
/// (module doc). Rows `< period` are unspecified (row `period - 1` is written).
pub fn beta<S: Splitter>(split: &S, x: &[f64], y: &[f64], period: usize, out: &mut [f64]) {
    let iw = 1.0 / period as f64;
    let n = x.len().min(y.len());
    run_comoments_of::<S, 1, ALL_BUT_YY, false>(
        split,
        n,
        |i| one_row_return(x, i),
        |i| one_row_return(y, i),
        period,
        [out],
        |[o], i, _, b| {
            b.write_each(&mut o[i..], |s| {
                let mxx = s.m_xx(iw);
                if mxx == 0.0 {
                    0.0
                } else {
                    s.m_xy(iw) / mxx
                }
            });
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::moments::{rolling_std, sma};
    use crate::kernels::split::{CutAt, Sequential};
    use crate::kernels::testing::{assert_bits_eq, random_cuts, series_zoo, Lcg};

    const ALL: [CoStat; 12] = [
        CoStat::Sx,
        CoStat::Sy,
        CoStat::Sxx,
        CoStat::Syy,
        CoStat::Sxy,
        CoStat::RefX,
        CoStat::RefY,
        CoStat::MeanX,
        CoStat::MeanY,
        CoStat::Mxx,
        CoStat::Myy,
        CoStat::Mxy,
    ];

    fn all_stats<S: Splitter>(s: &S, x: &[f64], y: &[f64], w: usize) -> Vec<Vec<f64>> {
        let mut v = vec![vec![f64::from_bits(0x7ff8_dead_0000_0001); x.len()]; ALL.len()];
        let [a, b, c, d, e, f, g, h, i, j, k, l] = &mut v[..] else {
            unreachable!()
        };
        comoments(s, x, y, w, ALL, [a, b, c, d, e, f, g, h, i, j, k, l]);
        v
    }

    fn run_correl<S: Splitter>(s: &S, x: &[f64], y: &[f64], w: usize) -> Vec<f64> {
        let mut out = vec![f64::NAN; x.len()];
        correl(s, x, y, w, &mut out);
        out
    }

    /// Pairs of awkward series: each zoo series against a noisy linear function of itself and
    /// against the next zoo series, plus NaN / ±inf holes.
    fn pairs(n: usize, seed: u64) -> Vec<(Vec<f64>, Vec<f64>)> {
        let zoo = series_zoo(n, seed);
        let mut rng = Lcg(seed ^ 0x5eed);
        let mut out = Vec::new();
        for (i, x) in zoo.iter().enumerate() {
            let lin: Vec<f64> = x
                .iter()
                .map(|v| -2.5 * v + 0.3 * rng.normal() * v.abs().max(1e-9) * 1e-3)
                .collect();
            out.push((x.clone(), lin));
            out.push((x.clone(), zoo[(i + 1) % zoo.len()].clone()));
        }
        let mut holes = zoo[0].clone();
        for _ in 0..(n / 150).max(1) {
            let i = rng.below(n);
            holes[i] = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0][rng.below(4)];
        }
        out.push((holes, zoo[4].clone()));
        out
    }

    /// Two-pass statistics per window, in f64 with compensated (Neumaier) sums:
    /// the reference the kernel is compared with.
    fn naive_window(x: &[f64], y: &[f64]) -> [f64; 5] {
        fn ksum(v: impl Iterator<Item = f64>) -> f64 {
            let (mut s, mut c) = (0.0f64, 0.0f64);
            for x in v {
                let t = s + x;
                c += if s.abs() >= x.abs() {
                    (s - t) + x
                } else {
                    (x - t) + s
                };
                s = t;
            }
            s + c
        }
        let n = x.len() as f64;
        let mx = ksum(x.iter().copied()) / n;
        let my = ksum(y.iter().copied()) / n;
        // The corrected two-pass form: subtracting `Σd·Σe/n` removes the first-order effect of
        // the rounding of the means (which dominates on offset data).
        let (ex, ey) = (
            ksum(x.iter().map(|a| a - mx)),
            ksum(y.iter().map(|b| b - my)),
        );
        let mxx = ksum(x.iter().map(|a| (a - mx) * (a - mx))) - ex * ex / n;
        let myy = ksum(y.iter().map(|b| (b - my) * (b - my))) - ey * ey / n;
        let mxy = ksum(x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my))) - ex * ey / n;
        [mx, my, mxx, myy, mxy]
    }

    #[test]
    fn moments_match_a_two_pass_reference() {
        for (x, y) in pairs(1500, 5).into_iter().take(10) {
            for w in [1, 2, 3, 7, 20, 64] {
                let got = all_stats(&Sequential, &x, &y, w);
                let iw = 1.0 / w as f64;
                for t in w - 1..x.len() {
                    let want = naive_window(&x[t + 1 - w..=t], &y[t + 1 - w..=t]);
                    let (vx, vy) = (want[2] * iw, want[3] * iw);
                    let sx = vx.sqrt().max(want[0].abs() * 1e-16);
                    let sy = vy.sqrt().max(want[1].abs() * 1e-16);
                    let tol = 1e-12 * w as f64;
                    assert!(
                        (got[7][t] - want[0]).abs() <= tol * want[0].abs().max(sx),
                        "mean_x t={t} w={w}"
                    );
                    assert!(
                        (got[8][t] - want[1]).abs() <= tol * want[1].abs().max(sy),
                        "mean_y t={t} w={w}"
                    );
                    // Second moments: relative to the scale of the window's spread.
                    assert!(
                        (got[9][t] * iw - vx).abs() <= tol * vx.max(f64::MIN_POSITIVE) + 1e-300,
                        "m_xx t={t} w={w}: {} vs {}",
                        got[9][t] * iw,
                        vx
                    );
                    assert!(
                        (got[10][t] * iw - vy).abs() <= tol * vy.max(f64::MIN_POSITIVE) + 1e-300,
                        "m_yy t={t} w={w}: {} vs {vy}",
                        got[10][t] * iw
                    );
                    assert!(
                        (got[11][t] * iw - want[4] * iw).abs() <= tol * (vx * vy).sqrt() + 1e-300,
                        "m_xy t={t} w={w}"
                    );
                }
            }
        }
    }

    #[test]
    fn correl_matches_a_two_pass_reference() {
        for (x, y) in pairs(1200, 9).into_iter().take(10) {
            for w in [2, 3, 5, 14, 30, 100] {
                let got = run_correl(&Sequential, &x, &y, w);
                for t in w - 1..x.len() {
                    let [_, _, mxx, myy, mxy] = naive_window(&x[t + 1 - w..=t], &y[t + 1 - w..=t]);
                    let den = mxx * myy;
                    if den == 0.0 {
                        continue; // constant windows: the exact-zero branch is tested below
                    }
                    let want = mxy / den.sqrt();
                    assert!(
                        (got[t] - want).abs() <= 1e-12 * w as f64,
                        "t={t} w={w}: {} vs {want}",
                        got[t]
                    );
                }
            }
        }
    }

    /// The means are `sma`'s bits and `sqrt(m_xx / w)` is `rolling_std(ddof = 0)`'s: the same
    /// grid, references and operations as `moments.rs`.
    #[test]
    fn means_and_variances_are_the_moments_bits() {
        for (x, y) in pairs(2100, 3) {
            for w in [1, 2, 5, 9, 40, 1024] {
                let got = all_stats(&Sequential, &x, &y, w);
                let iw = 1.0 / w as f64;
                for (series, mean, m2) in [(&x, &got[7], &got[9]), (&y, &got[8], &got[10])] {
                    let mut want = vec![0.0; x.len()];
                    sma(&Sequential, series, w, &mut want);
                    assert_bits_eq(&mean[w - 1..], &want[w - 1..], "mean vs sma");
                    rolling_std(&Sequential, series, w, 0, &mut want);
                    let sd: Vec<f64> = m2.iter().map(|m| (m * iw).sqrt()).collect();
                    assert_bits_eq(&sd[w - 1..], &want[w - 1..], "m_xx vs rolling_std");
                }
            }
        }
    }

    #[test]
    fn constant_windows_give_zero_correl_and_nan_poisons_its_windows() {
        let n = 300;
        let mut x: Vec<f64> = (0..n).map(|i| 100.0 + (i as f64 * 0.3).sin()).collect();
        let y: Vec<f64> = (0..n).map(|i| 5.0 + (i as f64 * 0.17).cos()).collect();
        for v in &mut x[100..160] {
            *v = 101.25;
        }
        x[250] = f64::NAN;
        let w = 20;
        let c = run_correl(&Sequential, &x, &y, w);
        for (t, v) in c.iter().enumerate().take(160).skip(119) {
            assert_eq!(v.to_bits(), 0.0f64.to_bits(), "row {t}");
        }
        for (t, v) in c.iter().enumerate().skip(w - 1) {
            assert_eq!(v.is_nan(), (250..250 + w).contains(&t), "row {t}");
        }
        // Perfectly (anti-)correlated windows.
        let lin: Vec<f64> = y.iter().map(|v| 3.0 * v - 7.0).collect();
        let neg: Vec<f64> = y.iter().map(|v| -0.5 * v + 1.0).collect();
        let (p, m) = (
            run_correl(&Sequential, &y, &lin, w),
            run_correl(&Sequential, &y, &neg, w),
        );
        for t in w - 1..n {
            assert!(
                (p[t] - 1.0).abs() < 1e-13 && (m[t] + 1.0).abs() < 1e-13,
                "row {t}"
            );
        }
    }

    #[test]
    fn every_split_gives_identical_bits() {
        let mut rng = Lcg(21);
        for (x, y) in pairs(3000, 13) {
            for w in [1, 2, 5, 20, 77, 1024] {
                let whole = all_stats(&Sequential, &x, &y, w);
                let whole_c = run_correl(&Sequential, &x, &y, w);
                for _ in 0..4 {
                    let cuts = CutAt(random_cuts(&mut rng, x.len(), 16));
                    let got = all_stats(&cuts, &x, &y, w);
                    for (g, want) in got.iter().zip(&whole) {
                        assert_bits_eq(g, want, "comoments split");
                    }
                    assert_bits_eq(&run_correl(&cuts, &x, &y, w), &whole_c, "correl split");
                }
            }
        }
    }

    const LINREG_ALL: [LinReg; 5] = [
        LinReg::Value,
        LinReg::Slope,
        LinReg::Intercept,
        LinReg::Angle,
        LinReg::Tsf,
    ];

    fn run_linreg<S: Splitter>(s: &S, y: &[f64], w: usize, what: LinReg) -> Vec<f64> {
        let mut out = vec![f64::NAN; y.len()];
        linreg(s, y, w, what, &mut out);
        out
    }

    fn run_beta<S: Splitter>(s: &S, x: &[f64], y: &[f64], w: usize) -> Vec<f64> {
        let mut out = vec![f64::NAN; x.len()];
        beta(s, x, y, w, &mut out);
        out
    }

    #[test]
    fn linreg_matches_a_two_pass_reference() {
        for y in series_zoo(1500, 4) {
            for w in [2, 3, 7, 14, 50] {
                let got: Vec<Vec<f64>> = LINREG_ALL
                    .iter()
                    .map(|&k| run_linreg(&Sequential, &y, w, k))
                    .collect();
                let js: Vec<f64> = (0..w).map(|j| j as f64).collect();
                for t in w - 1..y.len() {
                    let win = &y[t + 1 - w..=t];
                    let [mj, my, mjj, myy, mjy] = naive_window(&js, win);
                    let slope = mjy / mjj;
                    let b = my - slope * mj;
                    // Natural scales: the slope's is sd(y)/sd(j); the fitted values' the data's.
                    let s_scale = (myy / mjj).sqrt() + my.abs() * 1e-16;
                    let tol = 1e-12 * w as f64;
                    let want = [
                        b + slope * (w - 1) as f64,
                        slope,
                        b,
                        slope.atan().to_degrees(),
                        b + slope * w as f64,
                    ];
                    let scales = [
                        my.abs() + s_scale * w as f64,
                        s_scale,
                        my.abs() + s_scale * w as f64,
                        57.3 * s_scale,
                        my.abs() + s_scale * w as f64,
                    ];
                    for k in 0..5 {
                        assert!(
                            (got[k][t] - want[k]).abs() <= tol * scales[k] + 1e-300,
                            "{:?} w={w} t={t}: {} vs {}",
                            LINREG_ALL[k],
                            got[k][t],
                            want[k]
                        );
                    }
                }
            }
        }
    }

    fn returns(v: &[f64]) -> Vec<f64> {
        (0..v.len())
            .map(|s| {
                if s == 0 || v[s - 1] == 0.0 {
                    0.0
                } else {
                    (v[s] - v[s - 1]) / v[s - 1]
                }
            })
            .collect()
    }

    /// The row index's closed-form sums are the summed ones, bit for bit, and leaving channels
    /// out changes none of the others (every block offset, windows up to the period limit).
    #[test]
    fn index_sums_and_masks_give_the_summed_bits() {
        let mut rng = Lcg(5);
        for w in [2usize, 3, 7, 14, 30, 257, 100_000] {
            let n = 9 * w + 5;
            let y: Vec<f64> = (0..n).map(|_| 1e6 + rng.normal()).collect();
            let collect = |full: bool| {
                let mut rows = Vec::new();
                let keep = |_: usize, b: &BlockSums| {
                    (0..b.rows())
                        .map(|k| b.row(k))
                        .map(|s| [s.sx, s.sy, s.sxx, s.sxy].map(f64::to_bits))
                        .collect::<Vec<_>>()
                };
                if full {
                    sums_rows::<ALL_SUMS, false>(
                        |i| i as f64,
                        |i| y[i],
                        w,
                        w - 1,
                        n,
                        |t, s| rows.extend(keep(t, s)),
                    );
                } else {
                    sums_rows::<Y_AND_XY, true>(
                        |i| i as f64,
                        |i| y[i],
                        w,
                        w - 1,
                        n,
                        |t, s| rows.extend(keep(t, s)),
                    );
                }
                rows
            };
            assert_eq!(collect(true), collect(false), "w = {w}");
        }
    }

    #[test]
    fn beta_matches_a_two_pass_reference_on_returns() {
        for (x, y) in pairs(1200, 17).into_iter().take(10) {
            let (rx, ry) = (returns(&x), returns(&y));
            for w in [1, 2, 5, 20, 60] {
                let got = run_beta(&Sequential, &x, &y, w);
                for t in w..x.len() {
                    let [_, _, mxx, myy, mxy] =
                        naive_window(&rx[t + 1 - w..=t], &ry[t + 1 - w..=t]);
                    if mxx == 0.0 || !mxx.is_finite() {
                        continue; // the zero branch is tested below
                    }
                    let want = mxy / mxx;
                    let tol = 1e-11 * w as f64 * ((myy / mxx).sqrt() + want.abs());
                    assert!(
                        (got[t] - want).abs() <= tol,
                        "w={w} t={t}: {} vs {want}",
                        got[t]
                    );
                }
            }
        }
        // Constant first series: beta 0; a zero price gives a 0 return; a NaN poisons the
        // windows of the two returns that read it.
        let y: Vec<f64> = (0..60).map(|i| 10.0 + (i as f64 * 0.7).sin()).collect();
        let flat = vec![4.0; 60];
        let b = run_beta(&Sequential, &flat, &y, 5);
        assert!(b[5..].iter().all(|v| v.to_bits() == 0.0f64.to_bits()));
        let mut x: Vec<f64> = (0..60).map(|i| 5.0 + (i as f64 * 0.3).cos()).collect();
        x[20] = 0.0;
        x[40] = f64::NAN;
        let b = run_beta(&Sequential, &x, &y, 5);
        let (rx, ry) = (returns(&x), returns(&y));
        assert_eq!(rx[21], 0.0);
        for t in 5..60 {
            assert_eq!(b[t].is_nan(), (40..46).contains(&t), "row {t}");
            if !(40..46).contains(&t) {
                let [_, _, mxx, _, mxy] = naive_window(&rx[t - 4..=t], &ry[t - 4..=t]);
                assert!((b[t] - mxy / mxx).abs() < 1e-9, "row {t}");
            }
        }
    }

    #[test]
    fn linreg_and_beta_give_identical_bits_for_every_split() {
        let mut rng = Lcg(31);
        for (x, y) in pairs(2500, 23).into_iter().step_by(2) {
            for w in [2, 3, 14, 77, 1024] {
                for k in LINREG_ALL {
                    let whole = run_linreg(&Sequential, &y, w, k);
                    for _ in 0..3 {
                        let cuts = CutAt(random_cuts(&mut rng, y.len(), 16));
                        let got = run_linreg(&cuts, &y, w, k);
                        assert_bits_eq(&got[w - 1..], &whole[w - 1..], "linreg split");
                    }
                }
                let whole = run_beta(&Sequential, &x, &y, w);
                for _ in 0..3 {
                    let cuts = CutAt(random_cuts(&mut rng, x.len(), 16));
                    let got = run_beta(&cuts, &x, &y, w);
                    assert_bits_eq(&got[w..], &whole[w..], "beta split");
                }
            }
        }
    }

    /// TA-Lib 0.8.2's CORREL on two random walks near 100 (the fixture, written by
    /// `scripts/correl_talib_fixture.py`, holds the inputs and TA-Lib's outputs as hex bit
    /// patterns). Well-conditioned data, so TA-Lib's unshifted running sums are accurate too:
    /// agreement to 1e-9 absolute. The worst difference,
    /// 6.7e-10 (period 2, a window of tiny spread), is TA-Lib's own error against exact rational
    /// arithmetic; at periods 5 to 30 TA-Lib is within 2e-12 of the exact value.
    #[test]
    fn correl_matches_talib() {
        let text = include_str!("testdata/correl_talib.txt");
        let parse = |s: &str| f64::from_bits(u64::from_str_radix(s, 16).unwrap());
        let mut lines = text.lines().filter(|l| !l.starts_with('#'));
        let header: Vec<usize> = lines
            .next()
            .unwrap()
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        let rows: Vec<Vec<f64>> = lines
            .map(|l| l.split_whitespace().map(parse).collect())
            .collect();
        let x: Vec<f64> = rows.iter().map(|r| r[0]).collect();
        let y: Vec<f64> = rows.iter().map(|r| r[1]).collect();
        let mut worst = 0.0f64;
        for (j, &w) in header.iter().enumerate() {
            let got = run_correl(&Sequential, &x, &y, w);
            for t in w - 1..x.len() {
                let want = rows[t][2 + j];
                let err = (got[t] - want).abs();
                worst = worst.max(err);
                assert!(err <= 1e-9, "w={w} t={t}: {} vs TA-Lib {want}", got[t]);
            }
        }
        eprintln!("correl vs TA-Lib: worst absolute difference {worst:e}");
    }
}
