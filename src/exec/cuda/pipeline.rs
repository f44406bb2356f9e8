//! What runs on a GPU for each indicator: which kernels, on which rows, in which order, with which
//! halos and carries. Written once against [`Backend`], so the CUDA backend and the host build of
//! the same kernels (the test suite's stand-in for a GPU) run exactly this code.
//!
//! Long inputs are cut into pieces of at most `piece_rows` output rows so device memory is never
//! exceeded. A windowed piece `[lo, hi)` uploads its inputs from the start of the grid block that
//! holds `lo - w + 1` (stoch composes the three halos of its max/min, slow %K and slow %D grids).
//! A scan piece starts at the seed row or on a multiple of [`SCAN_BLOCK`] and takes its carry-in
//! from the previous piece, so pieces chain exactly like the blocks inside one piece. Seeds, decays
//! and the power table come from the Rust kernels' own builders (`ema_recurrence`, …), so the
//! GPU starts from the very same bits.

use std::fmt;

use super::args::*;
use crate::kernels::scan::{power_table, Recurrence, SCAN_BLOCK};
use crate::kernels::split::Sequential;
use crate::kernels::{ema, wilder, Spec};

/// A failed GPU operation (allocation, copy, launch, compile); the caller falls back to the CPU.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuError(pub String);

impl fmt::Display for GpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GpuError {}

/// A device array of `f64`.
pub trait DeviceBuffer {
    /// The device address of element 0.
    fn addr(&self) -> u64;
}

/// One device: memory, copies and launches. Copies from the device complete before `download`
/// returns; everything else may be asynchronous in launch order.
pub trait Backend {
    type Buf: DeviceBuffer;
    fn alloc(&self, len: usize) -> Result<Self::Buf, GpuError>;
    /// Copies `src` to elements `0..src.len()` of `dst`.
    fn upload(&self, dst: &mut Self::Buf, src: &[f64]) -> Result<(), GpuError>;
    /// Copies elements `at..at + dst.len()` of `src` into `dst`.
    fn download(&self, src: &Self::Buf, at: usize, dst: &mut [f64]) -> Result<(), GpuError>;
    /// Runs `kernel` on `threads` threads (any launch shape: the kernels do not depend on it).
    fn launch<A: KernelArgs>(
        &self,
        kernel: Kernel,
        threads: usize,
        args: &A,
    ) -> Result<(), GpuError>;
}

/// Computes `spec` on the device: every row from the lookback on, as [`Spec::run`] would.
pub fn run<B: Backend>(
    be: &B,
    spec: &Spec,
    inputs: &[&[f64]],
    outs: &mut [&mut [f64]],
    piece_rows: usize,
) -> Result<(), GpuError> {
    let n = inputs.first().map_or(0, |x| x.len());
    let lookback = spec.lookback();
    if n <= lookback {
        return Ok(());
    }
    let piece_rows = piece_rows.max(1);
    let x = inputs[0];
    let moments = |mode, w: usize, inv_denom, k| Window::Moments {
        mode,
        w,
        inv_denom,
        k,
    };
    match *spec {
        Spec::Sma { period } => windowed(
            be,
            moments(MOMENTS_SMA, period, 0.0, 0.0),
            x,
            outs,
            lookback,
            piece_rows,
        ),
        Spec::RollingStd { period, ddof } => {
            let inv_denom = 1.0 / (period - ddof) as f64;
            windowed(
                be,
                moments(MOMENTS_STD, period, inv_denom, 0.0),
                x,
                outs,
                lookback,
                piece_rows,
            )
        }
        Spec::Zscore { period } => windowed(
            be,
            moments(MOMENTS_ZSCORE, period, 0.0, 0.0),
            x,
            outs,
            lookback,
            piece_rows,
        ),
        Spec::Bollinger { period, std_dev } => windowed(
            be,
            moments(MOMENTS_BOLLINGER, period, 0.0, std_dev),
            x,
            outs,
            lookback,
            piece_rows,
        ),
        Spec::Wma { period } => {
            windowed(be, Window::Wma { w: period }, x, outs, lookback, piece_rows)
        }
        Spec::Roc { period } => windowed(be, Window::Roc { period }, x, outs, lookback, piece_rows),
        Spec::Stoch {
            fastk,
            slowk,
            slowd,
        } => stoch(be, inputs, (fastk, slowk, slowd), outs, piece_rows),
        Spec::Ema { period } => {
            let (rec, k) = ema::ema_recurrence(x, period);
            let stage = Stage::new(
                SCAN_EMA,
                &rec,
                [k, 0.0],
                [In::Input(0), In::None, In::None],
                [Out::User(0), Out::None],
            );
            scans(be, inputs, &[stage], outs, lookback, piece_rows)
        }
        Spec::Rsi { period } => {
            let (rec, inv) = wilder::rsi_recurrence(x, period);
            let stage = Stage::new(
                SCAN_RSI,
                &rec,
                [inv, 0.0],
                [In::Input(0), In::None, In::None],
                [Out::User(0), Out::None],
            );
            scans(be, inputs, &[stage], outs, lookback, piece_rows)
        }
        Spec::Atr { period } | Spec::Natr { period } => {
            let mode = if matches!(spec, Spec::Atr { .. }) {
                SCAN_ATR
            } else {
                SCAN_NATR
            };
            let (rec, inv) = wilder::atr_recurrence((inputs[1], inputs[2], inputs[0]), period);
            let ins = [In::Input(0), In::Input(1), In::Input(2)];
            let stage = Stage::new(mode, &rec, [inv, 0.0], ins, [Out::User(0), Out::None]);
            scans(be, inputs, &[stage], outs, lookback, piece_rows)
        }
        Spec::Obv => {
            let rec = Recurrence {
                decay: [1.0],
                seed_row: 0,
                seed: [inputs[1][0]],
            };
            let ins = [In::Input(0), In::Input(1), In::None];
            let stage = Stage::new(SCAN_OBV, &rec, [0.0, 0.0], ins, [Out::User(0), Out::None]);
            scans(be, inputs, &[stage], outs, lookback, piece_rows)
        }
        Spec::Macd { fast, slow, signal } => {
            let (line, coef) = ema::macd_recurrence(x, fast, slow);
            // The signal's seed averages MACD values of the first rows: the CPU kernel computes
            // exactly those bits from the prefix (a scan's row t depends only on rows <= t).
            let prefix = &x[..=lookback];
            let mut m = vec![0.0; prefix.len()];
            let (mut s, mut h) = (vec![0.0; prefix.len()], vec![0.0; prefix.len()]);
            ema::macd(
                &Sequential,
                prefix,
                (fast, slow, signal),
                &mut m,
                &mut s,
                &mut h,
            );
            let (sig, kg) = ema::signal_recurrence(&m, slow, signal);
            let stages = [
                Stage::new(
                    SCAN_MACD,
                    &line,
                    coef,
                    [In::Input(0), In::None, In::None],
                    [Out::User(0), Out::None],
                ),
                Stage::new(
                    SCAN_SIGNAL,
                    &sig,
                    [kg, 0.0],
                    [In::User(0), In::None, In::None],
                    [Out::User(1), Out::User(2)],
                ),
            ];
            scans(be, inputs, &stages, outs, lookback, piece_rows)
        }
    }
}

/// The output row ranges `[lo, hi)` of the pieces covering `from..n`; every piece after the first
/// starts on a multiple of `align`, and the first one reaches past `must_reach` when it can.
fn pieces(
    from: usize,
    n: usize,
    piece_rows: usize,
    align: usize,
    must_reach: usize,
) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut lo = from;
    while lo < n {
        let want = lo.saturating_add(piece_rows).max(must_reach + 1);
        let hi = want.div_ceil(align).saturating_mul(align).min(n);
        out.push((lo, hi));
        lo = hi;
    }
    out
}

/// Allocates `count` buffers of `len` elements.
fn alloc_n<B: Backend>(be: &B, count: usize, len: usize) -> Result<Vec<B::Buf>, GpuError> {
    (0..count).map(|_| be.alloc(len.max(1))).collect()
}

fn addr_at<Buf: DeviceBuffer>(bufs: &[Buf], i: usize) -> u64 {
    bufs.get(i).map_or(0, DeviceBuffer::addr)
}

/// A windowed kernel and its grid.
#[derive(Clone, Copy)]
enum Window {
    Moments {
        mode: i64,
        w: usize,
        inv_denom: f64,
        k: f64,
    },
    Wma {
        w: usize,
    },
    Roc {
        period: usize,
    },
}

impl Window {
    /// First input row a piece starting at output row `lo` reads.
    fn halo_start(&self, lo: usize) -> usize {
        match *self {
            Window::Moments { w, .. } | Window::Wma { w } => grid_start(lo + 1 - w, 0, w),
            Window::Roc { period } => lo - period,
        }
    }

    /// Scratch buffers beyond the outputs (suffix sums that cannot live in an output array).
    fn scratch(&self) -> usize {
        match *self {
            Window::Moments { mode, .. } if mode == MOMENTS_STD || mode == MOMENTS_ZSCORE => 1,
            _ => 0,
        }
    }
}

/// Start of the block (of a grid of `w` rows starting at `origin`) that holds `row`.
fn grid_start(row: usize, origin: usize, w: usize) -> usize {
    origin + (row - origin) / w * w
}

/// Threads for a grid kernel: one per block touching output rows `[lo, hi)`.
fn grid_threads(lo: usize, hi: usize, origin: usize, w: usize) -> usize {
    (hi - 1 - origin) / w - (lo - origin) / w + 1
}

fn windowed<B: Backend>(
    be: &B,
    op: Window,
    x: &[f64],
    outs: &mut [&mut [f64]],
    lookback: usize,
    piece_rows: usize,
) -> Result<(), GpuError> {
    let n = x.len();
    let plan = pieces(lookback, n, piece_rows, 1, 0);
    let cap = plan
        .iter()
        .map(|&(lo, hi)| hi - op.halo_start(lo))
        .max()
        .unwrap_or(0);
    let mut xb = be.alloc(cap)?;
    let bufs = alloc_n(be, outs.len() + op.scratch(), cap)?;
    for (lo, hi) in plan {
        let base = op.halo_start(lo);
        be.upload(&mut xb, &x[base..hi])?;
        let (b, l, h) = (base as i64, lo as i64, hi as i64);
        match op {
            Window::Moments {
                mode,
                w,
                inv_denom,
                k,
            } => {
                // Suffix sums live in output arrays where possible (each row's thread reads its
                // scratch before writing the output row); rolling_std and zscore need one more.
                let (sa1, sa2) = match mode {
                    MOMENTS_SMA => (addr_at(&bufs, 0), 0),
                    MOMENTS_BOLLINGER => (addr_at(&bufs, 1), addr_at(&bufs, 2)),
                    _ => (addr_at(&bufs, 0), addr_at(&bufs, 1)),
                };
                let args = MomentsArgs {
                    x: xb.addr(),
                    out0: addr_at(&bufs, 0),
                    out1: if mode == MOMENTS_BOLLINGER {
                        addr_at(&bufs, 1)
                    } else {
                        0
                    },
                    out2: if mode == MOMENTS_BOLLINGER {
                        addr_at(&bufs, 2)
                    } else {
                        0
                    },
                    sa1,
                    sa2,
                    base: b,
                    lo: l,
                    hi: h,
                    origin: 0,
                    w: w as i64,
                    mode,
                    inv_w: 1.0 / w as f64,
                    inv_denom,
                    k,
                };
                be.launch(Kernel::Moments, grid_threads(lo, hi, 0, w), &args)?;
            }
            Window::Wma { w } => {
                let out = addr_at(&bufs, 0);
                let args = WmaArgs {
                    x: xb.addr(),
                    out,
                    aw: out,
                    base: b,
                    lo: l,
                    hi: h,
                    w: w as i64,
                    denom: (w * (w + 1) / 2) as f64,
                };
                be.launch(Kernel::Wma, grid_threads(lo, hi, 0, w), &args)?;
            }
            Window::Roc { period } => {
                let args = RowArgs {
                    a: xb.addr(),
                    out: addr_at(&bufs, 0),
                    base: b,
                    lo: l,
                    hi: h,
                    period: period as i64,
                    ..Default::default()
                };
                be.launch(Kernel::Roc, hi - lo, &args)?;
            }
        }
        for (out, buf) in outs.iter_mut().zip(&bufs) {
            be.download(buf, lo - base, &mut out[lo..hi])?;
        }
    }
    Ok(())
}

/// STOCH: rolling max/min → fast %K → SMA (slow %K, grid from row `fastk - 1`) → SMA (slow %D, grid
/// from row `fastk + slowk - 2`), each level on the rows the next level's halo needs.
fn stoch<B: Backend>(
    be: &B,
    inputs: &[&[f64]],
    (fk, sk, sd): (usize, usize, usize),
    outs: &mut [&mut [f64]],
    piece_rows: usize,
) -> Result<(), GpuError> {
    let (close, high, low) = (inputs[0], inputs[1], inputs[2]);
    let n = close.len();
    let (ok, od) = (fk - 1, fk + sk - 2);
    let lookback = od + sd - 1;
    // Rows each level needs for output rows from `lo`: slow %K from hd, fast %K from hk, prices from hx.
    let halos = |lo: usize| {
        let hd = grid_start(lo + 1 - sd, od, sd);
        let hk = grid_start(hd + 1 - sk, ok, sk);
        let hx = grid_start(hk + 1 - fk, 0, fk);
        (hd, hk, hx)
    };
    let plan = pieces(lookback, n, piece_rows, 1, 0);
    let cap = plan
        .iter()
        .map(|&(lo, hi)| hi - halos(lo).2)
        .max()
        .unwrap_or(0);
    let mut ins = alloc_n(be, 3, cap)?;
    let [hh, ll, kb, db] = <[B::Buf; 4]>::try_from(alloc_n(be, 4, cap)?)
        .map_err(|_| GpuError("stoch: buffer allocation".into()))?;
    for (lo, hi) in plan {
        let (hd, hk, base) = halos(lo);
        for (buf, src) in ins.iter_mut().zip([close, high, low]) {
            be.upload(buf, &src[base..hi])?;
        }
        let b = base as i64;
        for (src, dst, is_max) in [(1, &hh, 1), (2, &ll, 0)] {
            let args = ExtremaArgs {
                x: ins[src].addr(),
                out: dst.addr(),
                suf: dst.addr(),
                base: b,
                lo: hk as i64,
                hi: hi as i64,
                w: fk as i64,
                is_max,
            };
            be.launch(Kernel::Extrema, grid_threads(hk, hi, 0, fk), &args)?;
        }
        let fast = RowArgs {
            a: hh.addr(),
            b: ll.addr(),
            c: ins[0].addr(),
            out: hh.addr(),
            base: b,
            lo: hk as i64,
            hi: hi as i64,
            period: fk as i64,
        };
        be.launch(Kernel::Fastk, hi - hk, &fast)?;
        for (src, dst, from, origin, w) in [(&hh, &kb, hd, ok, sk), (&kb, &db, lo, od, sd)] {
            let args = MomentsArgs {
                x: src.addr(),
                out0: dst.addr(),
                sa1: dst.addr(),
                base: b,
                lo: from as i64,
                hi: hi as i64,
                origin: origin as i64,
                w: w as i64,
                mode: MOMENTS_SMA,
                inv_w: 1.0 / w as f64,
                ..Default::default()
            };
            be.launch(Kernel::Moments, grid_threads(from, hi, origin, w), &args)?;
        }
        be.download(&kb, lo - base, &mut outs[0][lo..hi])?;
        be.download(&db, lo - base, &mut outs[1][lo..hi])?;
    }
    Ok(())
}

/// Where a scan stage reads an input from.
#[derive(Clone, Copy, PartialEq)]
enum In {
    None,
    /// The indicator's input `i`.
    Input(usize),
    /// The device array of output `i` (written by an earlier stage of the same piece).
    User(usize),
}

#[derive(Clone, Copy, PartialEq)]
enum Out {
    None,
    User(usize),
}

/// One recurrence of an indicator (MACD has two: the line, then the signal over it).
struct Stage {
    mode: i64,
    channels: usize,
    decay: [f64; 2],
    seed_row: usize,
    seed: [f64; 2],
    coef: [f64; 2],
    ins: [In; 3],
    outs: [Out; 2],
    powers: Vec<f64>,
}

impl Stage {
    fn new<const C: usize>(
        mode: i64,
        rec: &Recurrence<C>,
        coef: [f64; 2],
        ins: [In; 3],
        outs: [Out; 2],
    ) -> Stage {
        let (mut decay, mut seed) = ([0.0; 2], [0.0; 2]);
        decay[..C].copy_from_slice(&rec.decay);
        seed[..C].copy_from_slice(&rec.seed);
        Stage {
            mode,
            channels: C,
            decay,
            seed_row: rec.seed_row,
            seed,
            coef,
            ins,
            outs,
            powers: power_table(&rec.decay),
        }
    }
}

fn scans<B: Backend>(
    be: &B,
    inputs: &[&[f64]],
    stages: &[Stage],
    outs: &mut [&mut [f64]],
    lookback: usize,
    piece_rows: usize,
) -> Result<(), GpuError> {
    let n = inputs[0].len();
    let first = stages[0].seed_row;
    // The first piece holds every seed row; later pieces start on a scan block and read one row back.
    let plan = pieces(first, n, piece_rows, SCAN_BLOCK, lookback);
    let cap = plan
        .iter()
        .map(|&(lo, hi)| hi - lo.saturating_sub(1))
        .max()
        .unwrap_or(0);
    let max_blocks = plan
        .iter()
        .map(|&(lo, hi)| (hi - 1) / SCAN_BLOCK - lo / SCAN_BLOCK + 1)
        .max()
        .unwrap_or(0);
    let mut in_bufs = alloc_n(be, inputs.len(), cap)?;
    let out_bufs = alloc_n(be, outs.len(), cap)?;
    let l = be.alloc(2 * cap)?;
    let ends = be.alloc(2 * max_blocks)?;
    let mut carries = be.alloc(2 * max_blocks)?;
    let mut powers = Vec::with_capacity(stages.len());
    for st in stages {
        let mut p = be.alloc(st.powers.len())?;
        be.upload(&mut p, &st.powers)?;
        powers.push(p);
    }
    let mut carry: Vec<[f64; 2]> = stages.iter().map(|s| s.seed).collect();
    let (mut ends_host, mut carries_host) = (vec![0.0; 2 * max_blocks], vec![0.0; 2 * max_blocks]);
    for (lo, hi) in plan {
        let base = lo.saturating_sub(1);
        for (buf, src) in in_bufs.iter_mut().zip(inputs) {
            be.upload(buf, &src[base..hi])?;
        }
        for (si, st) in stages.iter().enumerate() {
            let source = |i: In| match i {
                In::None => 0,
                In::Input(j) => addr_at(&in_bufs, j),
                In::User(j) => addr_at(&out_bufs, j),
            };
            let target = |o: Out| match o {
                Out::None => 0,
                Out::User(j) => addr_at(&out_bufs, j),
            };
            let args = ScanArgs {
                in0: source(st.ins[0]),
                in1: source(st.ins[1]),
                in2: source(st.ins[2]),
                l: l.addr(),
                ends: ends.addr(),
                carries: carries.addr(),
                powers: powers[si].addr(),
                out0: target(st.outs[0]),
                out1: target(st.outs[1]),
                base: base as i64,
                stride: cap as i64,
                lo: lo as i64,
                hi: hi as i64,
                seed_row: st.seed_row as i64,
                channels: st.channels as i64,
                mode: st.mode,
                coef0: st.coef[0],
                coef1: st.coef[1],
                decay0: st.decay[0],
                decay1: st.decay[1],
                seed0: st.seed[0],
                seed1: st.seed[1],
            };
            let from = lo.max(st.seed_row + 1);
            if from < hi {
                be.launch(Kernel::ScanDrive, hi - from, &args)?;
                let k0 = from / SCAN_BLOCK;
                let blocks = (hi - 1) / SCAN_BLOCK - k0 + 1;
                let c = st.channels;
                be.launch(Kernel::ScanLocal, blocks * c, &args)?;
                be.download(&ends, 0, &mut ends_host[..blocks * c])?;
                // Carries in block order, exactly as scan.rs chains them.
                let cur = &mut carry[si];
                for kk in 0..blocks {
                    let k = k0 + kk;
                    let len = ((k + 1) * SCAN_BLOCK).min(hi) - (k * SCAN_BLOCK).max(from);
                    for ch in 0..c {
                        carries_host[kk * c + ch] = cur[ch];
                        cur[ch] = ends_host[kk * c + ch] + st.powers[len * c + ch] * cur[ch];
                    }
                }
                be.upload(&mut carries, &carries_host[..blocks * c])?;
            }
            if lo.max(st.seed_row) < hi {
                be.launch(Kernel::ScanFinish, hi - lo, &args)?;
            }
        }
        let from = lo.max(lookback);
        if from < hi {
            for (out, buf) in outs.iter_mut().zip(&out_bufs) {
                be.download(buf, from - base, &mut out[from..hi])?;
            }
        }
    }
    Ok(())
}
