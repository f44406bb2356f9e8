//! The fixed-block linear scan behind every recursive (IIR) indicator: EMA, MACD, Wilder smoothing
//! (RSI, ATR, NATR) and OBV's running total.
//!
//! # Spec
//! A recurrence with `C` channels, each `y_t = a·y_{t-1} + b_t` (elementwise per channel), holds
//! `y_p = seed` at the seed row `p` and runs for `t > p`; `b_t` is a pure function of the inputs at
//! fixed rows (the indicator's *drive*). Rows are cut into blocks of [`SCAN_BLOCK`] rows aligned to
//! row 0; block `k` covers rows `start_k = max(k·B, p + 1) .. end_k = min((k+1)·B, n)`.
//! 1. Local scan from a zero carry: `L_{start} = b_{start}`, `L_t = a·L_{t-1} + b_t` (mul, then add).
//! 2. Carries in block order: `C_first = seed`, `C_{k+1} = L_{end_k - 1} + P[end_k - start_k]·C_k`.
//! 3. Every row: `y_t = L_t + P[t - start_k + 1]·C_k`.
//!
//! An indicator writes its function of `y_t` through [`write_rows`], which writes any NaN as the
//! canonical one ([`canon`]): when a NaN `L_t` meets a NaN `P·C_k` (an infinity earlier in the
//! series), which NaN the sum carries depends on how the compiler ordered the operands of that
//! copy of the formula, so the NaN bits of `y_t` are not defined by the spec.
//!
//! `P[j] = a^j` is built by repeated multiplication (`P[0] = 1`, `P[j] = P[j-1]·a`), never `pow`.
//! Step 2 is the step-3 formula at the block's last row, so a run that carries inline through one
//! piece and a run that precomputes all carries in parallel give the same bits. The result differs
//! from the naive sequential loop in the last bits (≈1e-15 relative); this spec defines the answer.
//!
//! # Execution (all three evaluate exactly the formulas above, so they give the same bits)
//! * One piece (one worker): the blocks in order, carrying `C_k` inline.
//! * A splitter with several workers ([`Splitter::workers`]): one chained pass. Workers claim
//!   *units* of [`LANES`] blocks in increasing order from a shared counter; each runs its unit's
//!   local scans, takes the carry out of the previous unit, chains it through its own blocks
//!   (step 2), publishes the carry out, and only then fixes up and writes its rows, still in cache.
//!   Every row is read and written once. A unit whose predecessor's carry is late (its worker
//!   descheduled on a busy machine) does not stall: after a short wait it recomputes the missing
//!   local ends and chains them from the last published carry, with the same formulas.
//! * Other splitters (arbitrary cuts, device sets): a pre-pass computes the local ends of the
//!   blocks before the last piece, the carries are chained on the calling thread, and each piece
//!   then starts from its first block's carry.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::canon;
pub(super) use super::chained::PATIENCE;
use super::chained::{Carries, Claims};
use super::scratch::with_scratch;
use super::split::{cut_pieces, Splitter};
pub use super::stream_store::Store;
use super::stream_store::{store_rows, with_store};

/// Scan block length `B`, a constant of the spec (changing it changes results in the last bits).
pub const SCAN_BLOCK: usize = 1024;
/// Blocks whose local scans run interleaved (and a chained pass's unit). Not part of the spec:
/// each block's chain is the same arithmetic either way. Eight independent chains hide the
/// mul→add latency better than four (≈5-8% less CPU per row for ATR and MACD), and a unit of
/// 8 blocks (64 KiB per channel) still fits in L2 until its fix-up.
pub(super) const LANES: usize = 8;
/// Rows each lane of [`skewed_lanes`] runs behind the one before: one 64-byte cache line of
/// one-channel rows (two lines of the varying scan's `[A, L]` pairs). The lanes' blocks lie a
/// multiple of 8 KiB apart, a multiple of the L1 cache's way size, so in lockstep all their
/// current lines, and the lines the prefetcher fetches next, compete for one set of eight ways;
/// staggered, they fall in different sets (4-8% less time for T3, EMA and MACD on one thread).
/// Not part of the spec: each block's chain is the same arithmetic in the same order.
const LANE_SKEW: usize = 8;
/// Rows per step of [`Recurrence::fused_block`]: few enough that a step's drive, scan and
/// output stay in registers and L1 and overlap in the CPU's out-of-order window. Not part of the
/// spec.
const FUSED_ROWS: usize = 64;

/// A `C`-channel linear recurrence anchored at a seed row.
pub struct Recurrence<const C: usize> {
    pub decay: [f64; C],
    pub seed_row: usize,
    pub seed: [f64; C],
}

/// Fills `b[i]` with the drive of row `start + i` (called once per block, so the per-row work
/// inlines and vectorises inside the indicator's closure).
pub trait Drive<const C: usize>: Fn(usize, &mut [[f64; C]]) + Sync + Send {}
impl<const C: usize, F: Fn(usize, &mut [[f64; C]]) + Sync + Send> Drive<C> for F {}

/// Helper for drives: `b[i] = f(start + i)`.
#[inline(always)]
pub fn fill_rows<const C: usize>(start: usize, b: &mut [[f64; C]], f: impl Fn(usize) -> [f64; C]) {
    for (i, v) in b.iter_mut().enumerate() {
        *v = f(start + i);
    }
}

/// `P[j] = a^j` for `j = 0 ..= SCAN_BLOCK`, flattened channel-minor, shared between calls with the
/// same decays: `.over()` runs thousands of short series with one period, and rebuilding the
/// table (a chain of 1,024 dependent multiplications per channel) would cost more than the scan.
pub(super) struct Powers<const C: usize>(Arc<Vec<f64>>);

/// `P[j] = a^j` per channel (see [`Powers`]); the GPU backend uploads the same table.
pub fn power_table(a: &[f64]) -> Vec<f64> {
    let c = a.len();
    let mut p = Vec::with_capacity((SCAN_BLOCK + 1) * c);
    let mut cur = vec![1.0f64; c];
    p.extend_from_slice(&cur);
    for _ in 0..SCAN_BLOCK {
        for (v, a) in cur.iter_mut().zip(a) {
            *v = *v * a;
        }
        p.extend_from_slice(&cur);
    }
    p
}

impl<const C: usize> Powers<C> {
    pub(super) fn new(a: [f64; C]) -> Self {
        type Cache = Mutex<Vec<(Vec<u64>, Arc<Vec<f64>>)>>;
        static CACHE: OnceLock<Cache> = OnceLock::new();
        const CAPACITY: usize = 16;
        let key: Vec<u64> = a.iter().map(|v| v.to_bits()).collect();
        let cache = CACHE.get_or_init(|| Mutex::new(Vec::new()));
        if let Ok(mut entries) = cache.lock() {
            if let Some(i) = entries.iter().position(|(k, _)| *k == key) {
                let hit = entries.remove(i);
                let table = Arc::clone(&hit.1);
                entries.insert(0, hit);
                return Powers(table);
            }
            let table = Arc::new(power_table(&a));
            entries.insert(0, (key, Arc::clone(&table)));
            entries.truncate(CAPACITY);
            return Powers(table);
        }
        Powers(Arc::new(power_table(&a)))
    }

    #[inline(always)]
    pub(super) fn get(&self) -> &[[f64; C]] {
        self.0.as_chunks::<C>().0
    }
}

impl<const C: usize> Recurrence<C> {
    pub(super) fn span(&self, k: usize, n: usize) -> (usize, usize) {
        (
            (k * SCAN_BLOCK).max(self.seed_row + 1),
            ((k + 1) * SCAN_BLOCK).min(n),
        )
    }

    /// Local scan in place: `buf` holds the drives of one block and ends up holding `L`.
    #[inline(always)]
    fn local_in_place(&self, buf: &mut [[f64; C]]) {
        let a = self.decay;
        for i in 1..buf.len() {
            let prev = buf[i - 1];
            for c in 0..C {
                buf[i][c] = a[c] * prev[c] + buf[i][c];
            }
        }
    }

    /// [`Self::local_in_place`] on `LANES` full blocks stored back to back: their chains are
    /// independent, so interleaving them keeps the CPU's pipelines full. Same arithmetic per row.
    #[inline(always)]
    fn local_lanes_in_place(&self, buf: &mut [[f64; C]]) {
        let a = self.decay;
        // Fixed-size views so the interleaved loop carries no bounds checks.
        let blocks: &mut [[[f64; C]; SCAN_BLOCK]; LANES] = match buf.as_chunks_mut().0.try_into() {
            Ok(blocks) => blocks,
            Err(_) => unreachable!("the lane path gets exactly LANES full blocks"),
        };
        let mut l: [[f64; C]; LANES] = std::array::from_fn(|j| blocks[j][0]);
        skewed_lanes(blocks, |j, block, i| {
            let b = block[i];
            for c in 0..C {
                l[j][c] = a[c] * l[j][c] + b[c];
            }
            block[i] = l[j];
        });
    }

    /// Steps 1 and 3 of one block whose carry in, `c`, is already known (a single piece carries
    /// inline), for its rows `s..end` (`s` the block's first row), [`FUSED_ROWS`] rows at a
    /// time: drive, local scan, fix-up, then `emit(first_row, ys)`. Returns the last `y` (the
    /// carry out when `end` is the block's end). The arithmetic is [`Self::local_in_place`]'s
    /// and [`fix_up`]'s, row for row, so the bits are the same; fused, the independent drive,
    /// fix-up and output work of each row runs in the shadow of the local scan's mul→add chain
    /// instead of in passes of their own, which is what a short series (one block, no lanes to
    /// interleave: every `.over()` group and `by=` segment) spends its time on.
    #[inline(always)]
    fn fused_block(
        &self,
        drive: &impl Drive<C>,
        powers: &Powers<C>,
        (s, end): (usize, usize),
        c: [f64; C],
        buf: &mut [[f64; C]],
        mut emit: impl FnMut(usize, &[[f64; C]]),
    ) -> [f64; C] {
        let a = self.decay;
        let p = powers.get();
        let mut l = [0.0; C];
        let mut y = c;
        let mut t = s;
        while t < end {
            let m = FUSED_ROWS.min(end - t).min(buf.len());
            let b = &mut buf[..m];
            drive(t, b);
            // The block's first row starts its chain from the zero carry: `L_s = b_s` exactly.
            let from = if t == s {
                l = b[0];
                b[0] = std::array::from_fn(|ch| l[ch] + p[1][ch] * c[ch]);
                1
            } else {
                0
            };
            let pw = &p[t - s + 1..t - s + 1 + m];
            for (v, pw) in b[from..].iter_mut().zip(&pw[from..]) {
                for ch in 0..C {
                    l[ch] = a[ch] * l[ch] + v[ch];
                    v[ch] = l[ch] + pw[ch] * c[ch];
                }
            }
            y = b[m - 1];
            emit(t, b);
            t += m;
        }
        y
    }

    fn is_full(&self, k: usize, n: usize) -> bool {
        let (s, e) = self.span(k, n);
        s == k * SCAN_BLOCK && e - s == SCAN_BLOCK
    }

    /// Rows `lo..hi` of blocks `k0..k_end` (consecutive blocks' spans are contiguous).
    pub(super) fn rows(&self, k0: usize, k_end: usize, n: usize) -> (usize, usize) {
        (self.span(k0, n).0, self.span(k_end - 1, n).1)
    }

    /// Step 1 for blocks `k0..k_end`: `buf` holds exactly their rows and ends up holding `L`.
    /// [`LANES`] full blocks go through the interleaved path, anything else block by block.
    #[inline(always)]
    pub(super) fn local_blocks(
        &self,
        drive: &impl Drive<C>,
        (k0, k_end): (usize, usize),
        n: usize,
        buf: &mut [[f64; C]],
    ) {
        let lo = self.span(k0, n).0;
        if k_end - k0 == LANES && (k0..k_end).all(|k| self.is_full(k, n)) {
            drive(lo, buf);
            self.local_lanes_in_place(buf);
        } else {
            for k in k0..k_end {
                let (s, e) = self.span(k, n);
                let b = &mut buf[s - lo..e - lo];
                drive(s, b);
                self.local_in_place(b);
            }
        }
    }

    /// Step 2 through blocks `k0..k_end` whose `L` is in `buf` (as left by
    /// [`Self::local_blocks`]): `out[j]` is the carry into block `k0 + j`, `out[k_end - k0]` the
    /// carry out of the last one.
    #[inline(always)]
    pub(super) fn chain_blocks(
        &self,
        powers: &Powers<C>,
        (k0, k_end): (usize, usize),
        n: usize,
        buf: &[[f64; C]],
        c_in: [f64; C],
    ) -> [[f64; C]; LANES + 1] {
        let lo = self.span(k0, n).0;
        let mut out = [c_in; LANES + 1];
        for (j, k) in (k0..k_end).enumerate() {
            let (s, e) = self.span(k, n);
            out[j + 1] = next_carry(buf[e - 1 - lo], powers.get()[e - s], out[j]);
        }
        out
    }
}

/// Runs `step(j, block_j, i)` for rows `i = 1..SCAN_BLOCK` of each of `L` blocks, every block's
/// rows in order, with the blocks interleaved (their chains are independent) and lane `j`
/// [`LANE_SKEW`]`·j` rows behind lane 0: at step `t` it is at row `t - LANE_SKEW·j`, for the
/// steps that make that a row. Shared by the constant and the varying-coefficient scans.
#[inline(always)]
pub(super) fn skewed_lanes<T, const L: usize>(
    blocks: &mut [[T; SCAN_BLOCK]; L],
    mut step: impl FnMut(usize, &mut [T; SCAN_BLOCK], usize),
) {
    let last = LANE_SKEW * (L - 1);
    for t in 1..=last {
        for (j, block) in blocks.iter_mut().enumerate() {
            if t > LANE_SKEW * j {
                step(j, block, t - LANE_SKEW * j);
            }
        }
    }
    for t in last + 1..SCAN_BLOCK {
        for (j, block) in blocks.iter_mut().enumerate() {
            step(j, block, t - LANE_SKEW * j);
        }
    }
    for t in SCAN_BLOCK..SCAN_BLOCK + last {
        for (j, block) in blocks.iter_mut().enumerate() {
            if t < SCAN_BLOCK + LANE_SKEW * j {
                step(j, block, t - LANE_SKEW * j);
            }
        }
    }
}

/// Step 2 for one block: `C_{k+1} = L_end + P[len]·C_k` (also step 3 at the block's last row).
#[inline(always)]
pub(super) fn next_carry<const C: usize>(
    l_end: [f64; C],
    p_len: [f64; C],
    c: [f64; C],
) -> [f64; C] {
    std::array::from_fn(|ch| l_end[ch] + p_len[ch] * c[ch])
}

/// `y = L + P[i+1]·c` in place for one block's local values; returns the carry out (the last y).
#[inline(always)]
pub(super) fn fix_up<const C: usize>(
    buf: &mut [[f64; C]],
    powers: &Powers<C>,
    c: [f64; C],
) -> [f64; C] {
    let p = &powers.get()[1..=buf.len()];
    for (l, pw) in buf.iter_mut().zip(p) {
        for ch in 0..C {
            l[ch] = l[ch] + pw[ch] * c[ch];
        }
    }
    buf.last().copied().unwrap_or(c)
}

/// [`fix_up`] of one block of a one-channel scan that also writes `next[i] = gain·y_i`: the drive
/// of a scan fed by this one (a cascade's next stage), formed while `y` is in registers instead
/// of in a pass of its own. The same operations, so the same bits.
#[inline(always)]
pub(super) fn fix_up_feeding(
    buf: &mut [[f64; 1]],
    powers: &Powers<1>,
    c: [f64; 1],
    gain: f64,
    next: &mut [[f64; 1]],
) {
    let n = buf.len();
    let p = &powers.get()[1..=n];
    for ((l, pw), b) in buf.iter_mut().zip(p).zip(&mut next[..n]) {
        let y = l[0] + pw[0] * c[0];
        l[0] = y;
        b[0] = gain * y;
    }
}

/// Runs the recurrence: `drive` supplies `b_t` block by block, and `write(outs, i, t, ys, store)`
/// receives `y` for rows `t ..= t + ys.len() - 1`, stored at `i..` of the piece `outs`
/// (full-length slices cut by the splitter) with the stores `store` names ([`write_rows`] takes
/// it; large outputs are streamed). Every row `t` in `[seed_row, n)` is written exactly once, at
/// most one block at a time, right after the block's fix-up, while it is in L1.
pub fn run_scan<S: Splitter, const C: usize, const K: usize>(
    split: &S,
    n: usize,
    rec: &Recurrence<C>,
    drive: impl Drive<C>,
    outs: [&mut [f64]; K],
    write: impl Fn(&mut [&mut [f64]; K], usize, usize, &[[f64; C]], Store<'_>) + Sync + Send,
) {
    let p = rec.seed_row;
    if n <= p {
        return;
    }
    let powers = Powers::new(rec.decay);
    let rows = n - p;
    let first_block = (p + 1) / SCAN_BLOCK;
    let n_blocks = if p + 1 < n {
        (n - 1) / SCAN_BLOCK + 1 - first_block
    } else {
        0
    };
    if split.workers() > 1 && n_blocks > LANES {
        let blocks = (first_block, first_block + n_blocks);
        return run_chained(
            split, n, rec, &powers, blocks, &drive, outs, &write, rows, PATIENCE,
        );
    }
    // Carries are needed up to the block where the last piece starts: the local ends of the blocks
    // before it (the last piece's own blocks need no pre-pass).
    let last_start = split.last_piece_start(p, n - p).max(p + 1);
    let needed = (last_start / SCAN_BLOCK)
        .saturating_sub(first_block)
        .min(n_blocks);

    let carries: Vec<[f64; C]> = if split.max_pieces() > 1 && needed > 0 {
        // Local ends of the blocks before the last piece, LANES blocks at a time, in batches so
        // one scratch buffer serves many blocks.
        const GROUPS_PER_TASK: usize = 8;
        let groups = needed.div_ceil(LANES);
        let tasks = groups.div_ceil(GROUPS_PER_TASK);
        let per_task: Vec<Vec<[f64; C]>> = split.map_indexed(tasks, |task| {
            with_scratch(SCAN_BLOCK * LANES * C, |raw| {
                let buf = raw.as_chunks_mut::<C>().0;
                let mut ends = Vec::with_capacity(GROUPS_PER_TASK * LANES);
                let g_end = ((task + 1) * GROUPS_PER_TASK).min(groups);
                for g in task * GROUPS_PER_TASK..g_end {
                    let k0 = first_block + g * LANES;
                    let k_end = (k0 + LANES).min(first_block + needed);
                    let (lo, hi) = rec.rows(k0, k_end, n);
                    let b = &mut buf[..hi - lo];
                    rec.local_blocks(&drive, (k0, k_end), n, b);
                    ends.extend((k0..k_end).map(|k| b[rec.span(k, n).1 - 1 - lo]));
                }
                ends
            })
        });
        let ends: Vec<[f64; C]> = per_task.into_iter().flatten().collect();
        let mut carries = Vec::with_capacity(needed + 1);
        let mut c = rec.seed;
        for (i, l_end) in ends.iter().enumerate() {
            carries.push(c);
            let (s, e) = rec.span(first_block + i, n);
            c = next_carry(*l_end, powers.get()[e - s], c);
        }
        carries.push(c);
        carries
    } else {
        vec![rec.seed]
    };

    let tail = outs.map(|o| &mut o[p..n]);
    split.for_each_piece(p, tail, |lo, mut piece| {
        let hi = lo + piece[0].len();
        let mut t = lo;
        if t == p {
            write(&mut piece, 0, p, &[rec.seed], Store::Cached);
            t += 1;
        }
        if t >= hi {
            if hi == n {
                split.scan_carry_out(&rec.seed);
            }
            return;
        }
        let mut k = t / SCAN_BLOCK;
        let mut c = carries[k - first_block];
        // Sized for the lane path only when the piece can take it (small `.over()` groups cannot).
        let lanes = if hi - t >= LANES * SCAN_BLOCK {
            LANES
        } else {
            1
        };
        let longest_block = SCAN_BLOCK.min(hi - k * SCAN_BLOCK);
        let buf_len = if lanes == LANES {
            SCAN_BLOCK * LANES
        } else {
            longest_block
        };
        with_scratch(buf_len * C, |raw| {
            with_store(rows, |store| {
                let buf = raw.as_chunks_mut::<C>().0;
                while t < hi {
                    // Fast path: LANES full blocks that start exactly at t and end inside the piece.
                    if t == k * SCAN_BLOCK
                        && t + LANES * SCAN_BLOCK <= hi
                        && (k..k + LANES).all(|kk| rec.is_full(kk, n))
                    {
                        drive(t, buf);
                        rec.local_lanes_in_place(buf);
                        for (j, block) in buf.chunks_exact_mut(SCAN_BLOCK).enumerate() {
                            c = fix_up(block, &powers, c);
                            let at = t + j * SCAN_BLOCK;
                            write(&mut piece, at - lo, at, block, store);
                        }
                        t += LANES * SCAN_BLOCK;
                        k += LANES;
                        continue;
                    }
                    // One block (or its part inside the piece), recomputed from the block's start.
                    let (s, e) = rec.span(k, n);
                    let end = e.min(hi);
                    c = rec.fused_block(&drive, &powers, (s, end), c, buf, |at, ys| {
                        // Rows before the piece (a piece that starts mid-block) are not its own.
                        let skip = t.saturating_sub(at).min(ys.len());
                        if skip < ys.len() {
                            let at = at + skip;
                            write(&mut piece, at - lo, at, &ys[skip..], store);
                        }
                    });
                    t = end;
                    k += 1;
                }
            })
        });
        if hi == n {
            split.scan_carry_out(&c);
        }
    });
}

/// The chained single pass over blocks `first..end` (see the module doc, "Execution"); needs
/// `end - first > LANES`, i.e. at least two units.
#[allow(clippy::too_many_arguments)]
fn run_chained<S: Splitter, const C: usize, const K: usize>(
    split: &S,
    n: usize,
    rec: &Recurrence<C>,
    powers: &Powers<C>,
    blocks: (usize, usize),
    drive: &impl Drive<C>,
    outs: [&mut [f64]; K],
    write: &(impl Fn(&mut [&mut [f64]; K], usize, usize, &[[f64; C]], Store<'_>) + Sync + Send),
    rows: usize,
    patience: u32,
) {
    let chain = Chain::new(rec, powers, drive, n, blocks);
    let p = rec.seed_row;
    // The seed row, then one piece of the outputs per unit, each taken by the unit's claimant.
    let mut lens = vec![1];
    lens.extend((0..chain.units()).map(|u| chain.unit_rows(u).1 - chain.unit_rows(u).0));
    let mut pieces = cut_pieces(outs.map(|o| &mut o[p..n]), &lens).into_iter();
    if let Some(mut seed_piece) = pieces.next() {
        write(&mut seed_piece, 0, p, &[rec.seed], Store::Cached);
    }
    let claims = Claims::new(pieces);

    split.run_workers(|| {
        with_scratch(2 * SCAN_BLOCK * LANES * C, |raw| {
            with_store(rows, |store| {
                let (buf, spare) = raw.as_chunks_mut::<C>().0.split_at_mut(SCAN_BLOCK * LANES);
                while let Some((u, mut piece)) = claims.next() {
                    let (lo, hi) = chain.unit_rows(u);
                    let b = &mut buf[..hi - lo];
                    let started = Instant::now();
                    chain.local(u, b);
                    let c_in = chain.carry_into(u, started.elapsed() * patience, spare);
                    chain.finish(u, b, c_in, |s, ys| write(&mut piece, s - lo, s, ys, store));
                }
            })
        })
    });
    if let Some(c) = chain.carries.last() {
        split.scan_carry_out(&c);
    }
}

/// A scan whose rows feed a second, one-channel scan (MACD's line and signal), in one chained
/// pass. The first scan's row `t` gives `m_t = value(y_t)`, written to `outs[0]` from its seed row
/// on; the second recurrence (its own seed row `>=` the first's, its own block grid by the spec)
/// is driven by `k·m_t` and gives `z_t`, written to `outs[1]`, and `m_t - z_t`, written to
/// `outs[2]`, from its seed row on; `m_seed` is `m` at that row (the caller computes the second
/// seed from a prefix anyway). The bits are those of [`run_scan`] of the first scan into
/// `outs[0]`, then [`run_scan`] of the second reading it: the same formulas on the same blocks.
/// Only the schedule differs: both stages use the first stage's units, and a worker runs a unit's
/// first stage, then at once (its `m` still in cache) the unit's second stage, whose carry is
/// chained one stage behind the first's; a late carry of either stage is recomputed as in
/// [`run_chained`]. Each stage hands its carry out to the splitter, first, then second.
///
/// Returns `false` without doing anything unless the splitter has several workers and the
/// second scan more than [`LANES`] blocks; the caller then runs the two scans.
pub fn run_scan_feeding_scan<S: Splitter, const C: usize>(
    split: &S,
    n: usize,
    first: &Recurrence<C>,
    drive: impl Drive<C>,
    value: impl Fn(&[f64; C]) -> f64 + Sync,
    second: (&Recurrence<1>, f64, f64),
    outs: [&mut [f64]; 3],
) -> bool {
    feed_chained(split, n, first, drive, value, second, outs, PATIENCE)
}

/// [`run_scan_feeding_scan`] with a given patience (see [`PATIENCE`]).
#[allow(clippy::too_many_arguments)]
fn feed_chained<S: Splitter, const C: usize>(
    split: &S,
    n: usize,
    first: &Recurrence<C>,
    drive: impl Drive<C>,
    value: impl Fn(&[f64; C]) -> f64 + Sync,
    (second, k, m_seed): (&Recurrence<1>, f64, f64),
    [m_out, z_out, h_out]: [&mut [f64]; 3],
    patience: u32,
) -> bool {
    let (p1, p2) = (first.seed_row, second.seed_row);
    if split.workers() <= 1 || p2 < p1 || n <= p2 + 1 {
        return false;
    }
    let (f1, f2, end) = (
        (p1 + 1) / SCAN_BLOCK,
        (p2 + 1) / SCAN_BLOCK,
        (n - 1) / SCAN_BLOCK + 1,
    );
    if end - f2 <= LANES {
        return false;
    }
    let (powers1, powers2) = (Powers::new(first.decay), Powers::new(second.decay));
    let line = Chain::new(first, &powers1, &drive, n, (f1, end));
    // The second stage's drive from nothing but the inputs, for the rare unit whose carry is late
    // and must be recomputed: the first stage's rows of that unit, from its own carry.
    let recompute = |start: usize, b: &mut [[f64; 1]]| {
        let u = (start / SCAN_BLOCK - f1) / LANES;
        let (lo, hi) = line.unit_rows(u);
        with_scratch(2 * SCAN_BLOCK * LANES * C, |raw| {
            let (lb, spare) = raw.as_chunks_mut::<C>().0.split_at_mut(SCAN_BLOCK * LANES);
            let lb = &mut lb[..hi - lo];
            let c = line.carry_into(u, Duration::ZERO, spare);
            line.local(u, lb);
            line.finish(u, lb, c, |s, ys| {
                for (j, y) in ys.iter().enumerate() {
                    if let Some(v) = (s + j).checked_sub(start).and_then(|i| b.get_mut(i)) {
                        *v = [k * value(y)];
                    }
                }
            });
        })
    };
    let sig = Chain::on_grid(second, &powers2, &recompute, n, f1, (f2, end));
    let units = line.units();

    // Seed rows, then one piece per unit of each stage's rows (empty before the second's first).
    m_out[p1] = canon(value(&first.seed));
    z_out[p2] = canon(second.seed[0]);
    h_out[p2] = canon(m_seed - second.seed[0]);
    let m_lens: Vec<usize> = (0..units)
        .map(|u| line.unit_rows(u).1 - line.unit_rows(u).0)
        .collect();
    let z_lens: Vec<usize> = (0..units)
        .map(|u| match sig.unit_blocks(u) {
            (k0, k1) if k0 < k1 => sig.unit_rows(u).1 - sig.unit_rows(u).0,
            _ => 0,
        })
        .collect();
    let m_pieces = cut_pieces([&mut m_out[p1 + 1..n]], &m_lens);
    let z_pieces = cut_pieces([&mut z_out[p2 + 1..n], &mut h_out[p2 + 1..n]], &z_lens);
    let claims = Claims::new(m_pieces.into_iter().zip(z_pieces));
    const U: usize = SCAN_BLOCK * LANES;

    split.run_workers(|| {
        with_scratch(U * (2 * C + 3), |raw| {
            with_store(n - p1, |store| {
                let (lraw, rest) = raw.split_at_mut(2 * U * C);
                let (buf, spare) = lraw.as_chunks_mut::<C>().0.split_at_mut(U);
                let (mbuf, rest) = rest.split_at_mut(U);
                let (zraw, zspare) = rest.split_at_mut(U);
                let (zbuf, zspare) = (zraw.as_chunks_mut::<1>().0, zspare.as_chunks_mut::<1>().0);
                while let Some((u, ([mp], [zp, hp]))) = claims.next() {
                    let (lo, hi) = line.unit_rows(u);
                    let b = &mut buf[..hi - lo];
                    let started = Instant::now();
                    line.local(u, b);
                    let c_in = line.carry_into(u, started.elapsed() * patience, spare);
                    let m = &mut mbuf[..hi - lo];
                    line.finish(u, b, c_in, |s, ys| {
                        let rows = s - lo..s - lo + ys.len();
                        for (mt, y) in m[rows.clone()].iter_mut().zip(ys) {
                            *mt = value(y);
                        }
                        store_rows(&mut mp[rows.clone()], &m[rows], store, |_, &mt| canon(mt));
                    });
                    let (k0, k1) = sig.unit_blocks(u);
                    if k0 >= k1 {
                        continue;
                    }
                    // The second stage on the same unit, driven from `m` in cache.
                    let (slo, shi) = sig.unit_rows(u);
                    let ms = &m[slo - lo..hi - lo];
                    let zb = &mut zbuf[..shi - slo];
                    let fast = |start: usize, bb: &mut [[f64; 1]]| {
                        for (v, &mt) in bb.iter_mut().zip(&ms[start - slo..]) {
                            *v = [k * mt];
                        }
                    };
                    sig.local_with(&fast, u, zb);
                    let c2 = sig.carry_into(u, started.elapsed() * patience, zspare);
                    sig.finish(u, zb, c2, |s, ys| {
                        let rows = s - slo..s - slo + ys.len();
                        store_rows(&mut zp[rows.clone()], ys, store, |_, y| canon(y[0]));
                        let mrows = &ms[rows.clone()];
                        store_rows(&mut hp[rows], ys, store, |j, y| canon(mrows[j] - y[0]));
                    });
                }
            })
        })
    });
    for carries in [
        line.carries.last().map(|c| c.to_vec()),
        sig.carries.last().map(|c| c.to_vec()),
    ]
    .into_iter()
    .flatten()
    {
        split.scan_carry_out(&carries);
    }
    true
}

/// The shared state of a chained pass: units of [`LANES`] blocks and the carry out of each,
/// published once known. Units are cut on a grid of [`LANES`] blocks from block `origin`
/// (`<= first`), so a second scan can share a first scan's units; units that end before block
/// `first` are empty and never used.
struct Chain<'a, const C: usize, D> {
    rec: &'a Recurrence<C>,
    powers: &'a Powers<C>,
    drive: &'a D,
    n: usize,
    origin: usize,
    first: usize,
    end: usize,
    carries: Carries<[f64; C]>,
}

impl<'a, const C: usize, D: Drive<C>> Chain<'a, C, D> {
    fn new(
        rec: &'a Recurrence<C>,
        powers: &'a Powers<C>,
        drive: &'a D,
        n: usize,
        (first, end): (usize, usize),
    ) -> Self {
        Self::on_grid(rec, powers, drive, n, first, (first, end))
    }

    /// A chain over blocks `first..end` with units cut from block `origin`.
    fn on_grid(
        rec: &'a Recurrence<C>,
        powers: &'a Powers<C>,
        drive: &'a D,
        n: usize,
        origin: usize,
        (first, end): (usize, usize),
    ) -> Self {
        debug_assert!(origin <= first && first < end);
        let units = (end - origin).div_ceil(LANES);
        Chain {
            rec,
            powers,
            drive,
            n,
            origin,
            first,
            end,
            carries: Carries::new(units),
        }
    }

    fn units(&self) -> usize {
        (self.end - self.origin).div_ceil(LANES)
    }

    /// The unit holding block `first` (the earlier ones are empty).
    fn first_unit(&self) -> usize {
        (self.first - self.origin) / LANES
    }

    fn unit_blocks(&self, u: usize) -> (usize, usize) {
        let k0 = self.origin + u * LANES;
        (k0.max(self.first), (k0 + LANES).min(self.end))
    }

    fn unit_rows(&self, u: usize) -> (usize, usize) {
        let (k0, k_end) = self.unit_blocks(u);
        self.rec.rows(k0, k_end, self.n)
    }

    /// Step 1 for unit `u` into `buf` (exactly its rows).
    fn local(&self, u: usize, buf: &mut [[f64; C]]) {
        self.local_with(self.drive, u, buf);
    }

    /// [`Self::local`] with another drive that gives the same `b_t` (e.g. from values at hand).
    fn local_with(&self, drive: &impl Drive<C>, u: usize, buf: &mut [[f64; C]]) {
        self.rec
            .local_blocks(drive, self.unit_blocks(u), self.n, buf);
    }

    /// Step 2 through unit `u` (local values in `buf`) from `c_in`; publishes the carry out and
    /// returns the carries into each block.
    fn chain(&self, u: usize, buf: &[[f64; C]], c_in: [f64; C]) -> [[f64; C]; LANES + 1] {
        let blocks = self.unit_blocks(u);
        let cs = self
            .rec
            .chain_blocks(self.powers, blocks, self.n, buf, c_in);
        self.carries.publish(u, cs[blocks.1 - blocks.0]);
        cs
    }

    /// Steps 2 and 3 for unit `u`: publishes its carry out first (the next unit is waiting for
    /// it), then turns the local values in `buf` into `y` block by block, handing each block's
    /// `y` to `emit(first_row, ys)` while it is in L1.
    fn finish(
        &self,
        u: usize,
        buf: &mut [[f64; C]],
        c_in: [f64; C],
        mut emit: impl FnMut(usize, &[[f64; C]]),
    ) {
        let cs = self.chain(u, buf, c_in);
        let lo = self.unit_rows(u).0;
        let (k0, k_end) = self.unit_blocks(u);
        for (j, k) in (k0..k_end).enumerate() {
            let (s, e) = self.rec.span(k, self.n);
            let block = &mut buf[s - lo..e - lo];
            fix_up(block, self.powers, cs[j]);
            emit(s, block);
        }
    }

    /// The carry into unit `u`: the predecessor's, waited for at most `patience`, after which
    /// this worker computes the missing carries itself (local ends in `spare`, then step 2 from
    /// the last published carry; `chained.rs`).
    fn carry_into(&self, u: usize, patience: Duration, spare: &mut [[f64; C]]) -> [f64; C] {
        let start = (self.first_unit(), self.rec.seed);
        self.carries.carry_into(u, start, patience, |v, c| {
            let (lo, hi) = self.unit_rows(v);
            let b = &mut spare[..hi - lo];
            self.local(v, b);
            self.chain(v, b, c)[self.unit_blocks(v).1 - self.unit_blocks(v).0]
        })
    }
}

/// Helper for writers of one output: `out[i + j] = canon(f(t + j, ys[j]))` (any NaN written as
/// the canonical one, [`canon`]), with `store`'s stores.
#[inline(always)]
pub fn write_rows<const C: usize>(
    out: &mut [f64],
    i: usize,
    t: usize,
    ys: &[[f64; C]],
    store: Store,
    f: impl Fn(usize, &[f64; C]) -> f64,
) {
    store_rows(&mut out[i..i + ys.len()], ys, store, |j, y| {
        canon(f(t + j, y))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::split::{CutAt, Sequential};
    use crate::kernels::testing::{assert_bits_eq, assert_close, random_cuts, Lcg, Workers};

    fn run<S: Splitter>(s: &S, x: &[f64], a: f64, p: usize) -> Vec<f64> {
        let rec = Recurrence {
            decay: [a],
            seed_row: p,
            seed: [x[p]],
        };
        let mut out = vec![0.0; x.len()];
        let drive = |start: usize, b: &mut [[f64; 1]]| fill_rows(start, b, |t| [x[t]]);
        run_scan(s, x.len(), &rec, drive, [&mut out], |o, i, t, ys, st| {
            write_rows(o[0], i, t, ys, st, |_, y| y[0])
        });
        out
    }

    #[test]
    fn matches_sequential_loop_closely() {
        let mut rng = Lcg(3);
        let x: Vec<f64> = (0..20_000).map(|_| rng.normal()).collect();
        for (a, p) in [(0.9, 0), (0.5, 17), (0.999, 1023), (1.0, 5000), (0.0, 3)] {
            let got = run(&Sequential, &x, a, p);
            let mut want = vec![0.0; x.len()];
            want[p] = x[p];
            for t in p + 1..x.len() {
                want[t] = a * want[t - 1] + x[t];
            }
            assert_close(&got[p..], &want[p..], 1e-10, "scan");
        }
    }

    /// The chained pass on real threads (any interleaving) and in turns gives the one-piece bits,
    /// and hands on the state at the last row exactly once.
    #[test]
    fn chained_pass_gives_identical_bits() {
        let mut rng = Lcg(5);
        for n in [1, 1024, 4097, 5121, 5122, 9000, 40_000] {
            let x: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
            for p in [0usize, 1, 1022, 1023, 1024, 4100] {
                if p >= n {
                    continue;
                }
                let whole = run(&Sequential, &x, 0.97, p);
                for (threads, turns) in [(2, 0), (3, 0), (8, 0), (0, 1), (0, 3)] {
                    let w = Workers::new(threads, turns);
                    assert_bits_eq(&run(&w, &x, 0.97, p), &whole, "chained scan");
                    let carries = w.carry_out.into_inner().unwrap();
                    assert_eq!(carries, vec![vec![whole[n - 1]]], "n={n} p={p}");
                }
            }
        }
    }

    /// With no patience at all, workers on real threads recompute whatever carry is not there
    /// yet (the path a descheduled or panicked worker triggers): still the one-piece bits.
    #[test]
    fn impatient_workers_recompute_identical_carries() {
        let mut rng = Lcg(8);
        let n = 60_000;
        let x: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        for p in [0usize, 1023, 2500] {
            let whole = run(&Sequential, &x, 0.99, p);
            let rec = Recurrence {
                decay: [0.99],
                seed_row: p,
                seed: [x[p]],
            };
            let drive = |start: usize, b: &mut [[f64; 1]]| fill_rows(start, b, |t| [x[t]]);
            let first = (p + 1) / SCAN_BLOCK;
            let end = (n - 1) / SCAN_BLOCK + 1;
            for threads in [2, 4] {
                let w = Workers::new(threads, 0);
                let mut out = vec![0.0; n];
                let powers = Powers::new(rec.decay);
                let write = |o: &mut [&mut [f64]; 1],
                             i: usize,
                             t: usize,
                             ys: &[[f64; 1]],
                             st: Store<'_>| {
                    write_rows(o[0], i, t, ys, st, |_, y| y[0])
                };
                run_chained(
                    &w,
                    n,
                    &rec,
                    &powers,
                    (first, end),
                    &drive,
                    [&mut out],
                    &write,
                    usize::MAX,
                    0,
                );
                assert_bits_eq(&out, &whole, "impatient chained scan");
                let carries = w.carry_out.into_inner().unwrap();
                assert_eq!(carries, vec![vec![whole[n - 1]]]);
            }
        }
    }

    /// A worker stalled inside its unit (here: its drive sleeps the first time) does not stall the
    /// others: the next unit's worker recomputes the late carry, and the bits do not move.
    #[test]
    fn a_stalled_worker_is_overtaken() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let mut rng = Lcg(9);
        let n = 40 * SCAN_BLOCK;
        let x: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let rec = Recurrence {
            decay: [0.95],
            seed_row: 0,
            seed: [x[0]],
        };
        let stalled_at = 2 * LANES * SCAN_BLOCK;
        let calls = AtomicUsize::new(0);
        let drive = |start: usize, b: &mut [[f64; 1]]| {
            if start == stalled_at && calls.fetch_add(1, Ordering::Relaxed) == 0 {
                std::thread::sleep(Duration::from_millis(300));
            }
            fill_rows(start, b, |t| [x[t]])
        };
        let w = Workers::new(2, 0);
        let mut out = vec![0.0; n];
        let started = Instant::now();
        run_scan(&w, n, &rec, drive, [&mut out], |o, i, t, ys, st| {
            write_rows(o[0], i, t, ys, st, |_, y| y[0])
        });
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(
            calls.load(Ordering::Relaxed),
            2,
            "the late unit was recomputed once"
        );
        assert_bits_eq(&out, &run(&Sequential, &x, 0.95, 0), "overtaken scan");
    }

    /// The fused pass of a two-channel scan feeding a one-channel scan gives the bits of the two
    /// scans run one after the other, on any schedule, patient or not, for second-stage seed rows
    /// on the first stage's block and unit grids or off them; the carries go out line first.
    #[test]
    fn a_scan_feeding_a_scan_gives_the_two_scans_bits() {
        let mut rng = Lcg(12);
        let n = 40_000;
        let x: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let drive = |start: usize, b: &mut [[f64; 2]]| fill_rows(start, b, |t| [x[t], 0.5 * x[t]]);
        let value = |y: &[f64; 2]| y[0] - y[1];
        for (p1, p2) in [
            (0, 0),
            (25, 33),
            (1019, 1027),
            (1022, 1023),
            (4, 9000),
            (3000, 20_000),
        ] {
            let first = Recurrence {
                decay: [0.9, 0.97],
                seed_row: p1,
                seed: [x[p1], -x[p1]],
            };
            let mut m = vec![0.0; n];
            run_scan(
                &Sequential,
                n,
                &first,
                drive,
                [&mut m],
                |o, i, t, ys, st| write_rows(o[0], i, t, ys, st, |_, y| value(y)),
            );
            let k = 0.2;
            let second = Recurrence {
                decay: [0.8],
                seed_row: p2,
                seed: [m[p2] * 0.5],
            };
            let (mut z, mut h) = (vec![0.0; n], vec![0.0; n]);
            let sdrive = |start: usize, b: &mut [[f64; 1]]| fill_rows(start, b, |t| [k * m[t]]);
            run_scan(
                &Sequential,
                n,
                &second,
                sdrive,
                [&mut z, &mut h],
                |o, i, t, ys, st| {
                    write_rows(o[0], i, t, ys, st, |_, y| y[0]);
                    write_rows(o[1], i, t, ys, st, |t, y| m[t] - y[0]);
                },
            );
            for (threads, turns, patience) in [
                (2, 0, 2),
                (3, 0, 2),
                (8, 0, 2),
                (0, 3, 2),
                (2, 0, 0),
                (4, 0, 0),
            ] {
                let w = Workers::new(threads, turns);
                let mut got = [vec![0.0; n], vec![0.0; n], vec![0.0; n]];
                let [gm, gz, gh] = &mut got;
                let ran = feed_chained(
                    &w,
                    n,
                    &first,
                    drive,
                    value,
                    (&second, k, m[p2]),
                    [gm, gz, gh],
                    patience,
                );
                assert!(ran, "p1={p1} p2={p2}");
                assert_bits_eq(&got[0][p1..], &m[p1..], "fed scan: first stage");
                assert_bits_eq(&got[1][p2..], &z[p2..], "fed scan: second stage");
                assert_bits_eq(&got[2][p2..], &h[p2..], "fed scan: difference");
                let carries = w.carry_out.into_inner().unwrap();
                assert_eq!(carries.len(), 2);
                assert_eq!(carries[1], vec![z[n - 1]]);
            }
        }
    }

    /// The staggered lanes visit every row `1..SCAN_BLOCK` of every block exactly once, each
    /// block's rows in order, and the interleaved local scans give the one-block scans' bits.
    #[test]
    fn skewed_lanes_run_each_blocks_rows_in_order() {
        let mut blocks = [[0usize; SCAN_BLOCK]; LANES];
        let mut next = [1usize; LANES];
        skewed_lanes(&mut blocks, |j, block, i| {
            assert_eq!(i, next[j], "lane {j} out of order");
            next[j] += 1;
            block[i] += 1;
        });
        assert_eq!(next, [SCAN_BLOCK; LANES]);
        assert!(blocks
            .iter()
            .all(|b| b[0] == 0 && b[1..].iter().all(|&v| v == 1)));

        let mut rng = Lcg(5);
        let rec = Recurrence {
            decay: [0.9, -0.3],
            seed_row: 0,
            seed: [0.0; 2],
        };
        let drives: Vec<[f64; 2]> = (0..LANES * SCAN_BLOCK)
            .map(|_| [rng.normal(), rng.normal() * 1e3])
            .collect();
        let mut lanes = drives.clone();
        rec.local_lanes_in_place(&mut lanes);
        let mut one_by_one = drives;
        for block in one_by_one.chunks_mut(SCAN_BLOCK) {
            rec.local_in_place(block);
        }
        let flat = |v: &[[f64; 2]]| v.iter().flatten().copied().collect::<Vec<f64>>();
        assert_bits_eq(
            &flat(&lanes),
            &flat(&one_by_one),
            "lanes against one block at a time",
        );
    }

    #[test]
    fn any_split_gives_identical_bits() {
        let mut rng = Lcg(11);
        for n in [1, 2, 1023, 1024, 1025, 4096, 4097, 9000, 20_000] {
            let x: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
            for p in [0usize, 1, 1022, 1023, 4100] {
                if p >= n {
                    continue;
                }
                let whole = run(&Sequential, &x, 0.93, p);
                for _ in 0..6 {
                    let got = run(&CutAt(random_cuts(&mut rng, n, 16)), &x, 0.93, p);
                    assert_bits_eq(&got, &whole, "scan split");
                }
            }
        }
    }
}
