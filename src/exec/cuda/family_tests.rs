//! The kernels of `family.cu` compiled for the host (see [`host`](super::host)) against the Rust
//! kernels of `kernels::comoments`, `kernels::varscan`, `kernels::elementwise` and
//! `kernels::sequential`: identical bits on every row, whole and in pieces with their halos (NaN
//! equals NaN whatever its payload). Most tests launch the kernels directly; the state machine's
//! goes through `batch::run_machine_batch`.

use super::args::{
    CoMomentsArgs, ElementwiseArgs, Kernel, VarScanArgs, CO_CENTRED, CO_CORREL, CO_SUMS,
};
use super::host::{HostBackend, HostBuf};
use super::pipeline::{Backend, DeviceBuffer};
use crate::kernels::comoments::{comoments, correl, CoStat};
use crate::kernels::elementwise::{apply, Op};
use crate::kernels::scan::SCAN_BLOCK;
use crate::kernels::split::Sequential;
use crate::kernels::testing::{series_zoo, Lcg};
use crate::kernels::varscan::{chain_carries, run_varscan, write_y};

fn same_bits(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let same = g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan());
        assert!(same, "{what}: element {i}: {g:e} vs {w:e}");
    }
}

fn upload(be: &HostBackend, v: &[f64]) -> HostBuf {
    let mut buf = be.alloc(v.len().max(1)).unwrap();
    be.upload(&mut buf, v).unwrap();
    buf
}

fn download(be: &HostBackend, buf: &HostBuf, at: usize, len: usize) -> Vec<f64> {
    let mut v = vec![0.0; len];
    be.download(buf, at, &mut v).unwrap();
    v
}

/// The zoo plus NaN and infinities sprinkled in.
fn series(n: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = Lcg(seed);
    let mut all = series_zoo(n, seed);
    let mut holes = all[0].clone();
    for _ in 0..(n / 150).max(1) {
        holes[rng.below(n)] = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0][rng.below(4)];
    }
    all.push(holes);
    all
}

/// `[lo, hi)` pieces covering `[from, n)`: the whole range, then random cuts.
fn pieces(rng: &mut Lcg, from: usize, n: usize, random: bool) -> Vec<(usize, usize)> {
    if !random {
        return vec![(from, n)];
    }
    let mut cuts: Vec<usize> = (0..rng.below(8))
        .map(|_| from + rng.below(n - from + 1))
        .collect();
    cuts.extend([from, n]);
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2).map(|p| (p[0], p[1])).collect()
}

/// `tx_comoments` over rows `[lo, hi)` from inputs starting at the block that holds `lo - w + 1`.
fn host_comoments(
    x: &[f64],
    y: &[f64],
    w: usize,
    mode: i64,
    (lo, hi): (usize, usize),
) -> [Vec<f64>; 5] {
    let be = HostBackend::new();
    let base = (lo + 1 - w) / w * w;
    let len = hi - base;
    let (xb, yb) = (upload(&be, &x[base..hi]), upload(&be, &y[base..hi]));
    let bufs: Vec<HostBuf> = (0..10).map(|_| be.alloc(len).unwrap()).collect();
    let args = CoMomentsArgs {
        x: xb.addr(),
        y: yb.addr(),
        out0: bufs[0].addr(),
        out1: bufs[1].addr(),
        out2: bufs[2].addr(),
        out3: bufs[3].addr(),
        out4: bufs[4].addr(),
        s0: bufs[5].addr(),
        s1: bufs[6].addr(),
        s2: bufs[7].addr(),
        s3: bufs[8].addr(),
        s4: bufs[9].addr(),
        base: base as i64,
        lo: lo as i64,
        hi: hi as i64,
        origin: 0,
        w: w as i64,
        mode,
        inv_w: 1.0 / w as f64,
    };
    let threads = (hi - 1) / w - lo / w + 1;
    be.launch(Kernel::CoMoments, threads, &args).unwrap();
    std::array::from_fn(|j| download(&be, &bufs[j], lo - base, hi - lo))
}

#[test]
fn comoments_kernel_matches_rust() {
    let mut rng = Lcg(3);
    for n in [1, 2, 63, 1100, 2500] {
        let zoo = series(n, 7 + n as u64);
        for (i, x) in zoo.iter().enumerate() {
            let y = &zoo[(i + 1) % zoo.len()];
            for w in [1, 2, 3, 7, 20, 64, 1024] {
                if w > n {
                    continue;
                }
                let mut want = vec![vec![0.0; n]; 11];
                let stats = [
                    [
                        CoStat::Sx,
                        CoStat::Sy,
                        CoStat::Sxx,
                        CoStat::Syy,
                        CoStat::Sxy,
                    ],
                    [
                        CoStat::MeanX,
                        CoStat::MeanY,
                        CoStat::Mxx,
                        CoStat::Myy,
                        CoStat::Mxy,
                    ],
                ];
                for (m, st) in stats.into_iter().enumerate() {
                    let [a, b, c, d, e] = &mut want[5 * m..5 * m + 5] else {
                        unreachable!()
                    };
                    comoments(&Sequential, x, y, w, st, [a, b, c, d, e]);
                }
                correl(&Sequential, x, y, w, &mut want[10]);
                for random in [false, true] {
                    for (lo, hi) in pieces(&mut rng, w - 1, n, random) {
                        for (m, mode) in [CO_SUMS, CO_CENTRED].into_iter().enumerate() {
                            let got = host_comoments(x, y, w, mode, (lo, hi));
                            for (j, g) in got.iter().enumerate() {
                                same_bits(g, &want[5 * m + j][lo..hi], "tx_comoments");
                            }
                        }
                        let got = host_comoments(x, y, w, CO_CORREL, (lo, hi));
                        same_bits(&got[0], &want[10][lo..hi], "tx_comoments correl");
                    }
                }
            }
        }
    }
}

/// `tx_varscan_local`, the host's carry chain, then `tx_varscan_finish`, piece by piece over
/// pieces cut at the seed row and at multiples of the scan block (as the scan pipelines cut).
fn host_varscan(a: &[f64], b: &[f64], p: usize, seed: f64, cuts: &[usize]) -> Vec<f64> {
    let n = a.len();
    let mut out = vec![f64::from_bits(0x7ff8_dead_0000_0001); n];
    let mut bounds: Vec<usize> = cuts
        .iter()
        .map(|c| c / SCAN_BLOCK * SCAN_BLOCK)
        .filter(|&c| c > p && c < n)
        .collect();
    bounds.extend([p, n]);
    bounds.sort_unstable();
    bounds.dedup();
    let mut carry = seed;
    for piece in bounds.windows(2) {
        let (lo, hi) = (piece[0], piece[1]);
        let be = HostBackend::new();
        let (ab, bb) = (upload(&be, &a[lo..hi]), upload(&be, &b[lo..hi]));
        let bufs: Vec<HostBuf> = (0..3).map(|_| be.alloc(hi - lo).unwrap()).collect();
        let first = lo.max(p + 1);
        let blocks = if first < hi {
            (hi - 1) / SCAN_BLOCK - first / SCAN_BLOCK + 1
        } else {
            0
        };
        let ends = be.alloc(2 * blocks.max(1)).unwrap();
        let mut args = VarScanArgs {
            a: ab.addr(),
            b: bb.addr(),
            pa: bufs[0].addr(),
            l: bufs[1].addr(),
            ends: ends.addr(),
            carries: 0,
            out: bufs[2].addr(),
            base: lo as i64,
            lo: lo as i64,
            hi: hi as i64,
            seed_row: p as i64,
            seed,
        };
        be.launch(Kernel::VarScanLocal, blocks, &args).unwrap();
        let e = download(&be, &ends, 0, 2 * blocks);
        let pairs: Vec<[f64; 2]> = e.chunks_exact(2).map(|c| [c[0], c[1]]).collect();
        let carries = chain_carries(carry, &pairs);
        carry = *carries.last().unwrap();
        let cb = upload(&be, &carries);
        args.carries = cb.addr();
        be.launch(Kernel::VarScanFinish, hi - lo, &args).unwrap();
        be.download(&bufs[2], 0, &mut out[lo..hi]).unwrap();
    }
    out
}

#[test]
fn varscan_kernels_match_rust() {
    let mut rng = Lcg(5);
    for n in [1, 2, 1024, 1025, 3000, 9000] {
        let x = &series(n, n as u64)[0];
        let a: Vec<f64> = (0..n)
            .map(|t| match t % 89 {
                3 => 1.25,
                7 => -0.5,
                11 => 0.0,
                _ => 1.0 - 0.3 * rng.uniform(),
            })
            .collect();
        let b: Vec<f64> = x.iter().zip(&a).map(|(x, a)| (1.0 - a) * x).collect();
        for p in [0usize, 1, 1023, 1024, 2048] {
            if p >= n {
                continue;
            }
            let mut want = vec![f64::from_bits(0x7ff8_dead_0000_0001); n];
            let drive = |s: usize, ca: &mut [f64], cb: &mut [f64]| {
                ca.copy_from_slice(&a[s..s + ca.len()]);
                cb.copy_from_slice(&b[s..s + cb.len()]);
            };
            run_varscan(
                &Sequential,
                n,
                p,
                0.5 * x[p],
                drive,
                [&mut want],
                |o, i, _, ys, st| write_y(o[0], i, ys, st),
            );
            let whole = host_varscan(&a, &b, p, 0.5 * x[p], &[]);
            same_bits(&whole[p..], &want[p..], "tx_varscan whole");
            for _ in 0..3 {
                let cuts: Vec<usize> = (0..rng.below(6)).map(|_| rng.below(n + 1)).collect();
                let got = host_varscan(&a, &b, p, 0.5 * x[p], &cuts);
                same_bits(&got[p..], &want[p..], "tx_varscan pieces");
            }
        }
    }
}

#[test]
fn elementwise_kernel_matches_rust() {
    let mut rng = Lcg(9);
    for n in [1, 2, 300, 2000] {
        let zoo = series(n, 3 + n as u64);
        let (c, v) = (&zoo[5], &zoo[4]);
        let h: Vec<f64> = c.iter().zip(v).map(|(c, v)| c + v.abs() * 1e-2).collect();
        let l: Vec<f64> = c.iter().zip(v).map(|(c, v)| c - v.abs() * 7e-3).collect();
        let o: Vec<f64> = c.iter().zip(v).map(|(c, v)| c - v.abs() * 3e-3).collect();
        for op in Op::ALL.into_iter().filter(|op| op.has_cuda()) {
            // AvgPrice reads (open, high, low, close), the others (high, low, close).
            let inputs = if op == Op::AvgPrice {
                [o.as_slice(), h.as_slice(), l.as_slice(), c.as_slice()]
            } else {
                [h.as_slice(), l.as_slice(), c.as_slice(), o.as_slice()]
            };
            let first = op.first_row();
            if first >= n {
                continue;
            }
            let mut want = vec![0.0; n];
            apply(&Sequential, op, &inputs[..op.inputs()], &mut want);
            for random in [false, true] {
                for (lo, hi) in pieces(&mut rng, first, n, random) {
                    let be = HostBackend::new();
                    let base = lo - first;
                    let bufs: Vec<HostBuf> =
                        inputs.iter().map(|s| upload(&be, &s[base..hi])).collect();
                    let out = be.alloc(hi - base).unwrap();
                    let args = ElementwiseArgs {
                        a: bufs[0].addr(),
                        b: bufs[1].addr(),
                        c: bufs[2].addr(),
                        d: bufs[3].addr(),
                        out: out.addr(),
                        base: base as i64,
                        lo: lo as i64,
                        hi: hi as i64,
                        op: op as i64,
                    };
                    be.launch(Kernel::Elementwise, hi - lo, &args).unwrap();
                    let got = download(&be, &out, lo - base, hi - lo);
                    same_bits(&got, &want[lo..hi], "tx_elementwise");
                }
            }
        }
    }
}

/// `tx_machine_seg` through `batch::run_machine_batch`: every segment of a batch, one thread
/// each, gets the bits of `run_machine` on that segment alone from `first_row` on, and the rows
/// before are left as they were; for empty segments, segments shorter than `first_row`, NaN in
/// both inputs and resets at a segment's first row.
#[test]
fn machine_kernel_runs_each_segment_as_the_cpu_machine_does() {
    use super::args::MACHINE_RESETTING_MAX;
    use super::batch::run_machine_batch;
    use crate::kernels::sequential::{run_machine, ResettingMax};
    let mut rng = Lcg(13);
    for n in [0, 1, 7, 500, 3000] {
        let zoo = series(n.max(1), 40 + n as u64);
        let x: Vec<f64> = zoo[5][..n].to_vec();
        let reset: Vec<f64> = (0..n)
            .map(|_| match rng.below(30) {
                0 => 1.0,
                1 => f64::NAN,
                2 => -0.0,
                3 => -2.5,
                _ => 0.0,
            })
            .collect();
        for first_row in [0, 1, 5] {
            for _ in 0..4 {
                let mut bounds = vec![0];
                while *bounds.last().unwrap() < n {
                    let len = [0, 1, 3, 4, 6, 40, 900][rng.below(7)];
                    bounds.push((bounds.last().unwrap() + len).min(n));
                }
                if bounds.len() == 1 {
                    bounds.push(0);
                }
                let sentinel = f64::from_bits(0x7ff8_dead_0000_0002);
                let mut got = [vec![sentinel; n], vec![sentinel; n]];
                let [g0, g1] = &mut got;
                let be = HostBackend::new();
                run_machine_batch(
                    &be,
                    MACHINE_RESETTING_MAX,
                    [&x, &reset],
                    &bounds,
                    first_row,
                    [g0, g1],
                )
                .unwrap();
                assert_eq!(
                    be.launches.get(),
                    usize::from(n > 0),
                    "one launch, all segments"
                );
                for s in bounds.windows(2) {
                    let (lo, hi) = (s[0], s[1]);
                    let mut want = [vec![sentinel; hi - lo], vec![sentinel; hi - lo]];
                    let [w0, w1] = &mut want;
                    run_machine(
                        &Sequential,
                        &ResettingMax,
                        first_row,
                        [&x[lo..hi], &reset[lo..hi]],
                        [w0, w1],
                    );
                    let what = format!("n={n} first_row={first_row} segment {lo}..{hi}");
                    for (o, (g, w)) in got.iter().zip(&want).enumerate() {
                        let bits = |v: &[f64]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                        assert_eq!(bits(&g[lo..hi]), bits(w), "{what}: output {o}");
                    }
                }
            }
        }
    }
}

/// Where an NVRTC library can be found (`THREADX_NVRTC`, a CUDA toolkit, the NVIDIA wheels), the
/// GPU build of every kernel, `family.cu` included, compiles with the determinism options.
/// Elsewhere there is nothing to check (`tests/test_gpu_absent.py` does the same from Python).
#[test]
fn every_kernel_compiles_with_nvrtc_where_it_is_installed() {
    if super::discovery::nvrtc().is_err() {
        eprintln!("no NVRTC library: compile check skipped");
        return;
    }
    let cubin = super::nvrtc::compile("sm_80").expect("NVRTC compiles the kernels");
    assert!(!cubin.is_empty());
    eprintln!(
        "NVRTC compiled every kernel for sm_80: {} bytes",
        cubin.len()
    );
}
