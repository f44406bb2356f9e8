//! The rayon backend: cuts rows into one piece per worker, aligned to the scan block grid so that
//! recursive kernels need not recompute a partial block; windowed kernels read their halo from the
//! shared input. Recursive kernels instead run one chained pass on the workers
//! ([`Splitter::run_workers`]). The cut points and the schedule change nothing in the output (see
//! `kernels::split`).

use std::sync::{Mutex, OnceLock};

use rayon::prelude::*;

use crate::kernels::scan::SCAN_BLOCK;
use crate::kernels::split::{cut_pieces, piece_starts, Sequential, Splitter};
use crate::kernels::Spec;

/// Runs `spec` on the CPU with `workers` workers: the calling thread alone for one worker (no
/// pool hand-off for the many small calls), rayon pieces otherwise.
pub fn run(spec: &Spec, workers: usize, inputs: &[&[f64]], outs: &mut [&mut [f64]]) {
    if workers <= 1 {
        spec.run(&Sequential, inputs, outs);
    } else {
        spec.run(&RayonSplit::new(workers), inputs, outs);
    }
}

/// Runs `f` on a rayon pool whose threads exist in this process.
///
/// After a `fork` (Python's `multiprocessing` "fork" context), the child inherits rayon's global
/// pool without its threads, and a job sent there waits forever. So the pid that first used the
/// global pool is kept; in any other process (a forked child, or its children) the work runs on a
/// pool built for that process instead (the inherited one is never touched, not even dropped).
/// One `getpid` per parallel call is the whole cost in the parent.
pub fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    static OWNER: OnceLock<u32> = OnceLock::new();
    static CHILD: Mutex<Option<(u32, &'static rayon::ThreadPool)>> = Mutex::new(None);
    let pid = std::process::id();
    if *OWNER.get_or_init(|| pid) == pid {
        return f();
    }
    let pool = {
        let mut child = CHILD.lock().unwrap_or_else(|e| e.into_inner());
        match *child {
            Some((owner, pool)) if owner == pid => Some(pool),
            _ => {
                let built = rayon::ThreadPoolBuilder::new()
                    .thread_name(|i| format!("threadx-{i}"))
                    .build()
                    .ok()
                    .map(|p| &*Box::leak(Box::new(p)));
                *child = built.map(|p| (pid, p));
                built
            }
        }
    };
    match pool {
        Some(pool) => pool.install(f),
        None => {
            // No threads to be had: the work still runs, on one rayon worker (this thread).
            let one = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .use_current_thread()
                .build();
            match one {
                Ok(pool) => pool.install(f),
                Err(_) => f(),
            }
        }
    }
}

/// Cuts the rows into one piece per worker and runs the pieces on rayon's pool.
pub struct RayonSplit {
    pieces: usize,
}

impl RayonSplit {
    pub fn new(pieces: usize) -> Self {
        RayonSplit {
            pieces: pieces.max(1),
        }
    }

    /// Piece lengths for rows `first_row .. first_row + len`: about `len / pieces` each, every
    /// interior cut on a multiple of [`SCAN_BLOCK`] in global row numbers.
    pub fn lengths(&self, first_row: usize, len: usize) -> Vec<usize> {
        let target = len.div_ceil(self.pieces).max(1);
        let end = first_row + len;
        let mut lens = Vec::with_capacity(self.pieces);
        let mut at = first_row;
        while at < end {
            let mut cut = (at + target).div_ceil(SCAN_BLOCK) * SCAN_BLOCK;
            if lens.len() + 1 == self.pieces || cut >= end {
                cut = end;
            }
            lens.push(cut - at);
            at = cut;
        }
        lens
    }
}

impl Splitter for RayonSplit {
    fn for_each_piece<const K: usize, F>(&self, first_row: usize, outs: [&mut [f64]; K], fill: F)
    where
        F: Fn(usize, [&mut [f64]; K]) + Sync + Send,
    {
        let lens = self.lengths(first_row, outs[0].len());
        let starts = piece_starts(first_row, &lens);
        let pieces: Vec<(usize, [&mut [f64]; K])> =
            starts.into_iter().zip(cut_pieces(outs, &lens)).collect();
        in_pool(|| {
            pieces
                .into_par_iter()
                .for_each(|(lo, piece)| fill(lo, piece))
        });
    }

    fn map_indexed<T: Send, F>(&self, n: usize, f: F) -> Vec<T>
    where
        F: Fn(usize) -> T + Sync + Send,
    {
        let min_len = n.div_ceil(self.pieces).max(1);
        in_pool(|| {
            (0..n)
                .into_par_iter()
                .with_min_len(min_len)
                .map(f)
                .collect()
        })
    }

    fn max_pieces(&self) -> usize {
        self.pieces
    }

    fn last_piece_start(&self, first_row: usize, len: usize) -> usize {
        let lens = self.lengths(first_row, len);
        first_row + len - lens.last().copied().unwrap_or(0)
    }

    fn workers(&self) -> usize {
        self.pieces
    }

    /// One rayon job per worker (`with_max_len(1)`: never two workers in one job, so each can
    /// run on its own thread); a job that starts after the work is gone returns at once.
    fn run_workers<F>(&self, worker: F)
    where
        F: Fn() + Sync + Send,
    {
        in_pool(|| {
            (0..self.pieces)
                .into_par_iter()
                .with_max_len(1)
                .for_each(|_| worker())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{assert_bits_eq, random_cuts, series_zoo, special_sets, Lcg};

    #[test]
    fn lengths_cover_rows_on_the_grid() {
        for (first, len, k) in [(0, 10_000, 3), (19, 100_000, 16), (5, 10, 4), (0, 0, 2)] {
            let lens = RayonSplit::new(k).lengths(first, len);
            assert_eq!(lens.iter().sum::<usize>(), len);
            assert!(lens.len() <= k);
            let mut at = first;
            for l in &lens[..lens.len().saturating_sub(1)] {
                at += l;
                assert_eq!(at % SCAN_BLOCK, 0);
            }
        }
    }

    /// Every row from the lookback on is written by the kernel (the plugin hands kernels output
    /// buffers whose rows are only initialised up to the lookback).
    #[test]
    fn kernels_write_every_row() {
        const SENTINEL: u64 = 0x7ff8_dead_beef_0001;
        let zoo = series_zoo(5_000, 3);
        let c = &zoo[0];
        let h: Vec<f64> = c.iter().map(|v| v + 0.5).collect();
        let l: Vec<f64> = c.iter().map(|v| v - 0.5).collect();
        for spec in all_specs() {
            for n in [0, 1, 2, spec.lookback(), spec.lookback() + 1, 1500, 5_000] {
                let inputs: Vec<&[f64]> = match spec.inputs().len() {
                    4 => vec![&c[..n], &l[..n], &h[..n], &l[..n]],
                    3 => vec![&c[..n], &h[..n], &l[..n]],
                    2 => vec![&c[..n], &h[..n]],
                    _ => vec![&c[..n]],
                };
                for workers in [1, 3] {
                    let mut outs = vec![vec![f64::from_bits(SENTINEL); n]; spec.outputs().len()];
                    let mut views: Vec<&mut [f64]> =
                        outs.iter_mut().map(|o| o.as_mut_slice()).collect();
                    spec.run(&RayonSplit::new(workers), &inputs, &mut views);
                    for out in &outs {
                        for (t, v) in out.iter().enumerate().skip(spec.lookback()) {
                            assert_ne!(
                                v.to_bits(),
                                SENTINEL,
                                "{} n={n} row {t} not written",
                                spec.name()
                            );
                        }
                    }
                }
            }
        }
    }

    /// Outputs large enough to be streamed (`kernels::stream_store`) hold the bits of a short
    /// run, whose outputs are stored through the cache: a row depends only on the rows before it.
    #[test]
    fn streamed_outputs_hold_the_cached_bits() {
        let (n, short) = (600_000, 40_000);
        assert!(
            crate::kernels::stream_store::streams(n)
                && !crate::kernels::stream_store::streams(short)
        );
        let c = &series_zoo(n, 1)[0];
        let h: Vec<f64> = c.iter().map(|v| v + 0.5).collect();
        let l: Vec<f64> = c.iter().map(|v| v - 0.5).collect();
        for spec in all_specs() {
            let inputs = |m: usize| -> Vec<&[f64]> {
                match spec.inputs().len() {
                    4 => vec![&c[..m], &l[..m], &h[..m], &l[..m]],
                    3 => vec![&c[..m], &h[..m], &l[..m]],
                    2 => vec![&c[..m], &h[..m]],
                    _ => vec![&c[..m]],
                }
            };
            let run = |m: usize, workers: usize| {
                let mut outs = vec![vec![0.0; m]; spec.outputs().len()];
                let mut views: Vec<&mut [f64]> =
                    outs.iter_mut().map(|o| o.as_mut_slice()).collect();
                super::run(&spec, workers, &inputs(m), &mut views);
                outs
            };
            let want = run(short, 1);
            for workers in [1, 2] {
                for (j, out) in run(n, workers).iter().enumerate() {
                    assert_bits_eq(&out[..short], &want[j], spec.name());
                }
            }
        }
    }

    fn all_specs() -> Vec<Spec> {
        vec![
            Spec::sma(20).unwrap(),
            Spec::ema(30).unwrap(),
            Spec::wma(10).unwrap(),
            Spec::rolling_std(5, 1).unwrap(),
            Spec::zscore(20).unwrap(),
            Spec::bollinger(20, 2.0).unwrap(),
            Spec::rsi(14).unwrap(),
            Spec::roc(10).unwrap(),
            Spec::macd(12, 26, 9).unwrap(),
            Spec::atr(14).unwrap(),
            Spec::natr(14).unwrap(),
            Spec::stoch(5, 3, 3).unwrap(),
            Spec::Obv,
        ]
        .into_iter()
        .chain(
            [
                "avgprice", "medprice", "typprice", "wclprice", "trange", "add", "sub", "mult",
                "div", "accbands", "kc", "ha", "adr", "cvi", "massi", "rvi", "acos", "asin",
                "atan", "ceil", "cos", "cosh", "exp", "floor", "ln", "log10", "sin", "sinh",
                "sqrt", "tan", "tanh",
            ]
            .map(|name| crate::kernels::registry::build_named(name, []).unwrap()),
        )
        .chain(
            [
                "beta",
                "correl",
                "linearreg",
                "linearreg_angle",
                "linearreg_intercept",
                "linearreg_slope",
                "tsf",
                "rolling_var",
                "avgdev",
                "percentile",
                "percentrank",
            ]
            .map(|name| crate::kernels::registry::build_named(name, []).unwrap()),
        )
        .chain(
            [
                "sum",
                "max",
                "min",
                "maxindex",
                "minindex",
                "minmax",
                "minmaxindex",
                "midpoint",
                "midprice",
                "donchian",
            ]
            .map(|name| crate::kernels::registry::build_named(name, [("period", 9.0)]).unwrap()),
        )
        .chain([crate::kernels::registry::build_named("cumsum", []).unwrap()])
        .chain(
            [
                ("dema", vec![("period", 20.0)]),
                ("tema", vec![("period", 9.0)]),
                ("trima", vec![("period", 30.0)]),
                ("t3", vec![("period", 5.0), ("vfactor", 0.7)]),
                ("kama", vec![("period", 10.0)]),
                ("rma", vec![("period", 14.0)]),
                ("zlema", vec![("period", 30.0)]),
                ("hma", vec![("period", 20.0)]),
                ("vwma", vec![("period", 20.0)]),
                ("ma", vec![("period", 12.0), ("matype", 6.0)]),
                (
                    "mavp",
                    vec![("min_period", 2.0), ("max_period", 12.0), ("matype", 1.0)],
                ),
                ("bollinger", vec![("std_dev_down", 1.0), ("matype", 3.0)]),
            ]
            .map(|(name, params)| crate::kernels::registry::build_named(name, params).unwrap()),
        )
        .collect()
    }

    /// Every indicator, 1..=16 rayon workers, identical bits to the single-piece run.
    #[test]
    fn every_indicator_is_identical_for_any_worker_count() {
        let mut rng = Lcg(99);
        let zoo = series_zoo(30_000, 17);
        let c = &zoo[0];
        let h: Vec<f64> = c.iter().map(|v| v + rng.uniform()).collect();
        let l: Vec<f64> = c.iter().map(|v| v - rng.uniform()).collect();
        let vol: Vec<f64> = (0..c.len()).map(|_| rng.below(10_000) as f64).collect();
        for spec in all_specs() {
            let inputs: Vec<&[f64]> = match spec.inputs().len() {
                4 => vec![c, &l, &h, &l],
                3 => vec![c, &h, &l],
                2 => vec![c, &vol],
                _ => vec![c],
            };
            let run = |workers: usize| {
                let k = spec.outputs().len();
                let mut outs = vec![vec![0.0; c.len()]; k];
                let mut views: Vec<&mut [f64]> =
                    outs.iter_mut().map(|o| o.as_mut_slice()).collect();
                if workers == 0 {
                    spec.run(&Sequential, &inputs, &mut views);
                } else {
                    spec.run(&RayonSplit::new(workers), &inputs, &mut views);
                }
                outs
            };
            let whole = run(0);
            for workers in 1..=16 {
                for (j, out) in run(workers).iter().enumerate() {
                    assert_bits_eq(out, &whole[j], spec.name());
                }
            }
        }
    }

    /// Every indicator of the catalog (at its defaults and at the parameters of `all_specs`) on
    /// the data sets of `special_sets` (NaN of both signs and with a payload, ±inf, ±1e308 and
    /// zeros, at the first rows, around scan blocks and chained units, and at random rows): one
    /// worker (the production path, `Sequential`), 2 and 7 workers, random cuts and a device set
    /// give identical bits, NaN signs and payloads included, and every NaN written is the
    /// canonical quiet NaN (`f64::NAN`): IEEE leaves the sign and payload of a NaN result
    /// unspecified, so the spec fixes them (docs/architecture.md, "Non-finite values").
    #[test]
    fn every_indicator_is_identical_on_non_finite_data() {
        use crate::exec::devset::{DeviceSetSplit, Member};
        use crate::kernels::registry::{build, INDICATORS};
        use crate::kernels::split::CutAt;
        let n = 30_000;
        let sets = special_sets(n, 23);
        let mut rng = Lcg(29);
        let specs: Vec<Spec> = all_specs()
            .into_iter()
            .chain(INDICATORS.iter().map(|ind| build(ind, &[]).unwrap()))
            .collect();
        let device_set = DeviceSetSplit::new(
            vec![Member::Cpu { workers: 2 }, Member::Simulated { speed: 1.0 }],
            &[0.6, 0.4],
        );
        let mut failures = Vec::new();
        for spec in &specs {
            for (set, [o, h, l, c, v]) in &sets {
                let inputs: Vec<&[f64]> = spec
                    .inputs()
                    .iter()
                    .map(|name| match *name {
                        "open" => o.as_slice(),
                        "high" => h.as_slice(),
                        "low" => l.as_slice(),
                        "volume" | "real1" | "periods" => v.as_slice(),
                        _ => c.as_slice(),
                    })
                    .collect();
                let run_on = |how: &dyn Fn(&mut [&mut [f64]])| {
                    let mut outs = vec![vec![0.0; n]; spec.outputs().len()];
                    let mut views: Vec<&mut [f64]> =
                        outs.iter_mut().map(|o| o.as_mut_slice()).collect();
                    how(&mut views);
                    outs
                };
                let one = run_on(&|outs| super::run(spec, 1, &inputs, outs));
                let cuts = CutAt(random_cuts(&mut rng, n, 12));
                let others = [
                    (
                        "2 workers",
                        run_on(&|outs| super::run(spec, 2, &inputs, outs)),
                    ),
                    (
                        "7 workers",
                        run_on(&|outs| super::run(spec, 7, &inputs, outs)),
                    ),
                    ("cuts", run_on(&|outs| spec.run(&cuts, &inputs, outs))),
                    (
                        "device set",
                        run_on(&|outs| spec.run(&device_set, &inputs, outs)),
                    ),
                ];
                let lb = spec.lookback().min(n);
                for (j, out) in one.iter().enumerate() {
                    if let Some(t) =
                        (lb..n).find(|&t| out[t].is_nan() && out[t].to_bits() != f64::NAN.to_bits())
                    {
                        failures.push(format!(
                            "{} {set} out{j}: row {t} holds the NaN {:016x}, not the canonical one",
                            spec.name(),
                            out[t].to_bits()
                        ));
                    }
                    for (what, got) in &others {
                        if let Some(t) = (lb..n).find(|&t| got[j][t].to_bits() != out[t].to_bits())
                        {
                            failures.push(format!(
                                "{} {set} out{j} {what}: row {t}: {:016x} vs one worker {:016x}",
                                spec.name(),
                                got[j][t].to_bits(),
                                out[t].to_bits()
                            ));
                        }
                    }
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}
