//! The device-set executor for devices that run the Rust kernels: the CPU (rayon) and simulated
//! GPUs ([`simulated`](super::simulated)). It is a [`Splitter`]: rows are cut on the global scan-block
//! grid in proportion to the members' shares, each member runs its piece on its own thread, and
//! the pieces are written straight into their rows of the output (fusion in row order).
//!
//! Why the output cannot depend on the members, the shares or the timing: every kernel computes
//! each row from global row indices only, so any cut gives the same bits (`kernels::split`). A
//! windowed piece reads its halo from the shared input; a recursive one gets its carry from the
//! kernel's own pass over the block ends before it, chained on the host in block order
//! (`kernels::scan`). Property tests below check it over random share vectors and member sets.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::simulated;
use crate::exec::cpu::RayonSplit;
use crate::kernels::scan::SCAN_BLOCK;
use crate::kernels::split::{cut_pieces, piece_starts, Splitter};

/// A member of a device set that runs the Rust kernels.
#[derive(Debug, Clone, PartialEq)]
pub enum Member {
    /// The CPU with this many rayon workers.
    Cpu { workers: usize },
    /// A simulated GPU: one CPU thread slowed down to `speed` (1.0 = one CPU thread).
    Simulated { speed: f64 },
}

/// Shares as weights: a share that is not a positive finite number counts as 0 (that member
/// gets nothing).
pub fn usable_shares(shares: &[f64]) -> Vec<f64> {
    shares
        .iter()
        .map(|s| if s.is_finite() && *s > 0.0 { *s } else { 0.0 })
        .collect()
}

/// What one member did during a call: rows written and time busy.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MemberTime {
    pub rows: usize,
    pub busy: Duration,
}

/// Members that run the Rust kernels, each on its share of the rows (see the module doc).
pub struct DeviceSetSplit {
    members: Vec<Member>,
    shares: Vec<f64>,
    times: Mutex<Vec<MemberTime>>,
}

impl DeviceSetSplit {
    /// `shares` are non-negative weights, one per member (normalised here).
    pub fn new(members: Vec<Member>, shares: &[f64]) -> Self {
        let clean = usable_shares(shares);
        let total: f64 = clean.iter().sum();
        let shares = if total > 0.0 {
            clean.iter().map(|s| s / total).collect()
        } else {
            vec![1.0 / members.len().max(1) as f64; members.len()]
        };
        let n = members.len();
        DeviceSetSplit {
            members,
            shares,
            times: Mutex::new(vec![MemberTime::default(); n]),
        }
    }

    /// Rows and busy time per member so far.
    pub fn times(&self) -> Vec<MemberTime> {
        self.times.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Piece lengths per member for rows `first_row .. first_row + len`: cut points at the
    /// members' cumulative shares, rounded to the global scan-block grid (a member may get 0).
    pub fn lengths(&self, first_row: usize, len: usize) -> Vec<usize> {
        let end = first_row + len;
        let mut at = first_row;
        let mut acc = 0.0;
        let mut lens = Vec::with_capacity(self.members.len());
        let last = self.shares.iter().rposition(|s| *s > 0.0).unwrap_or(0);
        for (i, s) in self.shares.iter().enumerate() {
            acc += s;
            let cut = if i >= last {
                end
            } else {
                let ideal = first_row as f64 + acc * len as f64;
                let grid = ((ideal / SCAN_BLOCK as f64).round() as usize) * SCAN_BLOCK;
                grid.clamp(at, end)
            };
            lens.push(cut - at);
            at = cut;
        }
        lens
    }

    /// Runs `work` as member `i` would: the CPU member in parallel, a simulated GPU on one
    /// thread and then idle until it has taken `1/speed` times its nominal time (`simulated`).
    fn as_member<T>(&self, i: usize, rows: usize, work: impl FnOnce(&Member) -> T) -> T {
        let started = Instant::now();
        let out = work(&self.members[i]);
        if let Member::Simulated { speed } = self.members[i] {
            simulated::pace(speed, started, rows);
        }
        if let Ok(mut t) = self.times.lock() {
            t[i].rows += rows;
            t[i].busy += started.elapsed();
        }
        out
    }
}

impl Splitter for DeviceSetSplit {
    fn for_each_piece<const K: usize, F>(&self, first_row: usize, outs: [&mut [f64]; K], fill: F)
    where
        F: Fn(usize, [&mut [f64]; K]) + Sync + Send,
    {
        let lens = self.lengths(first_row, outs[0].len());
        let starts = piece_starts(first_row, &lens);
        let pieces = cut_pieces(outs, &lens);
        let fill = &fill;
        std::thread::scope(|scope| {
            for (i, (lo, piece)) in starts.into_iter().zip(pieces).enumerate() {
                let rows = lens[i];
                if rows == 0 {
                    continue;
                }
                scope.spawn(move || {
                    self.as_member(i, rows, |m| match m {
                        Member::Cpu { workers } if *workers > 1 => {
                            RayonSplit::new(*workers).for_each_piece(lo, piece, fill)
                        }
                        _ => fill(lo, piece),
                    })
                });
            }
        });
    }

    fn map_indexed<T: Send, F>(&self, n: usize, f: F) -> Vec<T>
    where
        F: Fn(usize) -> T + Sync + Send,
    {
        // Contiguous index ranges in proportion to the shares (the scan pre-pass: block groups).
        let mut bounds = vec![0usize];
        let mut acc = 0.0;
        for (i, s) in self.shares.iter().enumerate() {
            acc += s;
            let b = if i + 1 == self.shares.len() {
                n
            } else {
                ((acc * n as f64).round() as usize).clamp(*bounds.last().unwrap_or(&0), n)
            };
            bounds.push(b);
        }
        let f = &f;
        let parts: Vec<Vec<T>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..self.members.len())
                .map(|i| {
                    let (a, b) = (bounds[i], bounds[i + 1]);
                    scope.spawn(move || {
                        if a == b {
                            return Vec::new();
                        }
                        self.as_member(i, 0, |m| match m {
                            Member::Cpu { workers } if *workers > 1 => {
                                RayonSplit::new(*workers).map_indexed(b - a, |j| f(a + j))
                            }
                            _ => (a..b).map(f).collect(),
                        })
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        parts.into_iter().flatten().collect()
    }

    fn max_pieces(&self) -> usize {
        self.members
            .iter()
            .map(|m| match m {
                Member::Cpu { workers } => (*workers).max(1),
                Member::Simulated { .. } => 1,
            })
            .sum::<usize>()
            .max(1)
    }

    /// The start of the last piece any member runs, the CPU's own rayon pieces included (a scan
    /// needs carries up to there).
    fn last_piece_start(&self, first_row: usize, len: usize) -> usize {
        let lens = self.lengths(first_row, len);
        let Some(last) = lens.iter().rposition(|l| *l > 0) else {
            return first_row;
        };
        let lo = first_row + lens[..last].iter().sum::<usize>();
        match self.members[last] {
            Member::Cpu { workers } if workers > 1 => {
                RayonSplit::new(workers).last_piece_start(lo, lens[last])
            }
            _ => lo,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::split::Sequential;
    use crate::kernels::testing::{series_zoo, Lcg};
    use crate::kernels::Spec;

    fn specs() -> Vec<Spec> {
        vec![
            Spec::sma(20).unwrap(),
            Spec::ema(30).unwrap(),
            Spec::wma(9).unwrap(),
            Spec::rolling_std(20, 1).unwrap(),
            Spec::zscore(14).unwrap(),
            Spec::bollinger(20, 2.0).unwrap(),
            Spec::rsi(14).unwrap(),
            Spec::roc(10).unwrap(),
            Spec::macd(12, 26, 9).unwrap(),
            Spec::atr(14).unwrap(),
            Spec::natr(14).unwrap(),
            Spec::stoch(14, 3, 3).unwrap(),
            Spec::Obv,
        ]
    }

    fn run<S: Splitter>(s: &S, spec: &Spec, ins: &[&[f64]]) -> Vec<Vec<f64>> {
        let n = ins[0].len();
        let mut outs = vec![vec![0.0; n]; spec.outputs().len()];
        let mut views: Vec<&mut [f64]> = outs.iter_mut().map(|o| o.as_mut_slice()).collect();
        spec.run(s, ins, &mut views);
        for o in &mut outs {
            o[..spec.lookback().min(n)].fill(0.0);
        }
        outs
    }

    /// Random member sets (1-4 members, CPU with 1-3 workers and simulated GPUs) with random
    /// shares, zero shares included: always the single-thread bits.
    #[test]
    fn fusion_is_bit_identical_for_any_members_and_shares() {
        let mut rng = Lcg(11);
        let zoo = series_zoo(9_000, 4);
        let close = &zoo[0];
        let high: Vec<f64> = close.iter().map(|v| v + 0.7).collect();
        let low: Vec<f64> = close.iter().map(|v| v - 0.4).collect();
        for spec in specs() {
            for n in [0, 5, 1_000, 4_097, 9_000] {
                let ins: Vec<&[f64]> = match spec.inputs().len() {
                    3 => vec![&close[..n], &high[..n], &low[..n]],
                    2 => vec![&close[..n], &high[..n]],
                    _ => vec![&close[..n]],
                };
                let want = run(&Sequential, &spec, &ins);
                for _ in 0..6 {
                    let k = 1 + rng.below(4);
                    let members: Vec<Member> = (0..k)
                        .map(|i| {
                            if i == 0 && rng.below(2) == 0 {
                                Member::Cpu {
                                    workers: 1 + rng.below(3),
                                }
                            } else {
                                Member::Simulated { speed: 1.0 }
                            }
                        })
                        .collect();
                    let shares: Vec<f64> = (0..k)
                        .map(|_| rng.below(4) as f64 * rng.uniform())
                        .collect();
                    let split = DeviceSetSplit::new(members.clone(), &shares);
                    let got = run(&split, &spec, &ins);
                    for (g, w) in got.iter().zip(&want) {
                        for (t, (a, b)) in g.iter().zip(w).enumerate() {
                            assert!(
                                a.to_bits() == b.to_bits(),
                                "{spec:?} n={n} {members:?} {shares:?}: row {t}: {a:e} vs {b:e}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn lengths_follow_the_shares_on_the_grid() {
        let s = DeviceSetSplit::new(
            vec![
                Member::Cpu { workers: 1 },
                Member::Simulated { speed: 1.0 },
                Member::Simulated { speed: 0.5 },
            ],
            &[2.0, 1.0, 1.0],
        );
        let lens = s.lengths(0, 1 << 20);
        assert_eq!(lens.iter().sum::<usize>(), 1 << 20);
        assert_eq!(lens, vec![1 << 19, 1 << 18, 1 << 18]);
        let lens = s.lengths(100, 3_000);
        assert_eq!(lens.iter().sum::<usize>(), 3_000);
        assert_eq!((100 + lens[0]) % SCAN_BLOCK, 0);
        // Degenerate shares fall back to equal ones.
        let eq = DeviceSetSplit::new(vec![Member::Cpu { workers: 1 }; 2], &[0.0, f64::NAN]);
        assert_eq!(eq.lengths(0, 4096), vec![2048, 2048]);
    }

    #[test]
    fn members_report_rows_and_a_slow_member_takes_longer() {
        let x = &series_zoo(200_000, 1)[0];
        let spec = Spec::bollinger(20, 2.0).unwrap();
        let split = DeviceSetSplit::new(
            vec![
                Member::Simulated { speed: 1.0 },
                Member::Simulated { speed: 0.25 },
            ],
            &[1.0, 1.0],
        );
        run(&split, &spec, &[x]);
        let t = split.times();
        assert_eq!(t[0].rows + t[1].rows, x.len() - spec.lookback());
        let rate = |m: &MemberTime| m.rows as f64 / m.busy.as_secs_f64();
        assert!(rate(&t[0]) > 2.0 * rate(&t[1]), "{t:?}");
    }
}
