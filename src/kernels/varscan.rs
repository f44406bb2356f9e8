//! The fixed-block linear scan with time-varying coefficients, `y_t = a_t·y_{t-1} + b_t`: what
//! KAMA-type adaptive averages need (`a_t = 1 - sc_t`, `b_t = sc_t·x_t`). The constant-coefficient
//! scan of `scan.rs` is the special case `a_t = a`, and gives the same bits (tested).
//!
//! # Spec
//! One channel. `y_p = seed` at the seed row `p`; for `t > p`, `y_t = a_t·y_{t-1} + b_t`, where
//! `(a_t, b_t)` is a pure function of the inputs at fixed rows (the *drive*). Rows are cut into
//! blocks of [`SCAN_BLOCK`] rows aligned to row 0; block `k` covers rows
//! `start_k = max(k·B, p + 1) .. end_k = min((k+1)·B, n)`.
//! 1. Local scan from a zero carry, with the running product of the coefficients:
//!    `L_start = b_start`, `A_start = a_start`; for `t > start_k`: `L_t = a_t·L_{t-1} + b_t`
//!    (multiply, then add) and `A_t = A_{t-1}·a_t`.
//! 2. Carries in block order: `C_first = seed`, `C_{k+1} = L_{end_k - 1} + A_{end_k - 1}·C_k`.
//! 3. Every row: `y_t = L_t + A_t·C_k` (multiply, then add).
//!
//! No FMA, no `pow`. Step 2 is step 3 at the block's last row, so carrying inline through a piece
//! and chaining carries from a pre-pass give the same bits; a piece that starts inside a block
//! recomputes that block from its start. The answer differs from the naive sequential loop in the
//! last bits (the products `A_t` re-associate the recurrence; ≈1e-15 relative for `|a_t| <= 1`);
//! this spec defines it. A NaN `a_t` or `b_t` poisons every later row (as the recurrence does), and
//! an infinite one can turn `A_t·C_k` into `0·inf = NaN` where the sequential loop would not: keep
//! drives finite.
//!
//! # Execution (all three evaluate exactly the formulas above, so they give the same bits)
//! * One piece carries inline.
//! * A splitter with several workers ([`Splitter::workers`]): the chained single pass of
//!   `scan.rs`. Workers claim units of [`LANES`] blocks in increasing order; each runs its unit's
//!   local scans, takes the carry out of the previous unit (after a short wait, computing it
//!   itself from the last published one), publishes its own carry out, then fixes up and writes
//!   its rows while they are in cache. Every row's drive is computed once.
//! * Other splitters (arbitrary cuts, device sets): a pre-pass (through
//!   [`Splitter::map_indexed`]) computes `(L_end, A_end)` of every block before the last piece,
//!   the carries are chained on the calling thread ([`chain_carries`], shared with the GPU path),
//!   and each piece starts from its first block's carry.
//!
//! The last piece reports the state after the last row through [`Splitter::scan_carry_out`], as
//! `run_scan` does (a device set's GPUs continue from it).

use std::time::Instant;

use super::canon;
use super::chained::{Carries, Claims, PATIENCE};
use super::scan::{skewed_lanes, SCAN_BLOCK};
use super::scratch::with_scratch;
use super::split::{cut_pieces, Splitter};
use super::stream_store::{store_rows, with_store, Store};

/// Fills `a[i]` and `b[i]` with the coefficients of row `start + i` (called once per block, or
/// once per unit of [`LANES`] blocks).
pub trait VarDrive: Fn(usize, &mut [f64], &mut [f64]) + Sync + Send {}
impl<F: Fn(usize, &mut [f64], &mut [f64]) + Sync + Send> VarDrive for F {}

/// The two columns of a run of rows: the drive's `a` and `b`, which step 1 turns into `A` and `L`
/// in place. Two arrays, not `[a, b]` pairs: the drive computes its rows in vector registers, and
/// pairs would cost it shuffles to interleave (about 5% of KAMA's time).
pub struct Cols<'a> {
    pub a: &'a mut [f64],
    pub b: &'a mut [f64],
}

impl<'a> Cols<'a> {
    /// The first `rows` values of each half of `raw` (`2·cap` values of scratch, `rows <= cap`).
    fn of(raw: &'a mut [f64], cap: usize, rows: usize) -> Self {
        let (a, b) = raw.split_at_mut(cap);
        Cols {
            a: &mut a[..rows],
            b: &mut b[..rows],
        }
    }

    /// Rows `lo..hi` of both columns.
    fn rows(&mut self, lo: usize, hi: usize) -> Cols<'_> {
        Cols {
            a: &mut self.a[lo..hi],
            b: &mut self.b[lo..hi],
        }
    }

    /// Row `i` as `[a, b]` (`[A, L]` after step 1).
    fn at(&self, i: usize) -> [f64; 2] {
        [self.a[i], self.b[i]]
    }

    /// Rows `from..` after step 1, with the block's carry in.
    fn fixed(&self, from: usize, carry: f64) -> Fixed<'_> {
        Fixed {
            a: &self.a[from..],
            l: &self.b[from..],
            carry,
        }
    }

    /// Runs the drive over these rows, from row `start`.
    fn fill(&mut self, drive: &impl VarDrive, start: usize) {
        drive(start, self.a, self.b)
    }
}

/// Rows of block `k` for a seed row `p` and `n` rows.
#[inline(always)]
pub fn block_span(k: usize, p: usize, n: usize) -> (usize, usize) {
    ((k * SCAN_BLOCK).max(p + 1), ((k + 1) * SCAN_BLOCK).min(n))
}

/// Step 1 in place: the columns `a`, `b` of one block's rows become `A`, `L`.
#[inline(always)]
pub fn local_in_place(c: &mut Cols) {
    // Row 0: A = a, L = b (already in place).
    let (mut p, mut l) = match (c.a.first(), c.b.first()) {
        (Some(&a), Some(&b)) => (a, b),
        _ => return,
    };
    for (a, b) in c.a.iter_mut().zip(c.b.iter_mut()).skip(1) {
        (p, l) = (p * *a, *a * l + *b);
        (*a, *b) = (p, l);
    }
}

/// Blocks whose local scans run interleaved (not part of the spec: each block's chain is the
/// same arithmetic either way). One block's chain is bound by the latency of `a·L + b`; eight
/// independent chains keep the pipelines full, as in `scan.rs`.
const LANES: usize = 8;

/// [`local_in_place`] on `LANES` full blocks stored back to back, interleaved.
#[inline(always)]
fn local_lanes_in_place(c: &mut Cols) {
    // Fixed-size views so the interleaved loop carries no bounds checks.
    fn blocks(col: &mut [f64]) -> &mut [[f64; SCAN_BLOCK]; LANES] {
        match col.as_chunks_mut().0.try_into() {
            Ok(blocks) => blocks,
            Err(_) => unreachable!("the lane path gets exactly LANES full blocks"),
        }
    }
    let (a_blocks, b_blocks) = (blocks(c.a), blocks(c.b));
    let mut acc = [[0.0f64; 2]; LANES];
    for j in 0..LANES {
        acc[j] = [a_blocks[j][0], b_blocks[j][0]];
    }
    skewed_lanes(a_blocks, |j, a_block, i| {
        let (a, b) = (a_block[i], b_blocks[j][i]);
        let pl = acc[j];
        acc[j] = [pl[0] * a, a * pl[1] + b];
        (a_block[i], b_blocks[j][i]) = (acc[j][0], acc[j][1]);
    });
}

/// Whether block `k` is a whole block of [`SCAN_BLOCK`] rows.
fn is_full(k: usize, p: usize, n: usize) -> bool {
    block_span(k, p, n) == (k * SCAN_BLOCK, (k + 1) * SCAN_BLOCK)
}

/// Step 1 for blocks `k0..k1`: `buf` (exactly their rows) ends up holding `A` and `L`;
/// [`LANES`] full blocks go through the interleaved path, anything else block by block.
#[inline(always)]
fn local_blocks(
    drive: &impl VarDrive,
    (k0, k1): (usize, usize),
    p: usize,
    n: usize,
    buf: &mut Cols,
) {
    let lo = block_span(k0, p, n).0;
    if k1 - k0 == LANES && (k0..k1).all(|k| is_full(k, p, n)) {
        buf.fill(drive, lo);
        local_lanes_in_place(buf);
        return;
    }
    for k in k0..k1 {
        let (s, e) = block_span(k, p, n);
        let mut b = buf.rows(s - lo, e - lo);
        b.fill(drive, s);
        local_in_place(&mut b);
    }
}

/// Step 2: the carry into every block `first_block + i` from the local ends `[A_end, L_end]` of
/// the blocks before it; `ends.len() + 1` carries, the last one out of the last block given.
pub fn chain_carries(seed: f64, ends: &[[f64; 2]]) -> Vec<f64> {
    let mut carries = Vec::with_capacity(ends.len() + 1);
    let mut c = seed;
    carries.push(c);
    for &[a_end, l_end] in ends {
        c = l_end + a_end * c;
        carries.push(c);
    }
    carries
}

/// Rows of one block after step 1, with the block's carry in: row `j`'s value is step 3,
/// `y_j = L_j + A_j·carry` (multiply, then add), computed by whoever writes it ([`Fixed::y`]), so
/// the fix-up and the store are one pass over the block.
#[derive(Clone, Copy)]
pub struct Fixed<'a> {
    /// `A` of each row.
    pub a: &'a [f64],
    /// `L` of each row (as long as `a`).
    pub l: &'a [f64],
    pub carry: f64,
}

impl<'a> Fixed<'a> {
    /// The seed row: exactly `seed` (`seed + 0·(-0)`, signed zeros and NaN payloads included).
    fn seed(seed: &'a [f64; 1]) -> Self {
        Fixed {
            a: &[0.0],
            l: seed,
            carry: -0.0,
        }
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.l.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.l.is_empty()
    }

    /// Step 3 for one row's `A` and `L`.
    #[inline(always)]
    pub fn y(&self, a: f64, l: f64) -> f64 {
        l + a * self.carry
    }

    /// The carry out of the block these rows end: step 3 at its last row.
    #[inline(always)]
    fn carry_out(&self) -> f64 {
        match (self.a.last(), self.l.last()) {
            (Some(&a), Some(&l)) => self.y(a, l),
            _ => self.carry,
        }
    }
}

/// Runs the recurrence over `n` rows: `write(outs, i, t, ys, store)` receives rows
/// `t ..= t + ys.len() - 1` (`ys.y(A, L)` is a row's value) stored at `i..` of the piece `outs`
/// (full-length slices cut by the splitter), and the stores to write them with. Every row in
/// `[seed_row, n)` is written once; the seed row's value is `seed`.
pub fn run_varscan<S: Splitter, const K: usize>(
    split: &S,
    n: usize,
    seed_row: usize,
    seed: f64,
    drive: impl VarDrive,
    outs: [&mut [f64]; K],
    write: impl Fn(&mut [&mut [f64]; K], usize, usize, Fixed<'_>, Store<'_>) + Sync + Send,
) {
    let p = seed_row;
    if n <= p {
        return;
    }
    if split.workers() > 1 && p + 1 < n && (n - 1) / SCAN_BLOCK + 1 - (p + 1) / SCAN_BLOCK > LANES {
        return run_chained(split, n, p, seed, &drive, outs, &write, PATIENCE);
    }
    let first_block = (p + 1) / SCAN_BLOCK;
    let last_start = split.last_piece_start(p, n - p).max(p + 1);
    let needed = if p + 1 < n {
        (last_start / SCAN_BLOCK).saturating_sub(first_block)
    } else {
        0
    };
    let carries = if split.max_pieces() > 1 && needed > 0 {
        // Local ends of the blocks before the last piece, LANES blocks at a time.
        let groups = needed.div_ceil(LANES);
        let per_group: Vec<Vec<[f64; 2]>> = split.map_indexed(groups, |g| {
            let k0 = first_block + g * LANES;
            let k1 = (k0 + LANES).min(first_block + needed);
            let lo = block_span(k0, p, n).0;
            let hi = block_span(k1 - 1, p, n).1;
            with_scratch(2 * (hi - lo), |raw| {
                let mut buf = Cols::of(raw, hi - lo, hi - lo);
                local_blocks(&drive, (k0, k1), p, n, &mut buf);
                (k0..k1)
                    .map(|k| buf.at(block_span(k, p, n).1 - 1 - lo))
                    .collect()
            })
        });
        let ends: Vec<[f64; 2]> = per_group.into_iter().flatten().collect();
        chain_carries(seed, &ends)
    } else {
        vec![seed]
    };

    let tail = outs.map(|o| &mut o[p..n]);
    split.for_each_piece(p, tail, |lo, mut piece| {
        let hi = lo + piece[0].len();
        let mut t = lo;
        if t == p {
            write(&mut piece, 0, p, Fixed::seed(&[seed]), Store::Cached);
            t += 1;
        }
        if t >= hi {
            if hi == n {
                split.scan_carry_out(&[seed]);
            }
            return;
        }
        let mut k = t / SCAN_BLOCK;
        let mut c = carries[k - first_block];
        // Sized for the lane path only when the piece can take it (small `.over()` groups cannot).
        let rows = if hi - t >= LANES * SCAN_BLOCK {
            LANES * SCAN_BLOCK
        } else {
            SCAN_BLOCK.min(hi - k * SCAN_BLOCK)
        };
        with_scratch(2 * rows, |raw| {
            with_store(n - p, |store| {
                while t < hi {
                    // Fast path: LANES full blocks that start exactly at t and end inside the piece.
                    if t == k * SCAN_BLOCK && t + LANES * SCAN_BLOCK <= hi && t > p {
                        let mut b = Cols::of(raw, rows, LANES * SCAN_BLOCK);
                        local_blocks(&drive, (k, k + LANES), p, n, &mut b);
                        for j in 0..LANES {
                            let block = b.rows(j * SCAN_BLOCK, (j + 1) * SCAN_BLOCK);
                            let ys = block.fixed(0, c);
                            let at = t + j * SCAN_BLOCK;
                            write(&mut piece, at - lo, at, ys, store);
                            c = ys.carry_out();
                        }
                        t += LANES * SCAN_BLOCK;
                        k += LANES;
                        continue;
                    }
                    // One block (or its part inside the piece), recomputed from the block's start.
                    let (s, e) = block_span(k, p, n);
                    let end = e.min(hi);
                    let mut b = Cols::of(raw, rows, end - s);
                    b.fill(&drive, s);
                    local_in_place(&mut b);
                    write(&mut piece, t - lo, t, b.fixed(t - s, c), store);
                    c = b.fixed(0, c).carry_out();
                    t = end;
                    k += 1;
                }
            })
        });
        // The state after the last row, for a device set's GPUs to continue from (as scan.rs).
        if hi == n {
            split.scan_carry_out(&[c]);
        }
    });
}

/// The units of the chained pass: [`LANES`] blocks each, from the block after the seed row.
struct Units {
    p: usize,
    n: usize,
    first: usize,
    end: usize,
}

impl Units {
    fn count(&self) -> usize {
        (self.end - self.first).div_ceil(LANES)
    }

    fn blocks(&self, u: usize) -> (usize, usize) {
        let k0 = self.first + u * LANES;
        (k0, (k0 + LANES).min(self.end))
    }

    fn rows(&self, u: usize) -> (usize, usize) {
        let (k0, k1) = self.blocks(u);
        (
            block_span(k0, self.p, self.n).0,
            block_span(k1 - 1, self.p, self.n).1,
        )
    }

    /// Step 2 through unit `u`'s blocks (`A`, `L` in `buf`, its rows) from `c`: the carry out.
    fn carry_through(&self, u: usize, buf: &Cols, mut c: f64) -> f64 {
        let lo = self.rows(u).0;
        let (k0, k1) = self.blocks(u);
        for k in k0..k1 {
            let [a_end, l_end] = buf.at(block_span(k, self.p, self.n).1 - 1 - lo);
            c = l_end + a_end * c;
        }
        c
    }
}

/// The chained single pass (module doc, "Execution"); needs more than [`LANES`] blocks.
#[allow(clippy::too_many_arguments)]
fn run_chained<S: Splitter, const K: usize>(
    split: &S,
    n: usize,
    p: usize,
    seed: f64,
    drive: &impl VarDrive,
    outs: [&mut [f64]; K],
    write: &(impl Fn(&mut [&mut [f64]; K], usize, usize, Fixed<'_>, Store<'_>) + Sync + Send),
    patience: u32,
) {
    let units = Units {
        p,
        n,
        first: (p + 1) / SCAN_BLOCK,
        end: (n - 1) / SCAN_BLOCK + 1,
    };
    let mut lens = vec![1];
    lens.extend((0..units.count()).map(|u| units.rows(u).1 - units.rows(u).0));
    let mut pieces = cut_pieces(outs.map(|o| &mut o[p..n]), &lens).into_iter();
    if let Some(mut seed_piece) = pieces.next() {
        write(&mut seed_piece, 0, p, Fixed::seed(&[seed]), Store::Cached);
    }
    let claims = Claims::new(pieces);
    let carries = Carries::<f64>::new(units.count());
    // Recomputes a late carry: unit `v`'s carry out from its carry in `c`, local scans in `spare`.
    let through = |spare: &mut [f64], v: usize, c: f64| {
        let (lo, hi) = units.rows(v);
        let mut b = Cols::of(spare, SCAN_BLOCK * LANES, hi - lo);
        local_blocks(drive, units.blocks(v), p, n, &mut b);
        units.carry_through(v, &b, c)
    };

    split.run_workers(|| {
        with_scratch(2 * 2 * SCAN_BLOCK * LANES, |raw| {
            with_store(n - p, |store| {
                let (buf, spare) = raw.split_at_mut(2 * SCAN_BLOCK * LANES);
                while let Some((u, mut piece)) = claims.next() {
                    let (lo, hi) = units.rows(u);
                    let mut b = Cols::of(buf, SCAN_BLOCK * LANES, hi - lo);
                    let started = Instant::now();
                    local_blocks(drive, units.blocks(u), p, n, &mut b);
                    let wait = started.elapsed() * patience;
                    let c_in = carries.carry_into(u, (0, seed), wait, |v, c| through(spare, v, c));
                    carries.publish(u, units.carry_through(u, &b, c_in));
                    let mut c = c_in;
                    let (k0, k1) = units.blocks(u);
                    for k in k0..k1 {
                        let (s, e) = block_span(k, p, n);
                        let block = b.rows(s - lo, e - lo);
                        let ys = block.fixed(0, c);
                        write(&mut piece, s - lo, s, ys, store);
                        c = ys.carry_out();
                    }
                }
            })
        })
    });
    if let Some(c) = carries.last() {
        split.scan_carry_out(&[c]);
    }
}

/// Helper for writers of one output: `out[i + j] = canon(y_j)` (any NaN written as the canonical
/// one, [`canon`]).
#[inline(always)]
pub fn write_y(out: &mut [f64], i: usize, ys: Fixed, store: Store) {
    let n = ys.len();
    // `a` cut to the rows' length, so indexing it inside the store loop needs no bounds check.
    let a = &ys.a[..n];
    store_rows(&mut out[i..i + n], ys.l, store, |j, &l| {
        canon(ys.y(a[j], l))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::scan::{fill_rows, run_scan, write_rows, Recurrence};
    use crate::kernels::split::{CutAt, Sequential};
    use crate::kernels::testing::{assert_bits_eq, assert_close, random_cuts, Lcg, Workers};

    /// A KAMA-like drive: `a_t = 1 - sc_t`, `b_t = sc_t·x_t`, `sc_t` in (0, 1) varying per row.
    fn coefficients(n: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
        let mut rng = Lcg(seed);
        let mut x = Vec::with_capacity(n);
        let mut p = 100.0;
        let mut sc = Vec::with_capacity(n);
        for _ in 0..n {
            p += rng.normal();
            x.push(p);
            let e = rng.uniform();
            let s = 2.0 / 31.0 + e * (2.0 / 3.0 - 2.0 / 31.0);
            sc.push(s * s);
        }
        let a = sc.iter().map(|s| 1.0 - s).collect();
        let b = sc.iter().zip(&x).map(|(s, x)| s * x).collect();
        (a, b)
    }

    fn run<S: Splitter>(s: &S, a: &[f64], b: &[f64], p: usize, seed: f64) -> Vec<f64> {
        let mut out = vec![f64::from_bits(0x7ff8_dead_0000_0001); a.len()];
        let drive = |start: usize, ca: &mut [f64], cb: &mut [f64]| {
            ca.copy_from_slice(&a[start..start + ca.len()]);
            cb.copy_from_slice(&b[start..start + cb.len()]);
        };
        run_varscan(s, a.len(), p, seed, drive, [&mut out], |o, i, _, ys, st| {
            write_y(o[0], i, ys, st)
        });
        out
    }

    #[test]
    fn matches_sequential_loop_closely() {
        for n in [1, 2, 1024, 1025, 5000, 30_000] {
            let (a, b) = coefficients(n, n as u64);
            for p in [0usize, 1, 1023, 1024, 2999] {
                if p >= n {
                    continue;
                }
                let seed = b[p] * 3.0;
                let got = run(&Sequential, &a, &b, p, seed);
                let mut want = vec![0.0; n];
                want[p] = seed;
                for t in p + 1..n {
                    want[t] = a[t] * want[t - 1] + b[t];
                }
                assert_close(&got[p..], &want[p..], 1e-12, "varscan");
            }
        }
    }

    /// The spec block by block, one block's chain at a time.
    fn block_by_block(a: &[f64], b: &[f64], p: usize, seed: f64) -> Vec<f64> {
        let n = a.len();
        let mut out = vec![f64::from_bits(0x7ff8_dead_0000_0001); n];
        out[p] = seed;
        let mut c = seed;
        for k in (p + 1) / SCAN_BLOCK..n.div_ceil(SCAN_BLOCK) {
            let (s, e) = block_span(k, p, n);
            let (mut ca, mut cb) = (a[s..e].to_vec(), b[s..e].to_vec());
            let mut buf = Cols {
                a: &mut ca,
                b: &mut cb,
            };
            local_in_place(&mut buf);
            let ys = buf.fixed(0, c);
            write_y(&mut out[s..e], 0, ys, Store::Cached);
            c = ys.carry_out();
        }
        out
    }

    /// The interleaved lanes (one piece, pre-pass and pieces of any split) give the bits of the
    /// spec run one block at a time.
    #[test]
    fn lanes_give_the_block_by_block_bits() {
        let mut rng = Lcg(43);
        for n in [9000, 20_000, 70_000] {
            let (a, b) = coefficients(n, 3 + n as u64);
            for p in [0usize, 1, 1023, 1024, 8191, 9000] {
                if p + 1 >= n {
                    continue;
                }
                let want = block_by_block(&a, &b, p, 0.5);
                assert_bits_eq(&run(&Sequential, &a, &b, p, 0.5), &want, "varscan lanes");
                for _ in 0..4 {
                    let got = run(&CutAt(random_cuts(&mut rng, n, 6)), &a, &b, p, 0.5);
                    assert_bits_eq(&got, &want, "varscan lanes split");
                }
            }
        }
    }

    #[test]
    fn any_split_gives_identical_bits() {
        let mut rng = Lcg(41);
        for n in [1, 2, 1023, 1024, 1025, 4097, 9000, 20_000] {
            let (mut a, mut b) = coefficients(n, 7 + n as u64);
            // Awkward coefficients: growth, sign changes, zero (forgets the past), NaN late on.
            for (t, v) in a.iter_mut().enumerate() {
                match t % 97 {
                    5 => *v = 1.5,
                    9 => *v = -0.7,
                    13 => *v = 0.0,
                    _ => {}
                }
            }
            if n > 15_000 {
                b[15_000] = f64::NAN;
            }
            for p in [0usize, 1, 1022, 1023, 4100] {
                if p >= n {
                    continue;
                }
                let whole = run(&Sequential, &a, &b, p, 1.25);
                for _ in 0..6 {
                    let got = run(&CutAt(random_cuts(&mut rng, n, 16)), &a, &b, p, 1.25);
                    assert_bits_eq(&got, &whole, "varscan split");
                }
            }
        }
    }

    /// The chained pass (workers on threads, or turns on one thread) gives the one-piece bits and
    /// hands on the state at the last row exactly once.
    #[test]
    fn chained_pass_gives_identical_bits() {
        for n in [1, 1024, 8193, 9217, 9218, 20_000, 70_000] {
            let (a, b) = coefficients(n, 11 + n as u64);
            for p in [0usize, 1, 1022, 1023, 1024, 9000] {
                if p >= n {
                    continue;
                }
                let whole = run(&Sequential, &a, &b, p, 0.75);
                for (threads, turns) in [(2, 0), (3, 0), (8, 0), (0, 1), (0, 3)] {
                    let w = Workers::new(threads, turns);
                    assert_bits_eq(&run(&w, &a, &b, p, 0.75), &whole, "chained varscan");
                    let carries = w.carry_out.into_inner().unwrap();
                    assert_eq!(carries, vec![vec![whole[n - 1]]], "n={n} p={p}");
                }
            }
        }
    }

    /// With no patience, workers on real threads compute whatever carry is not published yet
    /// themselves (what a descheduled worker triggers): still the one-piece bits.
    #[test]
    fn impatient_workers_recompute_identical_carries() {
        let n = 90_000;
        let (a, b) = coefficients(n, 17);
        // Slow decay, so every block's carry shows in the rows after it.
        let a: Vec<f64> = a.iter().map(|v| 1.0 - (1.0 - v) * 1e-3).collect();
        for p in [0usize, 1023, 2500] {
            let whole = run(&Sequential, &a, &b, p, 0.5);
            let drive = |start: usize, ca: &mut [f64], cb: &mut [f64]| {
                ca.copy_from_slice(&a[start..start + ca.len()]);
                cb.copy_from_slice(&b[start..start + cb.len()]);
            };
            for threads in [2, 4] {
                let mut out = vec![0.0; n];
                let write =
                    |o: &mut [&mut [f64]; 1], i: usize, _: usize, ys: Fixed<'_>, st: Store<'_>| {
                        write_y(o[0], i, ys, st)
                    };
                run_chained(
                    &Workers::new(threads, 0),
                    n,
                    p,
                    0.5,
                    &drive,
                    [&mut out],
                    &write,
                    0,
                );
                assert_bits_eq(&out[p..], &whole[p..], "impatient varscan");
            }
        }
    }

    /// With a constant coefficient the products are `scan.rs`'s power table (`A_j = a^j` by the
    /// same chain of multiplications), so both scans give the same bits.
    #[test]
    fn constant_coefficients_give_the_scan_bits() {
        let mut rng = Lcg(3);
        let n = 9000;
        let x: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        for (a, p) in [(0.9, 0usize), (0.5, 17), (0.999, 1023), (1.0, 5000)] {
            let rec = Recurrence {
                decay: [a],
                seed_row: p,
                seed: [x[p]],
            };
            let mut want = vec![0.0; n];
            let drive = |start: usize, b: &mut [[f64; 1]]| fill_rows(start, b, |t| [x[t]]);
            run_scan(
                &Sequential,
                n,
                &rec,
                drive,
                [&mut want],
                |o, i, t, ys, st| write_rows(o[0], i, t, ys, st, |_, y| y[0]),
            );
            let av = vec![a; n];
            let got = run(&Sequential, &av, &x, p, x[p]);
            assert_bits_eq(&got[p..], &want[p..], "varscan vs scan");
        }
    }
}
