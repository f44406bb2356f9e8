//! The `.cu` kernels compiled for the host, run through the GPU pipelines, against the Rust
//! kernels: identical bits on every row from the lookback on, for every indicator, on awkward
//! series (offsets, tiny prices, flat runs, NaN of both signs and with a payload, ±inf) of lengths
//! around block boundaries, whole and cut into small pieces. NaN signs and payloads included: both
//! sides write every NaN as the canonical one (`kernels::canon`, `tx_canon`).

use super::error::GpuError;
use super::host::HostBackend;
use super::pipeline::{run, run_multi, share_ranges};
use crate::kernels::split::Sequential;
use crate::kernels::testing::{series_zoo, Lcg};
use crate::kernels::Spec;

fn specs() -> Vec<Spec> {
    let mut v = Vec::new();
    for p in [1, 2, 3, 7, 9, 20, 100] {
        v.extend(Spec::sma(p).ok());
        v.extend(Spec::wma(p).ok());
        v.extend(Spec::roc(p).ok());
        v.extend(Spec::ema(p).ok());
        v.extend(Spec::rsi(p).ok());
        v.extend(Spec::atr(p).ok());
        v.extend(Spec::natr(p).ok());
        v.extend(Spec::zscore(p).ok());
        v.extend(Spec::bollinger(p, 2.0).ok());
        v.extend(Spec::rolling_std(p, 0).ok());
        v.extend(Spec::rolling_var(p).ok());
    }
    v.extend(Spec::rolling_std(20, 1).ok());
    v.extend(Spec::bollinger(5, 1.5).ok());
    for (f, s, g) in [(12, 26, 9), (2, 3, 2), (5, 5, 1), (3, 10, 16), (1, 2, 1)] {
        v.extend(Spec::macd(f, s, g).ok());
    }
    for (f, s, d) in [(5, 3, 3), (14, 3, 3), (1, 1, 1), (7, 4, 2)] {
        v.extend(Spec::stoch(f, s, d).ok());
    }
    v.push(Spec::Obv);
    for name in [
        "avgprice", "medprice", "typprice", "wclprice", "trange", "add", "sub", "mult", "div",
        "ceil", "floor", "sqrt",
    ] {
        v.extend(crate::kernels::registry::build_named(name, []).ok());
    }
    for p in [1, 2, 3, 7, 30, 100] {
        v.extend(crate::kernels::registry::build_named("correl", [("period", p as f64)]).ok());
    }
    for p in [2, 3, 7, 20, 100, 1500] {
        v.extend(crate::kernels::registry::build_named("sum", [("period", p as f64)]).ok());
    }
    v.extend(crate::kernels::registry::build_named("cumsum", []).ok());
    // Windowed compositions: extrema (and their midpoints), AVGDEV, the LINEARREG family and
    // BETA on tx_comoments, TRIMA, VWMA and HMA (period 1: the input itself).
    for p in [1, 2, 3, 4, 7, 9, 20, 100] {
        for name in [
            "max",
            "min",
            "minmax",
            "midpoint",
            "midprice",
            "donchian",
            "avgdev",
            "linearreg",
            "linearreg_slope",
            "linearreg_intercept",
            "linearreg_angle",
            "tsf",
            "beta",
            "trima",
            "vwma",
            "hma",
        ] {
            v.extend(crate::kernels::registry::build_named(name, [("period", p as f64)]).ok());
        }
    }
    v.extend(Spec::ema(1025).ok());
    v.extend(Spec::sma(1500).ok());
    v.extend(moving_average_specs());
    for (p, a, m) in [
        (20.0, 10.0, 2.0),
        (2.0, 1.0, 1.5),
        (2.0, 5.0, 0.0),
        (9.0, 2.0, 3.0),
    ] {
        let params = [("period", p), ("atr_period", a), ("multiplier", m)];
        v.push(crate::kernels::registry::build_named("kc", params).unwrap());
    }
    v
}

/// The scan moving averages of ma.rs (period 1 is the identity, 2 gives ZLEMA a lag of 0), `ma` of
/// every matype (TRIMA and HMA on their windowed compositions), and Bollinger bands around them
/// (unequal widths too).
fn moving_average_specs() -> Vec<Spec> {
    use crate::kernels::registry::build_named;
    let mut v = Vec::new();
    for p in [1.0, 2.0, 3.0, 4.0, 9.0, 30.0, 200.0] {
        for name in ["rma", "dema", "tema", "zlema", "kama"] {
            v.push(build_named(name, [("period", p)]).unwrap());
        }
    }
    // Drives whose reach back (ZLEMA's lag, KAMA's window) exceeds a scan block.
    v.push(build_named("kama", [("period", 1500.0)]).unwrap());
    // Either side of KAMA's switch from segment sums to window sums (TX_KAMA_SEGMENT_MAX).
    v.push(build_named("kama", [("period", 256.0)]).unwrap());
    v.push(build_named("kama", [("period", 257.0)]).unwrap());
    v.push(build_named("zlema", [("period", 2601.0)]).unwrap());
    for (p, f) in [
        (1.0, 0.7),
        (2.0, 0.7),
        (3.0, 0.0),
        (5.0, 0.7),
        (7.0, 1.0),
        (40.0, 0.3),
    ] {
        v.push(build_named("t3", [("period", p), ("vfactor", f)]).unwrap());
    }
    for matype in [
        0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 9.0, 10.0, 12.0, 13.0,
    ] {
        for p in [1.0, 2.0, 5.0, 30.0] {
            v.push(build_named("ma", [("period", p), ("matype", matype)]).unwrap());
        }
        for (p, down) in [(2.0, 1.0), (20.0, 2.0), (33.0, 0.5)] {
            v.push(
                build_named(
                    "bollinger",
                    [
                        ("period", p),
                        ("std_dev", 2.0),
                        ("std_dev_down", down),
                        ("matype", matype),
                    ],
                )
                .unwrap(),
            );
        }
    }
    v
}

/// NaN (canonical, negative, with a payload), infinities and zero, for [`series`].
const HOLES: [f64; 6] = [
    f64::NAN,
    f64::from_bits(0xfff8_0000_0000_0000),
    f64::from_bits(0x7ff8_0000_0000_beef),
    f64::INFINITY,
    f64::NEG_INFINITY,
    0.0,
];

/// The zoo plus NaN and infinities sprinkled in, and a volume-like positive series.
fn series(n: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = Lcg(seed);
    let mut all = series_zoo(n, seed);
    let mut holes = all[0].clone();
    for _ in 0..(n / 200).max(1) {
        if n > 0 {
            let i = rng.below(n);
            holes[i] = HOLES[rng.below(HOLES.len())];
        }
    }
    all.push(holes);
    all.push((0..n).map(|_| 1000.0 * rng.uniform()).collect());
    all
}

/// Inputs for `spec` from one series: (close, high, low) and (close, volume) shapes as needed.
fn inputs_for(spec: &Spec, x: &[f64], other: &[f64]) -> Vec<Vec<f64>> {
    match spec.inputs().len() {
        1 => vec![x.to_vec()],
        2 => vec![x.to_vec(), other.to_vec()],
        _ => {
            let spread: Vec<f64> = other.iter().map(|v| v.abs() * 1e-3).collect();
            let high = x.iter().zip(&spread).map(|(c, s)| c + s).collect();
            let low = x.iter().zip(&spread).map(|(c, s)| c - s * 0.5).collect();
            let mut v = vec![x.to_vec(), high, low];
            if spec.inputs().len() == 4 {
                // (close, open, high, low): an open between low and high.
                let open = x.iter().zip(&spread).map(|(c, s)| c - s * 0.2).collect();
                v.insert(1, open);
            }
            v
        }
    }
}

fn compare(spec: &Spec, inputs: &[Vec<f64>], piece_rows: usize, what: &str) {
    let n = inputs[0].len();
    let ins: Vec<&[f64]> = inputs.iter().map(|v| v.as_slice()).collect();
    let k = spec.outputs().len();
    let mut want = vec![vec![0.0; n]; k];
    let mut got = vec![vec![0.0; n]; k];
    {
        let mut o: Vec<&mut [f64]> = want.iter_mut().map(|v| v.as_mut_slice()).collect();
        spec.run(&Sequential, &ins, &mut o);
    }
    {
        let mut o: Vec<&mut [f64]> = got.iter_mut().map(|v| v.as_mut_slice()).collect();
        run(&HostBackend::new(), spec, &ins, &mut o, piece_rows).unwrap();
        spec.finish(&mut o);
    }
    let lb = spec.lookback();
    for j in 0..k {
        for t in lb..n {
            let (g, w) = (got[j][t], want[j][t]);
            assert!(
                g.to_bits() == w.to_bits(),
                "{spec:?} {what} n={n} pieces of {piece_rows}: output {j} row {t}: host-built \
                 kernel {g:e} vs Rust {w:e}"
            );
        }
    }
}

#[test]
fn every_kernel_matches_the_rust_kernels_bit_for_bit() {
    for n in [1, 2, 5, 27, 1023, 1024, 1025, 2049, 3100] {
        for spec in specs() {
            for (si, x) in series(n, n as u64).iter().enumerate() {
                let other = &series(n, 99)[6];
                let inputs = inputs_for(&spec, x, other);
                compare(&spec, &inputs, usize::MAX, &format!("series {si}"));
            }
        }
    }
}

#[test]
fn pieces_give_the_same_bits_as_one_piece() {
    let mut rng = Lcg(7);
    for spec in specs() {
        let n = 5000 + rng.below(3000);
        let all = series(n, 5);
        for piece_rows in [1, 333, 1024, 1500, 2048 + 17] {
            let x = &all[rng.below(all.len())];
            let inputs = inputs_for(&spec, x, &all[6]);
            compare(&spec, &inputs, piece_rows, "pieces");
        }
    }
}

#[test]
fn every_launched_kernel_exists_in_the_host_build() {
    use super::args::{Kernel, RowArgs};
    use super::pipeline::Backend;
    let be = HostBackend::new();
    for k in Kernel::ALL {
        // Zero threads: each kernel returns at once, but an unknown name is an error.
        let args = RowArgs::default();
        be.launch(k, 0, &args).unwrap();
    }
}

fn run_on_devices(
    spec: &Spec,
    ins: &[&[f64]],
    shares: &[f64],
    fail: Option<(usize, Option<usize>)>,
) -> Result<Vec<Vec<f64>>, GpuError> {
    let n = ins[0].len();
    let mut got = vec![vec![f64::from_bits(0x7ff8_dead_0000_0001); n]; spec.outputs().len()];
    let mut o: Vec<&mut [f64]> = got.iter_mut().map(|v| v.as_mut_slice()).collect();
    let with_backend = |d: usize,
                        body: &mut dyn FnMut(&HostBackend) -> Result<(), GpuError>|
     -> Result<(), GpuError> {
        let mut be = HostBackend::new();
        match fail {
            Some((dev, None)) if dev == d => {
                return Err(GpuError::Unavailable("device did not open".into()))
            }
            Some((dev, Some(after))) if dev == d => be.fail_from_launch = Some(after),
            _ => {}
        }
        body(&be)
    };
    run_multi(
        &with_backend,
        spec,
        ins,
        &mut o,
        shares,
        &vec![usize::MAX; shares.len()],
        None,
    )?;
    spec.finish(&mut o);
    Ok(got)
}

/// Several host-built "devices" (each on its own thread, as GPUs are) with random shares, zero
/// shares included: the single-device bits, for every indicator.
#[test]
fn multi_device_runs_fuse_to_the_single_device_bits() {
    let mut rng = Lcg(21);
    for spec in specs() {
        let n = [3_000, 7_000, 12_345][rng.below(3)];
        let all = series(n, 9);
        let inputs = inputs_for(&spec, &all[rng.below(all.len())], &all[6]);
        let ins: Vec<&[f64]> = inputs.iter().map(|v| v.as_slice()).collect();
        let mut want = vec![vec![0.0; n]; spec.outputs().len()];
        {
            let mut o: Vec<&mut [f64]> = want.iter_mut().map(|v| v.as_mut_slice()).collect();
            run(&HostBackend::new(), &spec, &ins, &mut o, usize::MAX).unwrap();
            spec.finish(&mut o);
        }
        for _ in 0..3 {
            let k = 1 + rng.below(4);
            let shares: Vec<f64> = (0..k)
                .map(|_| rng.below(3) as f64 * rng.uniform())
                .collect();
            let got = run_on_devices(&spec, &ins, &shares, None).unwrap();
            for j in 0..want.len() {
                for t in spec.lookback()..n {
                    let (g, w) = (got[j][t], want[j][t]);
                    assert!(
                        g.to_bits() == w.to_bits(),
                        "{spec:?} shares {shares:?}: output {j} row {t}: {g:e} vs {w:e}"
                    );
                }
            }
        }
    }
}

/// A device that fails (at open, or at any launch) makes the whole run an error, and no other
/// device is left waiting at the carry exchange.
#[test]
fn a_failing_device_fails_the_run_without_deadlock() {
    let x = &series(9_000, 3)[0];
    // Launches per device: sma 1; ema drive, local, finish; macd twice that.
    for (spec, launches) in [
        (Spec::sma(5).unwrap(), 1),
        (Spec::ema(10).unwrap(), 3),
        (Spec::macd(12, 26, 9).unwrap(), 6),
    ] {
        for fail in [
            (0, None),
            (2, None),
            (1, Some(0)),
            (2, Some(launches - 1)),
            (0, Some(1)),
        ] {
            if fail.1.is_some_and(|a| a >= launches) {
                continue;
            }
            let r = run_on_devices(&spec, &[x], &[1.0, 1.0, 1.0], Some(fail));
            assert!(r.is_err(), "{spec:?} {fail:?}");
        }
    }
}

#[test]
fn share_ranges_cover_the_rows_on_the_grid() {
    let r = share_ranges(5, 10_005, &[1.0, 0.0, 3.0], 1024);
    assert_eq!(r.first().unwrap().0, 5);
    assert_eq!(r.last().unwrap().1, 10_005);
    assert!(r.windows(2).all(|w| w[0].1 == w[1].0));
    assert_eq!(r[1].0, r[1].1, "a zero share gets no rows");
    assert_eq!(r[0].1 % 1024, 0);
}

/// CPU and simulated members on a prefix of the rows and host-built "GPUs" on the rest, through
/// the production orchestration (`exec::devset::mixed`): the single-device bits for every indicator.
#[test]
fn host_members_and_gpus_fuse_to_the_single_device_bits() {
    use crate::exec::devset::{DeviceSetSplit, Member};
    use crate::kernels::scan::SCAN_BLOCK;
    let mut rng = Lcg(31);
    for spec in specs() {
        let n = [4_000, 9_000][rng.below(2)];
        let all = series(n, 13);
        let inputs = inputs_for(&spec, &all[rng.below(all.len())], &all[6]);
        let ins: Vec<&[f64]> = inputs.iter().map(|v| v.as_slice()).collect();
        let mut want = vec![vec![0.0; n]; spec.outputs().len()];
        {
            let mut o: Vec<&mut [f64]> = want.iter_mut().map(|v| v.as_mut_slice()).collect();
            spec.run(&Sequential, &ins, &mut o);
        }
        let min_prefix = (spec.lookback() + 1).div_ceil(SCAN_BLOCK) * SCAN_BLOCK;
        for _ in 0..2 {
            let split_at = (min_prefix + rng.below(4) * SCAN_BLOCK).min(n);
            let host = DeviceSetSplit::new(
                vec![Member::Cpu { workers: 2 }, Member::Simulated { speed: 1.0 }],
                &[1.0, rng.uniform()],
            );
            let shares: Vec<f64> = (0..1 + rng.below(3)).map(|_| 0.1 + rng.uniform()).collect();
            let mut got = vec![vec![0.0; n]; spec.outputs().len()];
            let mut o: Vec<&mut [f64]> = got.iter_mut().map(|v| v.as_mut_slice()).collect();
            super::host::run_mixed_on_host_gpus(&spec, &host, split_at, &ins, &mut o, &shares)
                .unwrap();
            for j in 0..want.len() {
                for t in spec.lookback()..n {
                    let (g, w) = (got[j][t], want[j][t]);
                    assert!(
                        g.to_bits() == w.to_bits(),
                        "{spec:?} prefix {split_at} shares {shares:?}: output {j} row {t}: \
                         {g:e} vs {w:e}"
                    );
                }
            }
        }
    }
}

/// RSI over a flat run long enough for both averages to underflow (the value holds), and over a
/// flat start (0): whole, in pieces and across devices, the Rust kernel's bits.
#[test]
fn rsi_holds_give_the_same_bits_on_host_built_kernels() {
    let mut x = vec![10.0; 14_000];
    x[10] = 11.0;
    let flat_start: Vec<f64> = (0..6000)
        .map(|t| if t < 3000 { 2.0 } else { 2.5 })
        .collect();
    for spec in [Spec::rsi(14).unwrap(), Spec::rsi(2).unwrap()] {
        for series in [&x, &flat_start] {
            let inputs = vec![series.clone()];
            for piece_rows in [usize::MAX, 1500, 4096] {
                compare(&spec, &inputs, piece_rows, "flat runs");
            }
            let ins = [series.as_slice()];
            let mut want = vec![0.0; series.len()];
            spec.run(&Sequential, &ins, &mut [&mut want]);
            let got = run_on_devices(&spec, &ins, &[1.0, 0.5, 2.0], None).unwrap();
            for t in spec.lookback()..series.len() {
                assert_eq!(got[0][t].to_bits(), want[t].to_bits(), "{spec:?} row {t}");
            }
        }
    }
}

/// Every indicator declared with a CUDA twin is among the specs the tests above run (so a twin
/// cannot be declared without its bits being checked here).
#[test]
fn every_cuda_indicator_is_checked_here() {
    let checked: std::collections::HashSet<&str> = specs().iter().map(|s| s.name()).collect();
    for ind in crate::kernels::registry::INDICATORS {
        if ind.devices.cuda {
            assert!(
                checked.contains(ind.name),
                "{} has no host-built check",
                ind.name
            );
        }
    }
}

/// A batch on one device (`by=` segments of mixed lengths, the inputs uploaded once and shared
/// through device pointer offsets): every segment has the bits of the Rust kernels on that
/// segment alone, whole and in pieces, for every indicator; a sweep of two parameter sets too.
#[test]
fn a_batch_of_segments_has_the_bits_of_each_segment_alone() {
    use super::batch::run_batch;
    // Empty, shorter than most warm-ups, one row, past a scan block, past several pieces.
    let bounds = [0, 0, 3, 4, 1030, 1031, 1050, 4200, 4201, 4300];
    let n = *bounds.last().unwrap();
    let all = series(n, 11);
    let check = |specs: &[Spec], inputs: &[Vec<f64>], piece_rows: usize| {
        let ins: Vec<&[f64]> = inputs.iter().map(|v| v.as_slice()).collect();
        let mut got: Vec<Vec<Vec<f64>>> = specs
            .iter()
            .map(|s| vec![vec![f64::NAN; n]; s.outputs().len()])
            .collect();
        {
            let mut outs: Vec<Vec<&mut [f64]>> = got
                .iter_mut()
                .map(|c| c.iter_mut().map(|v| v.as_mut_slice()).collect())
                .collect();
            run_batch(&HostBackend::new(), specs, &ins, &bounds, &mut outs, |_| {
                Ok(piece_rows)
            })
            .unwrap();
        }
        for (spec, call) in specs.iter().zip(&got) {
            for w in bounds.windows(2) {
                let seg: Vec<&[f64]> = ins.iter().map(|x| &x[w[0]..w[1]]).collect();
                let mut alone = vec![vec![0.0; w[1] - w[0]]; call.len()];
                {
                    let mut o: Vec<&mut [f64]> =
                        alone.iter_mut().map(|v| v.as_mut_slice()).collect();
                    spec.run(&Sequential, &seg, &mut o);
                }
                for (j, (g, a)) in call.iter().zip(&alone).enumerate() {
                    for t in spec.lookback().min(a.len())..a.len() {
                        let (g, a) = (g[w[0] + t], a[t]);
                        assert!(
                            g.to_bits() == a.to_bits(),
                            "{spec:?} segment {w:?} pieces of {piece_rows}: output {j} row {t}: \
                             batch {g:e} vs alone {a:e}"
                        );
                    }
                }
            }
        }
    };
    for spec in specs() {
        let inputs = inputs_for(&spec, &all[1], &all[6]);
        for piece_rows in [usize::MAX, 333] {
            check(&[spec], &inputs, piece_rows);
        }
    }
    let sweep = [
        Spec::bollinger(20, 2.0).unwrap(),
        Spec::bollinger(5, 1.5).unwrap(),
    ];
    for piece_rows in [usize::MAX, 1024] {
        check(&sweep, &inputs_for(&sweep[0], &all[0], &all[6]), piece_rows);
    }
}

/// Random `by=` bounds: empty segments, one-row and two-row ones, random cuts (many shorter than
/// the lookbacks), and a long last segment past two scan blocks.
fn random_bounds(rng: &mut Lcg) -> Vec<usize> {
    use crate::kernels::testing::random_cuts;
    let long = 2100 + rng.below(600);
    let n = long + 1500 + rng.below(1000);
    let mut b = vec![0, 0, 1, 1, 3];
    b.extend(random_cuts(rng, n - long, 12).into_iter().map(|c| c.max(3)));
    b.extend([n - long, n - long, n]);
    b.sort_unstable();
    b
}

/// Runs the calls `specs` (one inputs set) as one batch over `bounds`, all rows in one piece, and
/// checks every segment of every call against the Rust kernels on that segment alone, bit for bit
/// (NaN included); returns the backend's launch count.
fn check_batch_in_one_piece(specs: &[Spec], ins: &[&[f64]], bounds: &[usize]) -> usize {
    use super::batch::run_batch;
    use crate::kernels::testing::assert_bits_eq;
    let n = *bounds.last().unwrap();
    let mut got: Vec<Vec<Vec<f64>>> = specs
        .iter()
        .map(|s| vec![vec![f64::NAN; n]; s.outputs().len()])
        .collect();
    let be = HostBackend::new();
    {
        let mut outs: Vec<Vec<&mut [f64]>> = got
            .iter_mut()
            .map(|c| c.iter_mut().map(|v| v.as_mut_slice()).collect())
            .collect();
        run_batch(&be, specs, ins, bounds, &mut outs, |_| Ok(usize::MAX)).unwrap();
    }
    for (spec, call) in specs.iter().zip(&got) {
        for w in bounds.windows(2) {
            let seg: Vec<&[f64]> = ins.iter().map(|x| &x[w[0]..w[1]]).collect();
            let mut alone = vec![vec![0.0; w[1] - w[0]]; call.len()];
            {
                let mut o: Vec<&mut [f64]> = alone.iter_mut().map(|v| v.as_mut_slice()).collect();
                spec.run(&Sequential, &seg, &mut o);
            }
            let from = spec.lookback().min(w[1] - w[0]);
            for (j, (g, a)) in call.iter().zip(&alone).enumerate() {
                assert_bits_eq(
                    &g[w[0] + from..w[1]],
                    &a[from..],
                    &format!("{spec:?} bounds {bounds:?} segment {w:?} output {j} from row {from}"),
                );
            }
        }
    }
    be.launches.get()
}

/// `run_batch` over random segment bounds, all rows in one piece (the path that runs every
/// segment in one launch per kernel): every segment has the bits of the Rust kernels on it alone,
/// NaN included, for every indicator with a CUDA twin, alone and in sweeps of several calls; and
/// every family launches no more kernels for the batch than for one series (one launch per
/// kernel for all segments).
#[test]
fn a_batch_over_random_bounds_has_the_bits_of_each_segment_alone() {
    use crate::kernels::registry::build_named;
    let mut rng = Lcg(2024);
    for round in 0..2 {
        let bounds = random_bounds(&mut rng);
        let n = *bounds.last().unwrap();
        let all = series(n, 40 + round);
        let volume = &all[all.len() - 1];
        for spec in specs() {
            let inputs = inputs_for(&spec, &all[rng.below(all.len() - 1)], volume);
            let ins: Vec<&[f64]> = inputs.iter().map(|v| v.as_slice()).collect();
            let launches = check_batch_in_one_piece(&[spec], &ins, &bounds);
            let one = HostBackend::new();
            let mut whole = vec![vec![0.0; n]; spec.outputs().len()];
            let mut o: Vec<&mut [f64]> = whole.iter_mut().map(|v| v.as_mut_slice()).collect();
            run(&one, &spec, &ins, &mut o, usize::MAX).unwrap();
            assert!(
                launches <= one.launches.get(),
                "{spec:?}: {launches} launches for {} segments, {} for one series",
                bounds.len() - 1,
                one.launches.get()
            );
        }
        // Sweeps: several calls of one batch share the resident inputs.
        let period = |name: &str, p: f64| build_named(name, [("period", p)]).unwrap();
        let closes = [
            Spec::ema(10).unwrap(),
            Spec::macd(12, 26, 9).unwrap(),
            Spec::sma(20).unwrap(),
            Spec::rsi(14).unwrap(),
            period("dema", 5.0),
            period("hma", 9.0),
            Spec::ema(3).unwrap(),
        ];
        let x = &all[rng.below(all.len() - 1)];
        let inputs = inputs_for(&closes[0], x, volume);
        let ins: Vec<&[f64]> = inputs.iter().map(|v| v.as_slice()).collect();
        check_batch_in_one_piece(&closes, &ins, &bounds);
        let ohlc = [
            Spec::atr(14).unwrap(),
            Spec::natr(5).unwrap(),
            Spec::stoch(14, 3, 3).unwrap(),
            Spec::atr(1).unwrap(),
        ];
        let inputs = inputs_for(&ohlc[0], x, volume);
        let ins: Vec<&[f64]> = inputs.iter().map(|v| v.as_slice()).collect();
        check_batch_in_one_piece(&ohlc, &ins, &bounds);
    }
}

/// When the rows fit in one piece, a batch launches each kernel once for all its segments: the
/// moving moments once, STOCH and HMA their five kernels, a scan three per stage (EMA one stage,
/// MACD and DEMA two), Bollinger bands around an EMA the EMA's three and the bands' one.
#[test]
fn a_batch_is_one_launch_per_kernel() {
    use super::batch::run_batch;
    let bounds = [0, 5, 6, 900, 2000];
    let x = series(2000, 3).swap_remove(0);
    for (spec, launches) in [
        (Spec::sma(20).unwrap(), 1),
        (Spec::bollinger(7, 2.0).unwrap(), 1),
        (Spec::rolling_std(9, 1).unwrap(), 1),
        (Spec::stoch(5, 3, 3).unwrap(), 5),
        (
            crate::kernels::registry::build_named("hma", [("period", 9.0)]).unwrap(),
            5,
        ),
    ] {
        let be = HostBackend::new();
        let inputs = inputs_for(&spec, &x, &x);
        let ins: Vec<&[f64]> = inputs.iter().map(|v| v.as_slice()).collect();
        let mut got = vec![vec![f64::NAN; 2000]; spec.outputs().len()];
        let mut outs = vec![got.iter_mut().map(|v| v.as_mut_slice()).collect()];
        run_batch(&be, &[spec], &ins, &bounds, &mut outs, |_| Ok(usize::MAX)).unwrap();
        assert_eq!(be.launches.get(), launches, "{spec:?}");
    }
}
