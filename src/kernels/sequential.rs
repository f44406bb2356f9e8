//! Sequential state machines: nonlinear recurrences whose state cannot be composed across blocks
//! (Parabolic SAR's trend flips, SuperTrend's band ratchets, the Hilbert-transform family's
//! feedback through its own outputs).
//!
//! # Spec
//! A machine has parameters (the implementing value), a state, and a `step` that maps
//! `(state, t, inputs at row t)` to `(new state, outputs at row t)`. The answer is
//! `state_0 = init()`, then for `t = first_row, first_row + 1, …, n - 1` in order:
//! `outputs_t = step(&mut state, t, [in_0[t], …, in_{K-1}[t]])`. A step may read other rows
//! through its own parameters (a lagged input) but must be a pure function of the state, `t` and
//! those values, spelled out in IEEE operations like every other kernel (no FMA).
//!
//! # Why one worker
//! There is no associative way to combine a machine's effect over one block with its effect over
//! the next (unlike the linear scans, whose block effect is the pair `(A, L)`), so row `t` needs the
//! state left by row `t - 1`, computed by the same operations in the same order. [`run_machine`]
//! therefore runs the whole series as one piece on the calling thread, whatever the splitter: the
//! bits are trivially split-invariant, and parallelism comes from running many series (`.over()`
//! groups, columns) at once, never from cutting one.
//!
//! # Resuming
//! `State: Clone`: [`resume`] continues from a saved state at any row, and running rows
//! `[0, m)`, saving the state, then resuming at `m` gives the bits of one run over `[0, n)`
//! (tested). A streaming caller keeps the state between batches.
//!
//! # GPU
//! A machine on a GPU is one thread walking one segment: `tx_machine_seg` (`exec/cuda/family.cu`)
//! runs every segment of a batch in one launch, each with the bits of [`run_machine`] on it alone
//! (tested through the host build for [`ResettingMax`]). An indicator built on this family adds
//! its step there.

use super::canon;
use super::extrema::nan_max;
use super::split::Splitter;

/// A nonlinear recurrence over rows with `K` inputs and `M` outputs per row.
pub trait StateMachine<const K: usize, const M: usize>: Sync {
    /// Everything carried from one row to the next; cloning it is saving it.
    type State: Clone + Send;
    /// The state before the first row.
    fn init(&self) -> Self::State;
    /// Advances the state over row `t` (inputs `row`) and returns that row's outputs.
    fn step(&self, state: &mut Self::State, t: usize, row: [f64; K]) -> [f64; M];
}

/// Runs `machine` from `state` over rows `first_row .. first_row + outs[0].len()`: row `t` reads
/// `inputs[j][t]` and writes `outs[j][t - first_row]`. Leaves `state` after the last row.
pub fn resume<Mc: StateMachine<K, M>, const K: usize, const M: usize>(
    machine: &Mc,
    state: &mut Mc::State,
    first_row: usize,
    inputs: [&[f64]; K],
    outs: [&mut [f64]; M],
) {
    let len = outs.first().map_or(0, |o| o.len());
    let mut outs = outs;
    for i in 0..len {
        let t = first_row + i;
        let row = inputs.map(|x| x[t]);
        let y = machine.step(state, t, row);
        for (o, v) in outs.iter_mut().zip(y) {
            o[i] = canon(v);
        }
    }
}

/// Runs `machine` from its initial state over rows `first_row .. n` of full-length inputs and
/// outputs (earlier rows are left untouched) as one piece on the calling thread, whatever
/// `_split` would do (see "Why one worker"); returns the state after the last row.
pub fn run_machine<S: Splitter, Mc: StateMachine<K, M>, const K: usize, const M: usize>(
    _split: &S,
    machine: &Mc,
    first_row: usize,
    inputs: [&[f64]; K],
    outs: [&mut [f64]; M],
) -> Mc::State {
    let mut state = machine.init();
    let n = outs.first().map_or(0, |o| o.len());
    if first_row < n {
        let tail = outs.map(|o| &mut o[first_row..]);
        resume(machine, &mut state, first_row, inputs, tail);
    }
    state
}

/// A running maximum that restarts at every row whose `reset` input is nonzero: the test subject
/// of this family, and the shape of SAR's extreme point (which restarts at every trend flip).
///
/// Inputs `[x, reset]`; outputs `[max, age]`. State `(max, since)`. Step at row `t`: if
/// `reset_t != 0.0` (NaN counts as a reset) or no row has been seen, `max = x_t`, `since = t`;
/// else `max = nan_max(max, x_t)` (NaN-propagating, the second operand on ties, as `extrema.rs`).
/// `age = (t - since)` as a double: rows since the last restart.
pub struct ResettingMax;

#[derive(Debug, Clone, PartialEq)]
pub struct ResettingMaxState {
    pub max: f64,
    pub since: Option<usize>,
}

impl StateMachine<2, 2> for ResettingMax {
    type State = ResettingMaxState;

    fn init(&self) -> ResettingMaxState {
        ResettingMaxState {
            max: f64::NAN,
            since: None,
        }
    }

    #[inline(always)]
    fn step(&self, s: &mut ResettingMaxState, t: usize, [x, reset]: [f64; 2]) -> [f64; 2] {
        match s.since {
            Some(_) if reset == 0.0 => s.max = nan_max(s.max, x),
            _ => {
                s.max = x;
                s.since = Some(t);
            }
        }
        let since = s.since.unwrap_or(t);
        [s.max, (t - since) as f64]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::split::{CutAt, Sequential};
    use crate::kernels::testing::{assert_bits_eq, random_cuts, series_zoo, Lcg};

    fn inputs(n: usize, seed: u64) -> Vec<(Vec<f64>, Vec<f64>)> {
        let mut rng = Lcg(seed);
        series_zoo(n, seed)
            .into_iter()
            .map(|mut x| {
                if n > 10 {
                    x[rng.below(n)] = f64::NAN;
                    x[rng.below(n)] = -0.0;
                }
                let reset = (0..n)
                    .map(|_| match rng.below(40) {
                        0 => 1.0,
                        1 => f64::NAN,
                        _ => 0.0,
                    })
                    .collect();
                (x, reset)
            })
            .collect()
    }

    fn run<S: Splitter>(
        s: &S,
        x: &[f64],
        r: &[f64],
        first: usize,
    ) -> ([Vec<f64>; 2], ResettingMaxState) {
        let mut out = [vec![-1.0; x.len()], vec![-1.0; x.len()]];
        let [a, b] = &mut out;
        let st = run_machine(s, &ResettingMax, first, [x, r], [a, b]);
        (out, st)
    }

    #[test]
    fn resetting_max_matches_a_direct_loop() {
        for (x, r) in inputs(2000, 3) {
            let ([m, age], _) = run(&Sequential, &x, &r, 0);
            let mut start = 0;
            for t in 0..x.len() {
                if t == 0 || r[t] != 0.0 {
                    start = t;
                }
                let win = &x[start..=t];
                let want = if win.iter().any(|v| v.is_nan()) {
                    f64::NAN
                } else {
                    win.iter().copied().fold(f64::NEG_INFINITY, f64::max)
                };
                assert!(m[t] == want || (m[t].is_nan() && want.is_nan()), "row {t}");
                assert_eq!(age[t], (t - start) as f64, "row {t}");
            }
        }
    }

    #[test]
    fn every_splitter_gives_the_same_bits() {
        let mut rng = Lcg(5);
        for (x, r) in inputs(3000, 9) {
            for first in [0, 1, 700] {
                let (whole, st) = run(&Sequential, &x, &r, first);
                for _ in 0..4 {
                    let (got, st2) = run(&CutAt(random_cuts(&mut rng, x.len(), 16)), &x, &r, first);
                    assert_bits_eq(&got[0], &whole[0], "max");
                    assert_bits_eq(&got[1], &whole[1], "age");
                    assert_eq!(format!("{st:?}"), format!("{st2:?}"));
                }
            }
        }
    }

    /// Run half, save (clone) the state, resume from the copy: the bits of one whole run, and
    /// the same final state.
    #[test]
    fn a_saved_state_resumes_bit_identically() {
        for (x, r) in inputs(2500, 17) {
            let n = x.len();
            let (whole, end_state) = run(&Sequential, &x, &r, 0);
            for m in [0, 1, 1024, 1250, n - 1, n] {
                let mut got = [vec![-1.0; n], vec![-1.0; n]];
                let [a, b] = &mut got;
                let (a0, a1) = a.split_at_mut(m);
                let (b0, b1) = b.split_at_mut(m);
                let mut saved = {
                    let mut state = ResettingMax.init();
                    resume(&ResettingMax, &mut state, 0, [&x, &r], [a0, b0]);
                    state.clone()
                };
                resume(&ResettingMax, &mut saved, m, [&x, &r], [a1, b1]);
                assert_bits_eq(&got[0], &whole[0], "resumed max");
                assert_bits_eq(&got[1], &whole[1], "resumed age");
                assert_eq!(format!("{saved:?}"), format!("{end_state:?}"));
            }
        }
    }
}
