//! A cascade of one-channel scans, each driven by the rows of the one before (DEMA, TEMA, T3:
//! chains of EMAs), in one chained pass that writes only a combination of the stages' rows.
//!
//! # Bits
//! Stage `s` is the scan of `scan.rs` (its spec: blocks aligned to row 0, its own seed row
//! `p_s`, seed rows nondecreasing) driven by `b_t = gain·y_{s-1,t}` (stage 0 by the caller's
//! drive). The pass evaluates exactly those formulas, so every stage's rows are those of running
//! the scans one after another through full-length temporaries (tested). Only the schedule
//! differs, as in `scan::run_scan_feeding_scan`.
//!
//! # Execution
//! The stages share stage 0's units of `LANES` blocks. A worker claims a unit and runs its
//! stages one after the other on the unit's rows in scratch: each stage's local scan reads the
//! previous stage's rows while they are in cache, its carry out is published as soon as it is
//! chained (the next unit's worker is waiting for it), and its fix-up leaves its rows in scratch
//! for the combination and, where the next stage has the same rows in the unit, writes that
//! stage's drive (`gain·y`) as it goes, so the next local scan runs in place. Only the caller's
//! combination of the stages goes to memory, so a cascade of `M` scans reads its input once and
//! writes one output, with no temporaries. A worker whose carry is late past the patience (its
//! predecessor descheduled) reruns every stage of the units since the last one whose carries in
//! are all known, from the inputs, with the same formulas. With one worker the units simply run
//! in order.
//!
//! A cascade of at least `ACROSS_MIN_STAGES` stages (T3) runs each full unit transposed
//! (`across.rs`): stage 0's drive is transposed once, each stage's fix-up is fused with the next
//! stage's local scan row by row (vectorised across the unit's blocks), and the combination is
//! transposed back as it is stored. The first and last few units, whose blocks are not all full,
//! take the row-order path above.

use std::time::{Duration, Instant};

use super::across::{
    chain_across, fix_up_across, fix_up_feeding_across, local_across, store_across, transpose_in,
};
use super::canon;
use super::chained::{Carries, Claims, PATIENCE};
use super::scan::{fix_up, fix_up_feeding, Drive, Powers, Recurrence, LANES, SCAN_BLOCK};
use super::scratch::with_scratch;
use super::split::{cut_pieces, Splitter};
use super::stream_store::{store_rows, with_store};

/// Rows of one unit.
const UNIT: usize = SCAN_BLOCK * LANES;

/// Cascades of this many stages run their full units transposed (`across.rs`): moving the input
/// and the output across costs about what fusing each fix-up with the next local scan saves at
/// three stages (TEMA: 0.99× the row-order time, DEMA: 1.13×, T3: 0.67×, one thread, 10M rows).
const ACROSS_MIN_STAGES: usize = 4;

/// The shared state of one cascade pass: the stages, and each stage's carry out of each unit,
/// published once known.
struct Cascade<'a, const M: usize, D> {
    stages: &'a [Recurrence<1>; M],
    powers: [Powers<1>; M],
    gain: f64,
    drive: &'a D,
    n: usize,
    /// Stage 0's first block: unit `u` holds blocks `origin + u·LANES ..`.
    origin: usize,
    end: usize,
    /// Per stage.
    carries: [Carries<[f64; 1]>; M],
}

impl<'a, const M: usize, D: Drive<1>> Cascade<'a, M, D> {
    fn first_block(&self, s: usize) -> usize {
        (self.stages[s].seed_row + 1) / SCAN_BLOCK
    }

    /// Stage `s`'s blocks in unit `u` (empty before the stage's first block).
    fn blocks(&self, s: usize, u: usize) -> (usize, usize) {
        let k0 = self.origin + u * LANES;
        (k0.max(self.first_block(s)), (k0 + LANES).min(self.end))
    }

    /// Stage `s`'s rows in unit `u` (`None` when it has none there).
    fn rows(&self, s: usize, u: usize) -> Option<(usize, usize)> {
        let (k0, k1) = self.blocks(s, u);
        (k0 < k1).then(|| self.stages[s].rows(k0, k1, self.n))
    }

    /// Stage `s`'s carry into unit `u` if known now: its seed in the stage's first unit.
    fn known(&self, s: usize, u: usize) -> Option<[f64; 1]> {
        if u <= (self.first_block(s) - self.origin) / LANES {
            return Some(self.stages[s].seed);
        }
        self.carries[s].get(u - 1)
    }

    /// Runs every stage of unit `u` in `bufs` (`M` slices of [`UNIT`] rows: `bufs[s·UNIT + i]`
    /// ends up holding stage `s`'s `y` at row `lo + i`, `lo` the unit's first row of stage 0),
    /// taking each stage's carry into the unit from `carry_in(s)` after its local scan and
    /// publishing its carry out before its fix-up.
    ///
    /// `bufs` has one more [`UNIT`] of scratch after the stages'. Returns whether the stages'
    /// rows are transposed ([`Self::unit_across`]) rather than in row order.
    fn unit(
        &self,
        u: usize,
        bufs: &mut [[f64; 1]],
        carry_in: &mut impl FnMut(usize) -> [f64; 1],
    ) -> bool {
        let (bufs, tmp) = bufs.split_at_mut(M * UNIT);
        if self.runs_across(u) {
            self.unit_across(u, bufs, tmp, carry_in);
            return true;
        }
        let Some((lo, _)) = self.rows(0, u) else {
            return false;
        };
        // Whether stage `s`'s drive is in its buffer already (written by the fix-up before).
        let mut fed = false;
        for s in 0..M {
            let Some((slo, shi)) = self.rows(s, u) else {
                continue;
            };
            let (k0, k1) = self.blocks(s, u);
            let rec = &self.stages[s];
            let (done, rest) = bufs.split_at_mut(s * UNIT);
            let (cur, next) = rest.split_at_mut(UNIT.min(rest.len()));
            let cur = &mut cur[slo - lo..shi - lo];
            if fed {
                rec.local_blocks(&|_: usize, _: &mut [[f64; 1]]| {}, (k0, k1), self.n, cur);
            } else if s == 0 {
                rec.local_blocks(self.drive, (k0, k1), self.n, cur);
            } else {
                let (prev, gain) = (&done[(s - 1) * UNIT..], self.gain);
                let feed = |start: usize, b: &mut [[f64; 1]]| {
                    for (v, y) in b.iter_mut().zip(&prev[start - lo..]) {
                        *v = [gain * y[0]];
                    }
                };
                rec.local_blocks(&feed, (k0, k1), self.n, cur);
            }
            let cs = rec.chain_blocks(&self.powers[s], (k0, k1), self.n, cur, carry_in(s));
            self.carries[s].publish(u, cs[k1 - k0]);
            // When the next stage has exactly these rows here (every unit past its seed row), the
            // fix-up writes its drive too.
            fed = s + 1 < M && self.rows(s + 1, u) == Some((slo, shi));
            for (j, k) in (k0..k1).enumerate() {
                let (bs, be) = rec.span(k, self.n);
                let block = &mut cur[bs - slo..be - slo];
                if fed {
                    let drive = &mut next[bs - lo..be - lo];
                    fix_up_feeding(block, &self.powers[s], cs[j], self.gain, drive);
                } else {
                    fix_up(block, &self.powers[s], cs[j]);
                }
            }
        }
        false
    }

    /// Whether unit `u` runs transposed: a cascade of at least [`ACROSS_MIN_STAGES`] stages,
    /// each with all [`LANES`] blocks of the unit, full (every unit but the first and last few
    /// of a long series).
    fn runs_across(&self, u: usize) -> bool {
        if M < ACROSS_MIN_STAGES {
            return false;
        }
        let k0 = self.origin + u * LANES;
        // Seed rows are nondecreasing: the last stage starts last.
        self.rows(M - 1, u) == Some((k0 * SCAN_BLOCK, (k0 + LANES) * SCAN_BLOCK))
    }

    /// [`Self::unit`] on a full unit, with every stage transposed (`across.rs`): stage 0's drive
    /// is transposed once, every stage's local scans and fix-up (which writes the next stage's
    /// drive) run across the blocks, and `bufs` is left holding each stage's `y` as
    /// [`SCAN_BLOCK`] rows of [`Across`].
    fn unit_across(
        &self,
        u: usize,
        bufs: &mut [[f64; 1]],
        tmp: &mut [[f64; 1]],
        carry_in: &mut impl FnMut(usize) -> [f64; 1],
    ) {
        let lo = (self.origin + u * LANES) * SCAN_BLOCK;
        let tmp = &mut tmp[..UNIT];
        (self.drive)(lo, tmp);
        let stages = bufs.as_flattened_mut().as_chunks_mut::<LANES>().0;
        transpose_in(tmp, &mut stages[..SCAN_BLOCK]);
        local_across(self.stages[0].decay[0], &mut stages[..SCAN_BLOCK]);
        for s in 0..M {
            let (cur, next) = stages[s * SCAN_BLOCK..].split_at_mut(SCAN_BLOCK);
            let cs = chain_across(cur, &self.powers[s], carry_in(s)[0]);
            self.carries[s].publish(u, [cs[LANES]]);
            if s + 1 < M {
                let next_stage = (self.gain, self.stages[s + 1].decay[0]);
                fix_up_feeding_across(
                    cur,
                    &self.powers[s],
                    &cs,
                    next_stage,
                    &mut next[..SCAN_BLOCK],
                );
            } else {
                fix_up_across(cur, &self.powers[s], &cs);
            }
        }
    }

    /// Stage `s`'s carry into unit `u`: the predecessor's, waited for at most `patience`, after
    /// which the missing units are recomputed in `spare` (`M·UNIT` rows), from the last unit
    /// whose carries in are all known.
    fn carry_into(
        &self,
        s: usize,
        u: usize,
        patience: Duration,
        spare: &mut [[f64; 1]],
    ) -> [f64; 1] {
        if let Some(c) = self.known(s, u) {
            return c;
        }
        if let Some(c) = self.carries[s].wait(u, patience) {
            return c;
        }
        let mut j = u - 1;
        while !(0..M).all(|s| self.known(s, j).is_some()) {
            j -= 1;
        }
        for v in j..u {
            self.unit(v, spare, &mut |s| match self.known(s, v) {
                Some(c) => c,
                None => unreachable!("unit {v}'s predecessor has just published its carries"),
            });
        }
        match self.known(s, u) {
            Some(c) => c,
            None => unreachable!("unit {u}'s carries in have just been recomputed"),
        }
    }
}

/// Runs the cascade of `stages` (seed rows nondecreasing; stage 0 driven by `drive`, stage
/// `s > 0` by `gain·y_{s-1,t}`) over `n` rows and writes `combine([y_0, …, y_{M-1}])` at every
/// row after the last stage's seed row to `out` (full length; the caller writes the seed rows,
/// every other row is untouched).
pub fn run_cascade<S: Splitter, const M: usize>(
    split: &S,
    n: usize,
    stages: &[Recurrence<1>; M],
    (drive, gain): (impl Drive<1>, f64),
    out: &mut [f64],
    combine: impl Fn([f64; M]) -> f64 + Sync,
) {
    cascade_with_patience(split, n, stages, (&drive, gain), out, &combine, PATIENCE)
}

/// [`run_cascade`] with a given patience (see `chained::PATIENCE`).
fn cascade_with_patience<S: Splitter, const M: usize, D: Drive<1>>(
    split: &S,
    n: usize,
    stages: &[Recurrence<1>; M],
    (drive, gain): (&D, f64),
    out: &mut [f64],
    combine: &(impl Fn([f64; M]) -> f64 + Sync),
    patience: u32,
) {
    debug_assert!(stages.windows(2).all(|w| w[0].seed_row <= w[1].seed_row));
    let from = match stages.last() {
        Some(last) if last.seed_row + 1 < n => last.seed_row + 1,
        _ => return,
    };
    let origin = (stages[0].seed_row + 1) / SCAN_BLOCK;
    let end = (n - 1) / SCAN_BLOCK + 1;
    let units = (end - origin).div_ceil(LANES);
    let cascade = Cascade {
        stages,
        powers: std::array::from_fn(|s| Powers::new(stages[s].decay)),
        gain,
        drive,
        n,
        origin,
        end,
        carries: std::array::from_fn(|_| Carries::new(units)),
    };
    // One piece of the output per unit: the last stage's rows there (none before its first).
    let lens: Vec<usize> = (0..units)
        .map(|u| cascade.rows(M - 1, u).map_or(0, |(lo, hi)| hi - lo))
        .collect();
    let claims = Claims::new(cut_pieces([&mut out[from..n]], &lens));

    split.run_workers(|| {
        with_scratch(2 * (M + 1) * UNIT, |raw| {
            with_store(n - from, |store| {
                let (bufs, spare) = raw.as_chunks_mut::<1>().0.split_at_mut((M + 1) * UNIT);
                while let Some((u, [piece])) = claims.next() {
                    let started = Instant::now();
                    let across = cascade.unit(u, bufs, &mut |s| {
                        cascade.carry_into(s, u, started.elapsed() * patience, spare)
                    });
                    if across {
                        // The combination across the blocks, then back to row order.
                        let (ys, tmp) = bufs.split_at_mut(M * UNIT);
                        let ys = ys.as_flattened().as_chunks::<LANES>().0;
                        let comb = tmp.as_flattened_mut().as_chunks_mut::<LANES>().0;
                        for (i, row) in comb[..SCAN_BLOCK].iter_mut().enumerate() {
                            *row = std::array::from_fn(|j| {
                                canon(combine(std::array::from_fn(|s| ys[s * SCAN_BLOCK + i][j])))
                            });
                        }
                        store_across(&comb[..SCAN_BLOCK], piece, store);
                        continue;
                    }
                    let (Some((lo, _)), Some((slo, shi))) =
                        (cascade.rows(0, u), cascade.rows(M - 1, u))
                    else {
                        continue;
                    };
                    let ys: &[[f64; 1]] = bufs;
                    let at = |s: usize| s * UNIT + slo - lo;
                    store_rows(
                        piece,
                        &ys[at(M - 1)..at(M - 1) + shi - slo],
                        store,
                        |j, _| canon(combine(std::array::from_fn(|s| ys[at(s) + j][0]))),
                    );
                }
            })
        })
    });
    for stage in &cascade.carries {
        if let Some(c) = stage.last() {
            split.scan_carry_out(&c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::scan::{fill_rows, run_scan, write_rows};
    use crate::kernels::split::Sequential;
    use crate::kernels::testing::{assert_bits_eq, Lcg, Workers};

    /// The stages one after another through full-length temporaries (the definition).
    fn stage_by_stage<const M: usize>(
        x: &[f64],
        stages: &[Recurrence<1>; M],
        gain: f64,
    ) -> Vec<Vec<f64>> {
        let n = x.len();
        let mut ys: Vec<Vec<f64>> = Vec::new();
        for (s, rec) in stages.iter().enumerate() {
            let mut y = vec![0.0; n];
            let prev: &[f64] = if s == 0 { x } else { &ys[s - 1] };
            let g = if s == 0 { 0.5 } else { gain };
            let drive = |start: usize, b: &mut [[f64; 1]]| fill_rows(start, b, |t| [g * prev[t]]);
            run_scan(&Sequential, n, rec, drive, [&mut y], |o, i, t, v, st| {
                write_rows(o[0], i, t, v, st, |_, y| y[0])
            });
            ys.push(y);
        }
        ys
    }

    /// Any schedule (one worker, threads, turns, no patience at all) gives the stage-by-stage
    /// bits, for seed rows on and off the block and unit grids, and touches no earlier row; for
    /// three stages (row order) and six (full units transposed, as T3).
    #[test]
    fn a_cascade_gives_the_stage_by_stage_bits() {
        let seed_sets = [
            [0, 1, 2],
            [4, 8, 12],
            [1022, 1023, 1024],
            [29, 8190, 8191],
            [3000, 3000, 20_000],
        ];
        check_cascade::<3>(&seed_sets, |e| (3.0 * e[0] - 3.0 * e[1]) + e[2]);
        check_cascade::<6>(&seed_sets.map(|[a, b, c]| [a, a, b, b, c, c]), |e| {
            ((-0.3 * e[5] + 1.2 * e[4]) + -2.5 * e[3]) + 3.1 * e[2] + 0.5 * e[0]
        });
    }

    fn check_cascade<const M: usize>(
        seed_sets: &[[usize; M]],
        combine: impl Fn([f64; M]) -> f64 + Sync,
    ) {
        let mut rng = Lcg(21);
        for n in [1, 3, 1025, 9000, 40_000, 70_000] {
            let x: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
            for seeds in seed_sets {
                let stages: [Recurrence<1>; M] = std::array::from_fn(|s| Recurrence {
                    decay: [0.9 + 0.015 * s as f64],
                    seed_row: seeds[s],
                    seed: [s as f64 - 1.5],
                });
                let from = seeds[M - 1] + 1;
                let ys = stage_by_stage(&x, &stages, 0.1);
                let want: Vec<f64> = (from..n)
                    .map(|t| combine(std::array::from_fn(|s| ys[s][t])))
                    .collect();
                let drive =
                    |start: usize, b: &mut [[f64; 1]]| fill_rows(start, b, |t| [0.5 * x[t]]);
                for (threads, turns, patience) in [
                    (0, 1, 2),
                    (2, 0, 2),
                    (3, 0, 2),
                    (8, 0, 2),
                    (0, 3, 2),
                    (2, 0, 0),
                    (4, 0, 0),
                ] {
                    let w = Workers::new(threads, turns);
                    let mut out = vec![-7.0; n];
                    cascade_with_patience(
                        &w,
                        n,
                        &stages,
                        (&drive, 0.1),
                        &mut out,
                        &combine,
                        patience,
                    );
                    let what =
                        format!("M={M} n={n} seeds={seeds:?} threads={threads} turns={turns}");
                    if from < n {
                        assert_bits_eq(&out[from..], &want, &what);
                        let carries = w.carry_out.into_inner().unwrap();
                        assert_eq!(carries.len(), M, "{what}");
                        assert_eq!(carries[M - 1], vec![ys[M - 1][n - 1]], "{what}");
                    }
                    assert!(out[..from.min(n)].iter().all(|&v| v == -7.0), "{what}");
                }
            }
        }
    }
}
