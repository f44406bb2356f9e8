//! What runs on a GPU for each indicator: which kernels, on which rows, in which order, with which
//! halos and carries. Written once against [`Backend`], so the CUDA backend and the host build of
//! the same kernels (the test suite's stand-in for a GPU) run exactly this code.
//!
//! Long inputs are cut into pieces of at most `piece_rows` output rows so device memory is never
//! exceeded. A windowed piece `[lo, hi)` uploads its inputs from the start of the grid block that
//! holds `lo - w + 1` (stoch composes the three halos of its max/min, slow %K and slow %D grids;
//! TRIMA and HMA the two of theirs).
//! A scan piece starts at the seed row or on a multiple of [`SCAN_BLOCK`] and takes its carry-in
//! from the previous piece, so pieces chain exactly like the blocks inside one piece. Seeds, decays
//! and the power table come from the Rust kernels' own builders (`ema_recurrence`, …), so the
//! GPU starts from the very same bits.
//!
//! A `by=` batch whose rows fit in one piece runs every segment in each launch (`cuda/batch.rs`):
//! [`run`] over the whole concatenation on a backend that turns launches into their segmented
//! twins, or [`scans_segments`] for the scan families.

use super::args::*;
use super::error::GpuError;
use crate::kernels::canon;
use crate::kernels::comoments::{angle_of, LinReg};
use crate::kernels::elementwise::Op;
use crate::kernels::ma::{self, MaType};
use crate::kernels::scan::{power_table, Recurrence, SCAN_BLOCK};
use crate::kernels::split::Sequential;
use crate::kernels::varscan;
use crate::kernels::{ema, volatility, wilder, Spec};

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

/// How an indicator runs on a GPU.
enum Family {
    Window(Window),
    /// `tx_comoments` in its CORREL mode over two inputs, window `w`.
    Correl(usize),
    Stoch(usize, usize, usize),
    Scans(Vec<Stage>),
    Elementwise(Op),
    /// Bollinger bands around the moving average `ma` (its own family, run first into the middle
    /// output), then `tx_moments` in its BANDS mode over `w` rows for the two bands.
    Bands {
        ma: Spec,
        w: usize,
        up: f64,
        down: f64,
    },
    /// Rolling max of input `inputs[0]` and min of input `inputs[1]` (`tx_extrema`), their
    /// midpoint where asked (`tx_elementwise`'s median price: `(hh + ll) / 2.0`); `outs` in the
    /// indicator's output order.
    Extrema {
        w: usize,
        inputs: [usize; 2],
        outs: &'static [Extreme],
    },
    /// `tx_comoments` in a mode whose one output is the indicator (the LINEARREG family, BETA);
    /// `angle`: LINEARREG_ANGLE, the device's slope turned into degrees on the host.
    CoMoments {
        w: usize,
        mode: i64,
        angle: bool,
    },
    /// TRIMA: an SMA of width `.0` (grid origin 0), then one of width `.1` (origin `.0 - 1`).
    Trima(usize, usize),
    /// VWMA(p): SMA(x·v) / SMA(v).
    Vwma(usize),
    /// HMA(p): WMA_s(2·WMA_{p/2} - WMA_p) on the grid from row `p - 1`.
    Hma(usize),
    /// A moving average of period 1: the input itself.
    Copy,
}

/// One output of [`Family::Extrema`].
#[derive(Clone, Copy, PartialEq)]
enum Extreme {
    Max,
    Min,
    Mid,
}

/// Output rows `[from, to)` of a call, written to output slices whose element 0 is row `out_base`.
#[derive(Clone, Copy)]
struct Rows {
    from: usize,
    to: usize,
    out_base: usize,
}

/// Which kernels compute `spec` on a GPU. An indicator without a CUDA composition is an error
/// here, and never reaches it: the planner keeps indicators declared CPU-only off GPUs.
fn family(spec: &Spec, inputs: &[&[f64]]) -> Result<Family, GpuError> {
    let x = inputs[0];
    let lookback = spec.lookback();
    let moments = |mode, w: usize, inv_denom, k| {
        Family::Window(Window::Moments {
            mode,
            w,
            inv_denom,
            k,
        })
    };
    let one = |mode, rec: &Recurrence<1>, coef: f64, ins: [In; 3]| {
        Family::Scans(vec![Stage::new(
            mode,
            rec,
            [coef, 0.0],
            ins,
            [Out::User(0), Out::None],
        )])
    };
    let x_only = [In::Input(0), In::None, In::None];
    let extremes = |w, inputs, outs| Family::Extrema { w, inputs, outs };
    let family = match *spec {
        Spec::Sma { period } => moments(MOMENTS_SMA, period, 0.0, 0.0),
        Spec::RollingStd { period, ddof } => {
            moments(MOMENTS_STD, period, 1.0 / (period - ddof) as f64, 0.0)
        }
        Spec::Zscore { period } => moments(MOMENTS_ZSCORE, period, 0.0, 0.0),
        Spec::RollingVar { period } => moments(MOMENTS_VAR, period, 0.0, 0.0),
        Spec::Bollinger { period, std_dev } => moments(MOMENTS_BOLLINGER, period, 0.0, std_dev),
        Spec::Sum { period } => moments(MOMENTS_SUM, period, 0.0, period as f64),
        Spec::Wma { period } => Family::Window(Window::Wma { w: period }),
        Spec::Roc { period } => Family::Window(Window::Roc { period }),
        Spec::Stoch {
            fastk,
            slowk,
            slowd,
        } => Family::Stoch(fastk, slowk, slowd),
        Spec::Ema { period } => {
            let (rec, k) = ema::ema_recurrence(x, period);
            one(SCAN_EMA, &rec, k, x_only)
        }
        Spec::Atr { period } | Spec::Natr { period } => {
            let mode = if matches!(spec, Spec::Atr { .. }) {
                SCAN_ATR
            } else {
                SCAN_NATR
            };
            let (rec, inv) = wilder::atr_recurrence((inputs[1], inputs[2], inputs[0]), period);
            one(mode, &rec, inv, [In::Input(0), In::Input(1), In::Input(2)])
        }
        Spec::Elementwise(op) if op.has_cuda() => Family::Elementwise(op),
        Spec::Correl { period } => Family::Correl(period),
        Spec::Cumsum => {
            let rec = Recurrence {
                decay: [1.0],
                seed_row: 0,
                seed: [x.first().copied().unwrap_or(0.0)],
            };
            one(SCAN_CUMSUM, &rec, 0.0, x_only)
        }
        Spec::Obv => {
            let rec = Recurrence {
                decay: [1.0],
                seed_row: 0,
                seed: [inputs[1][0]],
            };
            one(SCAN_OBV, &rec, 0.0, [In::Input(0), In::Input(1), In::None])
        }
        Spec::Rsi { period } => {
            let (rec, inv) = wilder::rsi_recurrence(x, period);
            Family::Scans(vec![Stage::new(
                SCAN_RSI,
                &rec,
                [inv, 0.0],
                x_only,
                [Out::User(0), Out::None],
            )])
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
            Family::Scans(vec![
                Stage::new(SCAN_MACD, &line, coef, x_only, [Out::User(0), Out::None]),
                Stage::new(
                    SCAN_SIGNAL,
                    &sig,
                    [kg, 0.0],
                    [In::User(0), In::None, In::None],
                    [Out::User(1), Out::User(2)],
                ),
            ])
        }
        Spec::Rma { period } => {
            let (rec, inv) = wilder::rma_recurrence(x, period);
            one(SCAN_EMA, &rec, inv, x_only)
        }
        // A moving average of period 1 is the input itself.
        Spec::Dema { period }
        | Spec::Tema { period }
        | Spec::T3 { period, .. }
        | Spec::Zlema { period }
        | Spec::Kama { period }
        | Spec::Trima { period }
        | Spec::Vwma { period }
        | Spec::Hma { period }
            if period <= 1 =>
        {
            Family::Copy
        }
        Spec::Dema { period } => Family::Scans(ema_chain::<2>(x, period, SCAN_DEMA, [0.0; 4])),
        Spec::Tema { period } => Family::Scans(ema_chain::<3>(x, period, SCAN_TEMA, [0.0; 4])),
        Spec::T3 { period, vfactor } => Family::Scans(ema_chain::<6>(
            x,
            period,
            SCAN_T3,
            ma::t3_coefficients(vfactor),
        )),
        Spec::Zlema { period } => {
            let lag = ma::zlema_lag(period);
            let (rec, k) = ma::ema_from_recurrence(lag, period, |t| ma::zlema_value(x, lag, t));
            let mut stage = Stage::new(
                SCAN_ZLEMA,
                &rec,
                [k, 0.0],
                x_only,
                [Out::User(0), Out::None],
            );
            stage.lag = lag;
            Family::Scans(vec![stage])
        }
        Spec::Kc {
            period,
            atr_period,
            multiplier,
        } => {
            let (rec, coef) =
                volatility::kc_recurrence((inputs[1], inputs[2], inputs[0]), period, atr_period);
            let ins = [In::Input(0), In::Input(1), In::Input(2)];
            let mut stage = Stage::new(SCAN_KC, &rec, coef, ins, [Out::User(0), Out::User(1)]);
            stage.out2 = Out::User(2);
            stage.mix[0] = multiplier;
            Family::Scans(vec![stage])
        }
        Spec::Kama { period } => {
            // Two channels hold the drive's (a, b), then the local (A, L); one state is carried.
            let rec = Recurrence {
                decay: [0.0; 2],
                seed_row: period - 1,
                seed: [x[period - 1], 0.0],
            };
            let g = ma::kama_scale(period);
            let mut stage = Stage::new(
                SCAN_KAMA,
                &rec,
                [g, 1e-8 * g],
                x_only,
                [Out::User(0), Out::None],
            );
            stage.lag = period;
            stage.mix = [ma::KAMA_SLOWEST, ma::KAMA_SPAN, 0.0, 0.0];
            Family::Scans(vec![stage])
        }
        Spec::Ma { period, matype } => return ma_family(matype, period, inputs),
        Spec::BollingerMa {
            period,
            up,
            down,
            matype,
        } => Family::Bands {
            ma: Spec::Ma { period, matype },
            w: period,
            up,
            down,
        },
        Spec::Max { period } => extremes(period, [0, 0], &[Extreme::Max]),
        Spec::Min { period } => extremes(period, [0, 0], &[Extreme::Min]),
        Spec::MinMax { period } => extremes(period, [0, 0], &[Extreme::Min, Extreme::Max]),
        Spec::Midpoint { period } => extremes(period, [0, 0], &[Extreme::Mid]),
        Spec::Midprice { period } => extremes(period, [0, 1], &[Extreme::Mid]),
        Spec::Donchian { period } => {
            extremes(period, [0, 1], &[Extreme::Max, Extreme::Mid, Extreme::Min])
        }
        Spec::AvgDev { period } => moments(MOMENTS_AVGDEV, period, 0.0, period as f64),
        Spec::LinReg { period, what } => Family::CoMoments {
            w: period,
            mode: match what {
                LinReg::Value => CO_LINREG_VALUE,
                LinReg::Intercept => CO_LINREG_INTERCEPT,
                LinReg::Tsf => CO_LINREG_TSF,
                LinReg::Slope | LinReg::Angle => CO_LINREG_SLOPE,
            },
            angle: what == LinReg::Angle,
        },
        Spec::Beta { period } => Family::CoMoments {
            w: period,
            mode: CO_BETA,
            angle: false,
        },
        Spec::Trima { period } => {
            let (b, a) = ma::trima_widths(period);
            Family::Trima(b, a)
        }
        Spec::Vwma { period } => Family::Vwma(period),
        Spec::Hma { period } => Family::Hma(period),
        // Every indicator declared `CPU_AND_CUDA` has an arm above (the host-compiled tests run
        // them all); a CPU-only one needs none.
        #[allow(unreachable_patterns)]
        _ => return Err(GpuError::NoCudaComposition(spec.name())),
    };
    Ok(family)
}

/// TA-Lib's moving average `matype` at `period` (ma.rs `moving_average`): the standalone
/// indicator's family (T3 with MA's volume factor), or the identity where it is one.
fn ma_family(matype: MaType, period: usize, inputs: &[&[f64]]) -> Result<Family, GpuError> {
    if period <= 1 || matype == MaType::Disabled {
        return Ok(Family::Copy);
    }
    let spec = match matype {
        MaType::Sma => Spec::Sma { period },
        MaType::Ema => Spec::Ema { period },
        MaType::Wma => Spec::Wma { period },
        MaType::Dema => Spec::Dema { period },
        MaType::Tema => Spec::Tema { period },
        MaType::Trima => Spec::Trima { period },
        MaType::Kama => Spec::Kama { period },
        MaType::T3 => Spec::T3 {
            period,
            vfactor: ma::MA_T3_VFACTOR,
        },
        MaType::Hma => Spec::Hma { period },
        MaType::Zlema => Spec::Zlema { period },
        MaType::Rma => Spec::Rma { period },
        MaType::Disabled => return Ok(Family::Copy),
    };
    family(&spec, inputs)
}

/// DEMA, TEMA and T3 (ma.rs, `period >= 2`): the `M` EMA levels of the CPU kernel's cascade
/// (`ma::ema_cascade_stages`, the same recurrences and seeds: level `i + 1` is
/// `ema_from(e_i, i(p - 1))`), level `i` in scratch output `i` (outputs past the indicator's own
/// are never downloaded), the last level's finish writing `mode`'s combination of it with the
/// levels before into output 0.
fn ema_chain<const M: usize>(x: &[f64], p: usize, mode: i64, mix: [f64; 4]) -> Vec<Stage> {
    let (levels, k, _) = ma::ema_cascade_stages::<M>(p, |t| x[t]);
    let mut stages = Vec::with_capacity(M);
    for (i, rec) in levels.iter().enumerate() {
        let source = if i == 0 { In::Input(0) } else { In::User(i) };
        let stage = if i + 1 < M {
            Stage::new(
                SCAN_EMA,
                rec,
                [k, 0.0],
                [source, In::None, In::None],
                [Out::User(i + 1), Out::None],
            )
        } else {
            // DEMA: in1 = e1; TEMA: in1 = e1, in2 = e2; T3: in0 = e5, in1 = e4, in2 = e3.
            let ins = match mode {
                SCAN_DEMA => [source, In::User(1), In::None],
                SCAN_TEMA => [source, In::User(1), In::User(2)],
                _ => [source, In::User(4), In::User(3)],
            };
            let mut last = Stage::new(mode, rec, [k, 0.0], ins, [Out::User(0), Out::None]);
            last.mix = mix;
            last
        };
        stages.push(stage);
    }
    stages
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
    let rows = Rows {
        from: lookback,
        to: n,
        out_base: 0,
    };
    match family(spec, inputs)? {
        Family::Window(op) => windowed(be, op, inputs[0], outs, rows, piece_rows),
        Family::Correl(w) => correl(be, w, inputs, outs, rows, piece_rows),
        Family::Stoch(fk, sk, sd) => stoch(be, inputs, (fk, sk, sd), outs, rows, piece_rows),
        Family::Scans(stages) => scans(be, inputs, &stages, outs, lookback, piece_rows),
        Family::Elementwise(op) => {
            elementwise(be, op, &spec.talib_order(inputs), outs, rows, piece_rows)
        }
        Family::Bands { ma, w, up, down } => {
            let (middle, bands_out) = outs.split_at_mut(1);
            run(be, &ma, inputs, middle, piece_rows)?;
            bands(
                be,
                (w, up, down),
                inputs[0],
                &*middle[0],
                bands_out,
                rows,
                piece_rows,
            )
        }
        fam => composed(be, &fam, inputs, outs, rows, piece_rows),
    }
}

/// Whether every launch of `spec` has a segmented twin ([`Kernel::segmented`]), so a batch can run
/// all its segments through [`run`] at once (`cuda/batch.rs`): every family but the scans
/// (whose seeds and carries belong to each segment), Bollinger bands around a scan average
/// included.
pub fn segmentable(spec: &Spec, inputs: &[&[f64]]) -> Result<bool, GpuError> {
    if inputs.first().map_or(0, |x| x.len()) <= spec.lookback() {
        return Ok(true);
    }
    Ok(match family(spec, inputs)? {
        Family::Scans(_) => false,
        Family::Bands { ma, .. } => segmentable(&ma, inputs)?,
        _ => true,
    })
}

/// Bollinger bands around `middle` (full length, valid from the pass's first row): each piece
/// `[lo, hi)` uploads the input from the start of the grid block holding `lo - w + 1` and the
/// middle from the same row into the first output array, which `tx_moments` (BANDS) only reads.
fn bands<B: Backend>(
    be: &B,
    (w, up, down): (usize, f64, f64),
    x: &[f64],
    middle: &[f64],
    outs: &mut [&mut [f64]],
    rows: Rows,
    piece_rows: usize,
) -> Result<(), GpuError> {
    let halo = |lo: usize| grid_start(lo + 1 - w, 0, w);
    let (plan, cap) = plan_with_halo(rows, piece_rows, halo);
    let mut xb = be.alloc(cap)?;
    let mut bufs = alloc_n(be, 3, cap)?;
    for (lo, hi) in plan {
        let base = halo(lo);
        be.upload(&mut xb, &x[base..hi])?;
        be.upload(&mut bufs[0], &middle[base..hi])?;
        let args = MomentsArgs {
            x: xb.addr(),
            out0: bufs[0].addr(),
            out1: bufs[1].addr(),
            out2: bufs[2].addr(),
            sa1: bufs[1].addr(),
            sa2: bufs[2].addr(),
            base: base as i64,
            lo: lo as i64,
            hi: hi as i64,
            origin: 0,
            w: w as i64,
            mode: MOMENTS_BANDS,
            inv_w: 1.0 / w as f64,
            inv_denom: down,
            k: up,
        };
        be.launch(Kernel::Moments, grid_threads(lo, hi, 0, w), &args)?;
        for (out, buf) in outs.iter_mut().zip(&bufs[1..]) {
            download_rows(be, buf, base, (lo, hi), rows, out)?;
        }
    }
    Ok(())
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
            Window::Moments { mode, .. }
                if mode == MOMENTS_STD || mode == MOMENTS_ZSCORE || mode == MOMENTS_VAR =>
            {
                1
            }
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
    rows: Rows,
    piece_rows: usize,
) -> Result<(), GpuError> {
    let plan = pieces(rows.from, rows.to, piece_rows, 1, 0);
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
                    MOMENTS_SMA | MOMENTS_SUM => (addr_at(&bufs, 0), 0),
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
        let (a, b) = (lo - rows.out_base, hi - rows.out_base);
        for (out, buf) in outs.iter_mut().zip(&bufs) {
            be.download(buf, lo - base, &mut out[a..b])?;
        }
    }
    Ok(())
}

/// `tx_comoments` (CORREL mode) over two inputs: [`co_window`].
fn correl<B: Backend>(
    be: &B,
    w: usize,
    inputs: &[&[f64]],
    outs: &mut [&mut [f64]],
    rows: Rows,
    piece_rows: usize,
) -> Result<(), GpuError> {
    co_window(be, w, CO_CORREL, inputs, outs, rows, piece_rows)
}

/// `tx_elementwise`: each piece `[lo, hi)` uploads its inputs (in the op's order, TA-Lib's) from
/// row `lo - op.first_row()`, the earliest row its first output row reads.
fn elementwise<B: Backend>(
    be: &B,
    op: Op,
    inputs: &[&[f64]],
    outs: &mut [&mut [f64]],
    rows: Rows,
    piece_rows: usize,
) -> Result<(), GpuError> {
    let lag = op.first_row();
    let plan = pieces(rows.from, rows.to, piece_rows, 1, 0);
    let cap = plan
        .iter()
        .map(|&(lo, hi)| hi - (lo - lag))
        .max()
        .unwrap_or(0);
    let mut ins = alloc_n(be, op.inputs(), cap)?;
    let out = be.alloc(cap.max(1))?;
    for (lo, hi) in plan {
        let base = lo - lag;
        for (buf, x) in ins.iter_mut().zip(inputs) {
            be.upload(buf, &x[base..hi])?;
        }
        let args = ElementwiseArgs {
            a: addr_at(&ins, 0),
            b: addr_at(&ins, 1),
            c: addr_at(&ins, 2),
            d: addr_at(&ins, 3),
            out: out.addr(),
            base: base as i64,
            lo: lo as i64,
            hi: hi as i64,
            op: op as i64,
        };
        be.launch(Kernel::Elementwise, hi - lo, &args)?;
        let (a, b) = (lo - rows.out_base, hi - rows.out_base);
        be.download(&out, lo - base, &mut outs[0][a..b])?;
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
    rows: Rows,
    piece_rows: usize,
) -> Result<(), GpuError> {
    let (close, high, low) = (inputs[0], inputs[1], inputs[2]);
    let (ok, od) = (fk - 1, fk + sk - 2);
    // Rows each level needs for output rows from `lo`: slow %K from hd, fast %K from hk, prices from hx.
    let halos = |lo: usize| {
        let hd = grid_start(lo + 1 - sd, od, sd);
        let hk = grid_start(hd + 1 - sk, ok, sk);
        let hx = grid_start(hk + 1 - fk, 0, fk);
        (hd, hk, hx)
    };
    let plan = pieces(rows.from, rows.to, piece_rows, 1, 0);
    let cap = plan
        .iter()
        .map(|&(lo, hi)| hi - halos(lo).2)
        .max()
        .unwrap_or(0);
    let mut ins = alloc_n(be, 3, cap)?;
    let [hh, ll, kb, db] =
        <[B::Buf; 4]>::try_from(alloc_n(be, 4, cap)?).map_err(|_| GpuError::Alloc {
            call: "stoch",
            detail: "buffer allocation".into(),
        })?;
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
        let (a, b) = (lo - rows.out_base, hi - rows.out_base);
        be.download(&kb, lo - base, &mut outs[0][a..b])?;
        be.download(&db, lo - base, &mut outs[1][a..b])?;
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
    /// Rows before `t` the drive reads beyond the previous one (ZLEMA's lag, KAMA's period);
    /// the pieces' halo is the largest, at least 1.
    lag: usize,
    /// The finish's combination coefficients (T3's c1..c4).
    mix: [f64; 4],
    /// A third output (KC's lower band).
    out2: Out,
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
            lag: 0,
            mix: [0.0; 4],
            out2: Out::None,
        }
    }
}

impl Stage {
    /// The length of the state carried from block to block (KAMA's two channels carry one).
    fn carried(&self) -> usize {
        if self.mode == SCAN_KAMA {
            1
        } else {
            self.channels
        }
    }
}

/// Rows before a piece's first row that its scans read (the previous row, or the largest lag).
fn scan_halo(stages: &[Stage]) -> usize {
    stages.iter().map(|s| s.lag).max().unwrap_or(0).max(1)
}

/// Output buffers a scan needs: the indicator's outputs, and the scratch levels of chained stages
/// (written to outputs past the indicator's own, which are never downloaded).
fn scan_buffers(stages: &[Stage], outputs: usize) -> usize {
    let used = |o: &[Out]| {
        o.iter()
            .map(|o| match o {
                Out::User(j) => j + 1,
                Out::None => 0,
            })
            .max()
            .unwrap_or(0)
    };
    stages
        .iter()
        .map(|s| used(&[s.outs[0], s.outs[1], s.out2]))
        .fold(outputs, usize::max)
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
    // The first piece holds every seed row; later pieces start on a scan block and read one row back
    // (or the drive's lag).
    let plan = pieces(first, n, piece_rows, SCAN_BLOCK, lookback);
    let halo = scan_halo(stages);
    let cap = plan
        .iter()
        .map(|&(lo, hi)| hi - lo.saturating_sub(halo))
        .max()
        .unwrap_or(0);
    let max_blocks = plan
        .iter()
        .map(|&(lo, hi)| (hi - 1) / SCAN_BLOCK - lo / SCAN_BLOCK + 1)
        .max()
        .unwrap_or(0);
    let buffers = scan_buffers(stages, outs.len());
    let mut b = MemberBufs::alloc(be, inputs.len(), buffers, stages, cap, max_blocks)?;
    let mut carry: Vec<[f64; 2]> = stages.iter().map(|s| s.seed).collect();
    let (mut ends_host, mut carries_host) = (vec![0.0; 2 * max_blocks], vec![0.0; 2 * max_blocks]);
    for (lo, hi) in plan {
        let base = lo.saturating_sub(halo);
        for (buf, src) in b.ins.iter_mut().zip(inputs) {
            be.upload(buf, &src[base..hi])?;
        }
        for (si, st) in stages.iter().enumerate() {
            let args = b.args(st, si, base, cap, lo, hi);
            let from = lo.max(st.seed_row + 1);
            if from < hi {
                be.launch(Kernel::ScanDrive, hi - from, &args)?;
                let (k0, blocks) = (
                    from / SCAN_BLOCK,
                    (hi - 1) / SCAN_BLOCK - from / SCAN_BLOCK + 1,
                );
                let c = st.channels;
                be.launch(Kernel::ScanLocal, blocks * c, &args)?;
                be.download(&b.ends, 0, &mut ends_host[..blocks * c])?;
                st.chain(
                    &mut carry[si],
                    k0,
                    from,
                    hi,
                    &ends_host[..blocks * c],
                    &mut carries_host,
                );
                be.upload(&mut b.carries, &carries_host[..blocks * c])?;
            }
            if lo.max(st.seed_row) < hi {
                be.launch(Kernel::ScanFinish, hi - lo, &args)?;
            }
        }
        let from = lo.max(lookback);
        if from < hi {
            for (out, buf) in outs.iter_mut().zip(&b.outs) {
                be.download(buf, from - base, &mut out[from..hi])?;
            }
        }
    }
    Ok(())
}

/// Bollinger bands around a moving average (`spec` a [`Family::Bands`]) whose middle is already
/// in `outs[0]` (a batch computes a scan middle with [`scans_segments`] first): the bands pass of
/// [`run`] alone. `false`, with nothing done, for another family.
pub fn bands_around_middle<B: Backend>(
    be: &B,
    spec: &Spec,
    inputs: &[&[f64]],
    outs: &mut [&mut [f64]],
    piece_rows: usize,
) -> Result<bool, GpuError> {
    let n = inputs.first().map_or(0, |x| x.len());
    let lookback = spec.lookback();
    if n <= lookback {
        return Ok(true);
    }
    let Family::Bands { w, up, down, .. } = family(spec, inputs)? else {
        return Ok(false);
    };
    let rows = Rows {
        from: lookback,
        to: n,
        out_base: 0,
    };
    let (middle, bands_out) = outs.split_at_mut(1);
    bands(
        be,
        (w, up, down),
        inputs[0],
        &*middle[0],
        bands_out,
        rows,
        piece_rows.max(1),
    )?;
    Ok(true)
}

/// The scan families on every segment (`bounds[i]..bounds[i + 1]`) of `inputs` at once (a `by=`
/// batch; `be` holds the inputs resident, `cuda/batch.rs`): per stage one drive, one local-scan
/// and one fix-up launch for all segments (`tx_scan_*_seg`), one download of every block end and
/// one upload of every carry. Each segment keeps what [`run`] on it alone has: its stages from
/// the Rust builders on its own rows (its seeds, MACD's signal seed included), its blocks anchored
/// at its first row, and its carries chained on the host from its own seed. Writes rows
/// `bounds[i] + lookback..bounds[i + 1]` of the full-length `outs` (the others hold scratch).
/// Returns `false`, with nothing done, for another family, when all the rows do not fit in one
/// piece of `piece_rows`, or when the segments' stages differ in more than their seeds.
pub fn scans_segments<B: Backend>(
    be: &B,
    spec: &Spec,
    inputs: &[&[f64]],
    bounds: &[usize],
    outs: &mut [&mut [f64]],
    piece_rows: usize,
) -> Result<bool, GpuError> {
    let n = bounds.last().copied().unwrap_or(0);
    let lookback = spec.lookback();
    if n > piece_rows || bounds.len() < 2 {
        return Ok(false);
    }
    // Each long enough segment's stages (shorter ones have no output rows and get no threads).
    let mut per: Vec<Option<Vec<Stage>>> = Vec::with_capacity(bounds.len() - 1);
    for w in bounds.windows(2) {
        if w[1] - w[0] <= lookback {
            per.push(None);
            continue;
        }
        let seg: Vec<&[f64]> = inputs.iter().map(|x| &x[w[0]..w[1]]).collect();
        match family(spec, &seg)? {
            Family::Scans(stages) => per.push(Some(stages)),
            _ => return Ok(false),
        }
    }
    let Some(stages) = per.iter().flatten().next() else {
        // No segment has output rows: nothing to compute.
        return Ok(true);
    };
    if per
        .iter()
        .flatten()
        .any(|p| p.len() != stages.len() || p.iter().zip(stages).any(|(a, b)| !a.same_but_seeds(b)))
    {
        return Ok(false);
    }
    let lo = stages[0].seed_row;
    let base = lo.saturating_sub(scan_halo(stages));
    let cap = n - base;
    let lens: Vec<usize> = bounds.windows(2).map(|w| w[1] - w[0]).collect();
    // Blocks of a segment of `len` rows whose scan starts at row `from`.
    let blocks_of = |from: usize, len: usize| {
        if from < len {
            (len - 1) / SCAN_BLOCK - from / SCAN_BLOCK + 1
        } else {
            0
        }
    };
    let max_blocks = stages
        .iter()
        .map(|st| {
            let from = lo.max(st.seed_row + 1);
            lens.iter()
                .zip(&per)
                .filter(|(_, p)| p.is_some())
                .map(|(&len, _)| blocks_of(from, len))
                .sum::<usize>()
        })
        .max()
        .unwrap_or(0);
    let buffers = scan_buffers(stages, outs.len());
    let mut b = MemberBufs::alloc(be, inputs.len(), buffers, stages, cap, max_blocks)?;
    for (buf, src) in b.ins.iter_mut().zip(inputs) {
        be.upload(buf, &src[base..n])?;
    }
    let as_bits = |v: usize| f64::from_bits(v as u64);
    let upload = |v: &[f64]| -> Result<B::Buf, GpuError> {
        let mut buf = be.alloc(v.len())?;
        be.upload(&mut buf, v)?;
        Ok(buf)
    };
    let starts = upload(&bounds.iter().map(|&b| as_bits(b)).collect::<Vec<_>>())?;
    // Tables of the launches so far, kept until the outputs are down.
    let mut keep = Vec::new();
    let (mut ends_host, mut carries_host) = (vec![0.0; 2 * max_blocks], vec![0.0; 2 * max_blocks]);
    for (si, st) in stages.iter().enumerate() {
        let c = st.channels;
        let from = lo.max(st.seed_row + 1);
        // Per segment: first threads of the drive, the local scans and the fix-up, first block.
        let mut tables = [(); 4].map(|()| Vec::with_capacity(bounds.len()));
        let mut seeds = Vec::with_capacity(2 * lens.len());
        let mut at = [0usize; 4];
        for (&len, p) in lens.iter().zip(&per) {
            for (t, v) in tables.iter_mut().zip(at) {
                t.push(as_bits(v));
            }
            let Some(p) = p else {
                seeds.extend([0.0; 2]);
                continue;
            };
            seeds.extend(p[si].seed);
            let blocks = blocks_of(from, len);
            if blocks > 0 {
                at[0] += len - from;
                at[1] += blocks * c;
                at[3] += blocks;
            }
            if lo.max(st.seed_row) < len {
                at[2] += len - lo;
            }
        }
        for (t, v) in tables.iter_mut().zip(at) {
            t.push(as_bits(v));
        }
        let seeds_b = upload(&seeds)?;
        let blocks_b = upload(&tables[3])?;
        let args = b.args(st, si, base, cap, lo, n);
        let mut launch = |kernel: Kernel, table: &[f64], threads: usize| -> Result<(), GpuError> {
            if threads == 0 {
                return Ok(());
            }
            let first = upload(table)?;
            let g = ScanSeg {
                s: Seg {
                    a: args,
                    starts: starts.addr(),
                    first: first.addr(),
                    nseg: lens.len() as i64,
                },
                seeds: seeds_b.addr(),
                blocks: blocks_b.addr(),
            };
            keep.push(first);
            be.launch(kernel, threads, &g)
        };
        if at[3] > 0 {
            launch(Kernel::ScanDriveSeg, &tables[0], at[0])?;
            launch(Kernel::ScanLocalSeg, &tables[1], at[1])?;
            be.download(&b.ends, 0, &mut ends_host[..at[3] * c])?;
            let mut off = 0;
            for (&len, p) in lens.iter().zip(&per) {
                let blocks = blocks_of(from, len);
                let Some(p) = p.as_ref().filter(|_| blocks > 0) else {
                    continue;
                };
                let mut cur = p[si].seed;
                let rows = off * c..(off + blocks) * c;
                st.chain(
                    &mut cur,
                    from / SCAN_BLOCK,
                    from,
                    len,
                    &ends_host[rows.clone()],
                    &mut carries_host[rows],
                );
                off += blocks;
            }
            be.upload(&mut b.carries, &carries_host[..at[3] * c])?;
        }
        launch(Kernel::ScanFinishSeg, &tables[2], at[2])?;
        keep.extend([seeds_b, blocks_b]);
    }
    for (out, buf) in outs.iter_mut().zip(&b.outs) {
        be.download(buf, 0, &mut out[base..n])?;
    }
    Ok(true)
}

impl Stage {
    /// Whether `other` is this stage up to its seeds (a segment of a batch vs another).
    fn same_but_seeds(&self, other: &Stage) -> bool {
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        self.mode == other.mode
            && self.channels == other.channels
            && bits(&self.decay) == bits(&other.decay)
            && self.seed_row == other.seed_row
            && bits(&self.coef) == bits(&other.coef)
            && self.ins == other.ins
            && self.outs == other.outs
            && self.lag == other.lag
            && bits(&self.mix) == bits(&other.mix)
            && self.out2 == other.out2
    }
}

impl Stage {
    /// Chains the carries of blocks `k0..` (rows `from..hi`) from `cur`, exactly as scan.rs does:
    /// `carries[kk] = C(k)`, `C(k+1) = end(k) + a^len(k) · C(k)`; leaves the state after the last
    /// block in `cur`.
    fn chain(
        &self,
        cur: &mut [f64; 2],
        k0: usize,
        from: usize,
        hi: usize,
        ends: &[f64],
        carries: &mut [f64],
    ) {
        let c = self.channels;
        if self.mode == SCAN_KAMA {
            // The time-varying scan: ends are (A_end, L_end) pairs (varscan.rs chain_carries).
            let pairs: Vec<[f64; 2]> = ends.chunks_exact(2).map(|e| [e[0], e[1]]).collect();
            let chained = varscan::chain_carries(cur[0], &pairs);
            for (kk, carry) in chained.iter().take(pairs.len()).enumerate() {
                carries[2 * kk] = *carry;
                carries[2 * kk + 1] = 0.0;
            }
            cur[0] = chained[pairs.len()];
            return;
        }
        for kk in 0..ends.len() / c {
            let k = k0 + kk;
            let len = ((k + 1) * SCAN_BLOCK).min(hi) - (k * SCAN_BLOCK).max(from);
            for ch in 0..c {
                carries[kk * c + ch] = cur[ch];
                cur[ch] = ends[kk * c + ch] + self.powers[len * c + ch] * cur[ch];
            }
        }
    }
}

/// One device of a multi-device run: opens its backend on the calling thread and runs `body`.
pub type WithBackend<'a, B> =
    dyn Fn(usize, &mut dyn FnMut(&B) -> Result<(), GpuError>) -> Result<(), GpuError> + Sync + 'a;

/// What the members of a multi-device scan exchange between the local-scan and fix-up phases.
struct ScanExchange<'a> {
    barrier: std::sync::Barrier,
    failed: std::sync::atomic::AtomicBool,
    /// Per member: its first block and the local value at the end of each of its blocks.
    ends: std::sync::Mutex<Vec<(usize, Vec<f64>)>>,
    /// Per member: the carry into each of its blocks.
    carries: std::sync::Mutex<Vec<Vec<f64>>>,
    /// Each stage's state at the end of a prefix of the rows computed elsewhere (the CPU), in
    /// stage order; `None`: the members start from the seeds.
    carry_in: Option<&'a dyn CarrySource>,
    /// Seconds each member spent at the barriers.
    waited: std::sync::Mutex<Vec<f64>>,
    /// Barriers each member has passed, so one that leaves early can stand in for the rest.
    passes: Vec<std::sync::atomic::AtomicUsize>,
}

/// Where a multi-device scan gets the states a prefix computed elsewhere ends in: one per scan
/// stage, in stage order, each the carry into the first block after the prefix. Blocks until the
/// state is there; `None` when it never will be (the member then fails the run). The device-set
/// side implements it (`exec::devset::handoff`).
pub trait CarrySource: Sync {
    fn next_state(&self) -> Option<Vec<f64>>;
}

/// Rows `0..rows` computed elsewhere (the host members' share of a device set), and where that
/// computation's scan states come from.
pub struct Prefix<'a> {
    pub rows: usize,
    pub carries: &'a dyn CarrySource,
}

impl ScanExchange<'_> {
    /// Waits for every member; a member that failed still waits, so nobody deadlocks. The time
    /// spent waiting is not the member's work: it is subtracted from its busy time.
    fn wait(&self, me: usize) {
        let t = std::time::Instant::now();
        self.barrier.wait();
        if let Some(p) = self.passes.get(me) {
            p.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        if let Ok(mut w) = self.waited.lock() {
            if let Some(w) = w.get_mut(me) {
                *w += t.elapsed().as_secs_f64();
            }
        }
    }

    fn fail(&self) {
        self.failed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn failed(&self) -> bool {
        self.failed.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Held by each member thread of a multi-device scan for its whole life. When the member leaves
/// with barriers still ahead of it (its device never opened, it returned an error early, or it
/// panicked and is unwinding), this fails the exchange and waits out the barriers it had not
/// passed, so the other members are never left waiting for it.
struct StandIn<'e, 'a> {
    ex: &'e ScanExchange<'a>,
    me: usize,
    /// Barriers every member passes: two per scan stage, none for other families.
    total: usize,
}

impl Drop for StandIn<'_, '_> {
    fn drop(&mut self) {
        let passed = self
            .ex
            .passes
            .get(self.me)
            .map_or(self.total, |p| p.load(std::sync::atomic::Ordering::SeqCst));
        if passed < self.total {
            self.ex.fail();
            for _ in passed..self.total {
                self.ex.wait(self.me);
            }
        }
    }
}

/// Cuts `[from, to)` into one range per share (cuts on multiples of `align`, a zero share gets
/// no rows).
pub fn share_ranges(from: usize, to: usize, shares: &[f64], align: usize) -> Vec<(usize, usize)> {
    let total: f64 = shares.iter().filter(|s| s.is_finite() && **s > 0.0).sum();
    let last = shares
        .iter()
        .rposition(|s| *s > 0.0)
        .unwrap_or(shares.len().saturating_sub(1));
    let mut out = Vec::with_capacity(shares.len());
    let (mut at, mut acc) = (from, 0.0);
    for (i, s) in shares.iter().enumerate() {
        if s.is_finite() && *s > 0.0 {
            acc += s;
        }
        let cut = if i >= last || total <= 0.0 {
            to
        } else {
            let ideal = from as f64 + acc / total * (to - from) as f64;
            (((ideal / align as f64).round() as usize) * align).clamp(at, to)
        };
        out.push((at, cut));
        at = cut;
    }
    out
}

/// Computes `spec` across `shares.len()` devices at once, each on its own thread: rows are cut in
/// proportion to the shares; windowed indicators give each device its range and halo, recursive
/// ones run the local scans everywhere, chain the carries on the host in block order and then
/// fix up everywhere (per stage, so MACD's signal sees the finished MACD line). The output is
/// the single-device output, bit for bit. Returns each device's busy seconds (barrier waits
/// excluded). Windowed member `d` works in pieces of `piece_rows[d]` (one size per device, from
/// that device's free memory); a scan member holds its whole share on the device at once (its
/// carries must stay resident between the phases).
#[allow(clippy::too_many_arguments)]
pub fn run_multi<B: Backend>(
    with_backend: &WithBackend<'_, B>,
    spec: &Spec,
    inputs: &[&[f64]],
    outs: &mut [&mut [f64]],
    shares: &[f64],
    piece_rows: &[usize],
    prefix: Option<Prefix<'_>>,
) -> Result<Vec<f64>, GpuError> {
    let n = inputs.first().map_or(0, |x| x.len());
    let lookback = spec.lookback();
    let devices = shares.len();
    if piece_rows.len() != devices {
        return Err(GpuError::DeviceSet("one piece size per device is needed"));
    }
    if n <= lookback || devices == 0 {
        return Ok(vec![0.0; devices]);
    }
    let fam = family(spec, inputs)?;
    let (from, align) = match &fam {
        Family::Scans(stages) => (stages[0].seed_row, SCAN_BLOCK),
        _ => (lookback, 1),
    };
    let start = prefix.as_ref().map_or(0, |p| p.rows);
    let out_base = start;
    // Bands: the middle first, its own family across the set (taking the prefix's scan states),
    // then the bands pass over a full-length copy of it (rows before `start` are never read).
    let (mut middle_busy, mut middle) = (vec![0.0; devices], Vec::new());
    if let Family::Bands { ma, .. } = &fam {
        let again = prefix.as_ref().map(|p| Prefix {
            rows: p.rows,
            carries: p.carries,
        });
        middle_busy = run_multi(
            with_backend,
            ma,
            inputs,
            &mut outs[..1],
            shares,
            piece_rows,
            again,
        )?;
        middle = vec![0.0; n];
        middle[start..start + outs[0].len()].copy_from_slice(outs[0]);
    }
    let mut ranges = share_ranges(from.max(start), n, shares, align);
    // The first scan range must hold every seed row (MACD's signal seeds at the lookback).
    if let (Family::Scans(_), None) = (&fam, &prefix) {
        let need = (lookback + 1).div_ceil(SCAN_BLOCK) * SCAN_BLOCK;
        let first = ranges.iter().position(|r| r.1 > r.0).unwrap_or(0);
        if ranges[first].1 < need.min(n) {
            let moved = need.min(n);
            ranges[first].1 = moved;
            for r in ranges.iter_mut().skip(first + 1) {
                r.0 = r.0.max(moved);
                r.1 = r.1.max(moved);
            }
        }
    }
    // Disjoint output slices per device, from the first row each writes.
    let mut per_device: Vec<Vec<&mut [f64]>> = (0..devices).map(|_| Vec::new()).collect();
    for out in outs.iter_mut() {
        let mut rest: &mut [f64] = out;
        let mut at = out_base;
        for (d, &(lo, hi)) in ranges.iter().enumerate() {
            let lo_w = lo.max(lookback).min(hi);
            let (_, tail) = std::mem::take(&mut rest).split_at_mut(lo_w - at);
            let (mine, tail) = tail.split_at_mut(hi - lo_w);
            per_device[d].push(mine);
            rest = tail;
            at = hi;
        }
    }
    let exchange = ScanExchange {
        barrier: std::sync::Barrier::new(devices),
        failed: std::sync::atomic::AtomicBool::new(false),
        ends: std::sync::Mutex::new(vec![(0, Vec::new()); devices]),
        carries: std::sync::Mutex::new(vec![Vec::new(); devices]),
        carry_in: prefix.map(|p| p.carries),
        waited: std::sync::Mutex::new(vec![0.0; devices]),
        passes: (0..devices)
            .map(|_| std::sync::atomic::AtomicUsize::new(0))
            .collect(),
    };
    let barriers = match &fam {
        Family::Scans(stages) => stages.len() * 2,
        _ => 0,
    };
    let results: Vec<Result<f64, GpuError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = per_device
            .into_iter()
            .enumerate()
            .map(|(d, mut mine)| {
                let (fam, exchange, ranges, middle) = (&fam, &exchange, &ranges, &middle);
                scope.spawn(move || {
                    let _stand_in = StandIn {
                        ex: exchange,
                        me: d,
                        total: barriers,
                    };
                    let started = std::time::Instant::now();
                    let piece_rows = piece_rows[d].max(1);
                    let (lo, hi) = ranges[d];
                    let rows = Rows {
                        from: lo.max(lookback),
                        to: hi,
                        out_base: lo.max(lookback).min(hi),
                    };
                    let mut body = |be: &B| match fam {
                        Family::Window(op) if rows.from < rows.to => {
                            windowed(be, *op, inputs[0], &mut mine, rows, piece_rows)
                        }
                        Family::Correl(w) if rows.from < rows.to => {
                            correl(be, *w, inputs, &mut mine, rows, piece_rows)
                        }
                        Family::Stoch(fk, sk, sd) if rows.from < rows.to => {
                            stoch(be, inputs, (*fk, *sk, *sd), &mut mine, rows, piece_rows)
                        }
                        Family::Scans(stages) => scan_member(
                            be, inputs, stages, &mut mine, d, ranges, lookback, exchange,
                        ),
                        Family::Elementwise(op) if rows.from < rows.to => elementwise(
                            be,
                            *op,
                            &spec.talib_order(inputs),
                            &mut mine,
                            rows,
                            piece_rows,
                        ),
                        Family::Bands { w, up, down, .. } if rows.from < rows.to => bands(
                            be,
                            (*w, *up, *down),
                            inputs[0],
                            middle,
                            &mut mine[1..],
                            rows,
                            piece_rows,
                        ),
                        Family::Extrema { .. }
                        | Family::CoMoments { .. }
                        | Family::Trima(..)
                        | Family::Vwma(_)
                        | Family::Hma(_)
                        | Family::Copy
                            if rows.from < rows.to =>
                        {
                            composed(be, fam, inputs, &mut mine, rows, piece_rows)
                        }
                        _ => Ok(()),
                    };
                    let r = with_backend(d, &mut body);
                    r.map(|()| started.elapsed().as_secs_f64())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or(Err(GpuError::DeviceSet("a device thread panicked")))
            })
            .collect()
    });
    let waited = exchange
        .waited
        .lock()
        .map(|w| w.clone())
        .unwrap_or_default();
    results
        .into_iter()
        .enumerate()
        .map(|(d, r)| {
            r.map(|busy| (busy - waited.get(d).copied().unwrap_or(0.0)).max(0.0) + middle_busy[d])
        })
        .collect()
}

/// A scan's device buffers: inputs, outputs, drives/local scans (`l`, two channels), block ends,
/// carries and one power table per stage.
struct MemberBufs<Buf> {
    ins: Vec<Buf>,
    outs: Vec<Buf>,
    l: Buf,
    ends: Buf,
    carries: Buf,
    powers: Vec<Buf>,
}

impl<Buf: DeviceBuffer> MemberBufs<Buf> {
    fn alloc<B: Backend<Buf = Buf>>(
        be: &B,
        inputs: usize,
        outputs: usize,
        stages: &[Stage],
        cap: usize,
        max_blocks: usize,
    ) -> Result<Self, GpuError> {
        let mut powers = Vec::with_capacity(stages.len());
        for st in stages {
            let mut p = be.alloc(st.powers.len())?;
            be.upload(&mut p, &st.powers)?;
            powers.push(p);
        }
        Ok(MemberBufs {
            ins: alloc_n(be, inputs, cap)?,
            outs: alloc_n(be, outputs, cap)?,
            l: be.alloc(2 * cap)?,
            ends: be.alloc(2 * max_blocks.max(1))?,
            carries: be.alloc(2 * max_blocks.max(1))?,
            powers,
        })
    }

    /// The argument block of stage `si` for a piece `[lo, hi)` whose arrays start at row `base`.
    fn args(
        &self,
        st: &Stage,
        si: usize,
        base: usize,
        cap: usize,
        lo: usize,
        hi: usize,
    ) -> ScanArgs {
        let source = |i: In| match i {
            In::None => 0,
            In::Input(j) => addr_at(&self.ins, j),
            In::User(j) => addr_at(&self.outs, j),
        };
        let target = |o: Out| match o {
            Out::None => 0,
            Out::User(j) => addr_at(&self.outs, j),
        };
        ScanArgs {
            in0: source(st.ins[0]),
            in1: source(st.ins[1]),
            in2: source(st.ins[2]),
            l: self.l.addr(),
            ends: self.ends.addr(),
            carries: self.carries.addr(),
            powers: self.powers[si].addr(),
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
            lag: st.lag as i64,
            mix0: st.mix[0],
            mix1: st.mix[1],
            mix2: st.mix[2],
            mix3: st.mix[3],
            out2: target(st.out2),
        }
    }
}

/// One member's part of a multi-device scan: its range `ranges[me]` in one piece, every stage's
/// local scan, the exchange of block ends and carries, the fix-up, then its output rows. Every
/// member passes every barrier exactly twice per stage, failed or not, so none waits forever.
#[allow(clippy::too_many_arguments)]
fn scan_member<B: Backend>(
    be: &B,
    inputs: &[&[f64]],
    stages: &[Stage],
    outs: &mut [&mut [f64]],
    me: usize,
    ranges: &[(usize, usize)],
    lookback: usize,
    ex: &ScanExchange<'_>,
) -> Result<(), GpuError> {
    let (lo, hi) = ranges[me];
    let empty = lo >= hi;
    let base = lo.saturating_sub(scan_halo(stages));
    let cap = hi.saturating_sub(base).max(1);
    let blocks_max = if empty {
        1
    } else {
        (hi - 1) / SCAN_BLOCK - lo / SCAN_BLOCK + 1
    };
    let mut error: Option<GpuError> = None;
    let buffers = scan_buffers(stages, outs.len());
    let mut bufs = match MemberBufs::alloc(be, inputs.len(), buffers, stages, cap, blocks_max)
        .and_then(|mut b| {
            if !empty {
                for (buf, src) in b.ins.iter_mut().zip(inputs) {
                    be.upload(buf, &src[base..hi])?;
                }
            }
            Ok(b)
        }) {
        Ok(b) => Some(b),
        Err(e) => {
            ex.fail();
            error = Some(e);
            None
        }
    };
    for (si, st) in stages.iter().enumerate() {
        let c = st.channels;
        let from = lo.max(st.seed_row + 1);
        let active = !empty && from < hi;
        let k0 = from / SCAN_BLOCK;
        let blocks = if active {
            (hi - 1) / SCAN_BLOCK - k0 + 1
        } else {
            0
        };
        let args = bufs.as_ref().map(|b| b.args(st, si, base, cap, lo, hi));
        // Phase 1: local scans; block ends to the exchange.
        let mut ends_host = vec![0.0; blocks * c];
        if let (Some(args), Some(b)) = (&args, &bufs) {
            if active && !ex.failed() {
                let r = be
                    .launch(Kernel::ScanDrive, hi - from, args)
                    .and_then(|()| be.launch(Kernel::ScanLocal, blocks * c, args))
                    .and_then(|()| be.download(&b.ends, 0, &mut ends_host));
                if let Err(e) = r {
                    ex.fail();
                    error.get_or_insert(e);
                }
            }
        }
        if let Ok(mut e) = ex.ends.lock() {
            e[me] = (k0, ends_host);
        }
        ex.wait(me);
        // The first member chains every member's blocks in block order, from the seed, exactly
        // as scan.rs chains them.
        if me == 0 && !ex.failed() {
            let all = ex.ends.lock().map(|e| e.clone()).unwrap_or_default();
            let mut cur = st.seed;
            if let Some(source) = ex.carry_in {
                // The prefix's state after its last row (it holds every seed row).
                match source.next_state() {
                    Some(c) if c.len() == st.carried() => cur[..c.len()].copy_from_slice(&c),
                    _ => ex.fail(),
                }
            }
            let mut carries = vec![Vec::new(); all.len()];
            for (m, (k0m, ends_m)) in all.iter().enumerate() {
                let (lo_m, hi_m) = ranges[m];
                let mut mine = vec![0.0; ends_m.len()];
                st.chain(
                    &mut cur,
                    *k0m,
                    lo_m.max(st.seed_row + 1),
                    hi_m,
                    ends_m,
                    &mut mine,
                );
                carries[m] = mine;
            }
            if let Ok(mut slot) = ex.carries.lock() {
                *slot = carries;
            }
        }
        ex.wait(me);
        // Phase 2: carries in, fix-up and outputs (kept on the device for the next stage).
        if let (Some(args), Some(b)) = (&args, bufs.as_mut()) {
            if !empty && !ex.failed() {
                let mine = ex
                    .carries
                    .lock()
                    .map(|c| c.get(me).cloned().unwrap_or_default())
                    .unwrap_or_default();
                let mut r = Ok(());
                if active {
                    r = be.upload(&mut b.carries, &mine);
                }
                if r.is_ok() && lo.max(st.seed_row) < hi {
                    r = be.launch(Kernel::ScanFinish, hi - lo, args);
                }
                if let Err(e) = r {
                    ex.fail();
                    error.get_or_insert(e);
                }
            }
        }
    }
    let from = lo.max(lookback);
    if let Some(b) = &bufs {
        if !empty && from < hi && error.is_none() && !ex.failed() {
            for (out, buf) in outs.iter_mut().zip(&b.outs) {
                be.download(buf, from - base, &mut out[..hi - from])?;
            }
        }
    }
    match error {
        Some(e) => Err(e),
        None if ex.failed() => Err(GpuError::DeviceSet("another device of the set failed")),
        None => Ok(()),
    }
}

/// The families whose pieces chain several windowed launches over one halo: extrema with their
/// midpoint, the derived co-moments, TRIMA, VWMA, HMA (and the period-1 copy).
fn composed<B: Backend>(
    be: &B,
    fam: &Family,
    inputs: &[&[f64]],
    outs: &mut [&mut [f64]],
    rows: Rows,
    piece_rows: usize,
) -> Result<(), GpuError> {
    match *fam {
        Family::Extrema {
            w,
            inputs: ins,
            outs: which,
        } => extrema(
            be,
            w,
            [inputs[ins[0]], inputs[ins[1]]],
            which,
            outs,
            rows,
            piece_rows,
        ),
        Family::CoMoments { w, mode, angle } => {
            co_window(be, w, mode, inputs, outs, rows, piece_rows)?;
            if angle {
                let (a, b) = (rows.from - rows.out_base, rows.to - rows.out_base);
                outs[0][a..b]
                    .iter_mut()
                    .for_each(|v| *v = canon(angle_of(*v)));
            }
            Ok(())
        }
        Family::Trima(b, a) => trima(be, (b, a), inputs[0], outs, rows, piece_rows),
        Family::Vwma(p) => vwma(be, p, [inputs[0], inputs[1]], outs, rows, piece_rows),
        Family::Hma(p) => hma(be, p, inputs[0], outs, rows, piece_rows),
        Family::Copy => copy(be, inputs[0], outs, rows, piece_rows),
        // Run by their own arms in `run` and `run_multi`.
        Family::Window(_)
        | Family::Correl(_)
        | Family::Stoch(..)
        | Family::Scans(_)
        | Family::Elementwise(_)
        | Family::Bands { .. } => Ok(()),
    }
}

/// The pieces of `rows` and the longest upload one of them needs (from `halo(lo)` to `hi`).
fn plan_with_halo(
    rows: Rows,
    piece_rows: usize,
    halo: impl Fn(usize) -> usize,
) -> (Vec<(usize, usize)>, usize) {
    let plan = pieces(rows.from, rows.to, piece_rows, 1, 0);
    let cap = plan
        .iter()
        .map(|&(lo, hi)| hi - halo(lo))
        .max()
        .unwrap_or(0);
    (plan, cap.max(1))
}

/// Downloads rows `[lo, hi)` of `buf` (whose element 0 is row `base`) into `out`.
fn download_rows<B: Backend>(
    be: &B,
    buf: &B::Buf,
    base: usize,
    (lo, hi): (usize, usize),
    rows: Rows,
    out: &mut [f64],
) -> Result<(), GpuError> {
    be.download(
        buf,
        lo - base,
        &mut out[lo - rows.out_base..hi - rows.out_base],
    )
}

/// `tx_moments` SMA of `src` into `dst` for rows `[lo, hi)` on the grid of `w` rows from `origin`
/// (arrays start at row `base`; the suffix sums live in `dst`).
#[allow(clippy::too_many_arguments)]
fn launch_sma<B: Backend>(
    be: &B,
    src: &B::Buf,
    dst: &B::Buf,
    base: usize,
    (lo, hi): (usize, usize),
    origin: usize,
    w: usize,
) -> Result<(), GpuError> {
    let args = MomentsArgs {
        x: src.addr(),
        out0: dst.addr(),
        sa1: dst.addr(),
        base: base as i64,
        lo: lo as i64,
        hi: hi as i64,
        origin: origin as i64,
        w: w as i64,
        mode: MOMENTS_SMA,
        inv_w: 1.0 / w as f64,
        ..Default::default()
    };
    be.launch(Kernel::Moments, grid_threads(lo, hi, origin, w), &args)
}

/// `tx_wma` of `src` into `dst` for rows `[lo, hi)` on the grid of `w` rows from `origin`. The
/// kernel's grid starts at its row 0, so rows are handed over shifted by `origin` (every array
/// index `t - base` is unchanged).
fn launch_wma<B: Backend>(
    be: &B,
    src: &B::Buf,
    dst: &B::Buf,
    base: usize,
    (lo, hi): (usize, usize),
    origin: usize,
    w: usize,
) -> Result<(), GpuError> {
    let shift = |r: usize| r as i64 - origin as i64;
    let args = WmaArgs {
        x: src.addr(),
        out: dst.addr(),
        aw: dst.addr(),
        base: shift(base),
        lo: shift(lo),
        hi: shift(hi),
        w: w as i64,
        denom: (w * (w + 1) / 2) as f64,
    };
    be.launch(Kernel::Wma, grid_threads(lo, hi, origin, w), &args)
}

/// `tx_elementwise` `op` of `a`, `b` into `dst` (may alias an input) for rows `[lo, hi)`.
fn launch_map<B: Backend>(
    be: &B,
    op: Op,
    [a, b]: [&B::Buf; 2],
    dst: &B::Buf,
    base: usize,
    (lo, hi): (usize, usize),
) -> Result<(), GpuError> {
    let args = ElementwiseArgs {
        a: a.addr(),
        b: b.addr(),
        out: dst.addr(),
        base: base as i64,
        lo: lo as i64,
        hi: hi as i64,
        op: op as i64,
        ..Default::default()
    };
    be.launch(Kernel::Elementwise, hi - lo, &args)
}

/// MAX, MIN, MINMAX, MIDPOINT, MIDPRICE, DONCHIAN: each piece uploads `high` (and `low` when it
/// is another series) from the grid block holding `lo - w + 1`, runs the extrema it needs and
/// the midpoint `(hh + ll) / 2.0` (extrema.rs `mid`, the median price's operations).
#[allow(clippy::too_many_arguments)]
fn extrema<B: Backend>(
    be: &B,
    w: usize,
    [high, low]: [&[f64]; 2],
    which: &[Extreme],
    outs: &mut [&mut [f64]],
    rows: Rows,
    piece_rows: usize,
) -> Result<(), GpuError> {
    let halo = |lo: usize| grid_start(lo + 1 - w, 0, w);
    let (plan, cap) = plan_with_halo(rows, piece_rows, halo);
    let one_input = std::ptr::eq(high, low);
    let mid = which.contains(&Extreme::Mid);
    let need_max = mid || which.contains(&Extreme::Max);
    let need_min = mid || which.contains(&Extreme::Min);
    let mut ins = alloc_n(be, if one_input { 1 } else { 2 }, cap)?;
    let [hh, ll, mb] = alloc_3(be, cap, "extrema")?;
    for (lo, hi) in plan {
        let base = halo(lo);
        be.upload(&mut ins[0], &high[base..hi])?;
        if !one_input {
            be.upload(&mut ins[1], &low[base..hi])?;
        }
        let low_in = &ins[ins.len() - 1];
        for (need, src, dst, is_max) in [(need_max, &ins[0], &hh, 1), (need_min, low_in, &ll, 0)] {
            if !need {
                continue;
            }
            let args = ExtremaArgs {
                x: src.addr(),
                out: dst.addr(),
                suf: dst.addr(),
                base: base as i64,
                lo: lo as i64,
                hi: hi as i64,
                w: w as i64,
                is_max,
            };
            be.launch(Kernel::Extrema, grid_threads(lo, hi, 0, w), &args)?;
        }
        if mid {
            launch_map(be, Op::MedPrice, [&hh, &ll], &mb, base, (lo, hi))?;
        }
        for (out, e) in outs.iter_mut().zip(which) {
            let buf = match e {
                Extreme::Max => &hh,
                Extreme::Min => &ll,
                Extreme::Mid => &mb,
            };
            download_rows(be, buf, base, (lo, hi), rows, out)?;
        }
    }
    Ok(())
}

/// Three buffers of `len` elements.
fn alloc_3<B: Backend>(be: &B, len: usize, call: &'static str) -> Result<[B::Buf; 3], GpuError> {
    <[B::Buf; 3]>::try_from(alloc_n(be, 3, len)?).map_err(|_| GpuError::Alloc {
        call,
        detail: "buffer allocation".into(),
    })
}

/// `tx_comoments` in `mode`, one output: each piece `[lo, hi)` uploads its inputs from the start
/// of the grid block holding `lo - w + 1` (BETA's returns one row earlier); the five suffix sums
/// live in scratch buffers. The LINEARREG modes read only the price (their `x` is the row index).
fn co_window<B: Backend>(
    be: &B,
    w: usize,
    mode: i64,
    inputs: &[&[f64]],
    outs: &mut [&mut [f64]],
    rows: Rows,
    piece_rows: usize,
) -> Result<(), GpuError> {
    let back = usize::from(mode == CO_BETA);
    let halo = |lo: usize| grid_start(lo + 1 - w, 0, w).saturating_sub(back);
    let (plan, cap) = plan_with_halo(rows, piece_rows, halo);
    let linreg = (CO_LINREG_VALUE..=CO_LINREG_TSF).contains(&mode);
    let (x, y) = if linreg {
        (None, inputs[0])
    } else {
        (Some(inputs[0]), inputs[1])
    };
    let (mut xb, mut yb) = (be.alloc(if linreg { 1 } else { cap })?, be.alloc(cap)?);
    let out = be.alloc(cap)?;
    let s = alloc_n(be, 5, cap)?;
    for (lo, hi) in plan {
        let base = halo(lo);
        if let Some(x) = x {
            be.upload(&mut xb, &x[base..hi])?;
        }
        be.upload(&mut yb, &y[base..hi])?;
        let args = CoMomentsArgs {
            x: xb.addr(),
            y: yb.addr(),
            out0: out.addr(),
            s0: addr_at(&s, 0),
            s1: addr_at(&s, 1),
            s2: addr_at(&s, 2),
            s3: addr_at(&s, 3),
            s4: addr_at(&s, 4),
            base: base as i64,
            lo: lo as i64,
            hi: hi as i64,
            origin: 0,
            w: w as i64,
            mode,
            inv_w: 1.0 / w as f64,
            ..Default::default()
        };
        be.launch(Kernel::CoMoments, grid_threads(lo, hi, 0, w), &args)?;
        download_rows(be, &out, base, (lo, hi), rows, outs[0])?;
    }
    Ok(())
}

/// TRIMA (ma.rs): SMA_b of the input on the grid from row 0, then SMA_a of that on the grid from
/// its first row `b - 1`; each level on the rows the next level's halo needs.
fn trima<B: Backend>(
    be: &B,
    (b, a): (usize, usize),
    x: &[f64],
    outs: &mut [&mut [f64]],
    rows: Rows,
    piece_rows: usize,
) -> Result<(), GpuError> {
    let origin = b - 1;
    let halos = |lo: usize| {
        let h1 = grid_start(lo + 1 - a, origin, a);
        (h1, grid_start(h1 + 1 - b, 0, b))
    };
    let (plan, cap) = plan_with_halo(rows, piece_rows, |lo| halos(lo).1);
    let [mut xb, s1, out] = alloc_3(be, cap, "trima")?;
    for (lo, hi) in plan {
        let (h1, base) = halos(lo);
        be.upload(&mut xb, &x[base..hi])?;
        launch_sma(be, &xb, &s1, base, (h1, hi), 0, b)?;
        launch_sma(be, &s1, &out, base, (lo, hi), origin, a)?;
        download_rows(be, &out, base, (lo, hi), rows, outs[0])?;
    }
    Ok(())
}

/// VWMA (ma.rs): `x·v` (`tx_elementwise` MUL) from the halo on, the SMAs of it and of `v` (grid
/// from row 0), then their quotient (DIV).
fn vwma<B: Backend>(
    be: &B,
    p: usize,
    [x, v]: [&[f64]; 2],
    outs: &mut [&mut [f64]],
    rows: Rows,
    piece_rows: usize,
) -> Result<(), GpuError> {
    let halo = |lo: usize| grid_start(lo + 1 - p, 0, p);
    let (plan, cap) = plan_with_halo(rows, piece_rows, halo);
    let [mut xb, mut vb, pv] = alloc_3(be, cap, "vwma")?;
    let (sv, spv) = (be.alloc(cap)?, be.alloc(cap)?);
    for (lo, hi) in plan {
        let base = halo(lo);
        be.upload(&mut xb, &x[base..hi])?;
        be.upload(&mut vb, &v[base..hi])?;
        launch_map(be, Op::Mul, [&xb, &vb], &pv, base, (base, hi))?;
        // Inputs are only read: in a batch they are views of the resident columns (cuda/batch.rs).
        launch_sma(be, &pv, &spv, base, (lo, hi), 0, p)?;
        launch_sma(be, &vb, &sv, base, (lo, hi), 0, p)?;
        launch_map(be, Op::Div, [&spv, &sv], &spv, base, (lo, hi))?;
        download_rows(be, &spv, base, (lo, hi), rows, outs[0])?;
    }
    Ok(())
}

/// HMA (ma.rs): WMA_p and WMA_{p/2} of the input (grid from row 0) on the rows the last level
/// needs, `d = 2·half - full` (as `half + half`, exact, then SUB: the bits of `2.0 * half`), then
/// WMA_s of `d` on the grid from row `p - 1`.
fn hma<B: Backend>(
    be: &B,
    p: usize,
    x: &[f64],
    outs: &mut [&mut [f64]],
    rows: Rows,
    piece_rows: usize,
) -> Result<(), GpuError> {
    let (h, s, origin) = (p / 2, ma::isqrt(p), p - 1);
    let halos = |lo: usize| {
        let hd = grid_start(lo + 1 - s, origin, s);
        let hx = grid_start(hd + 1 - p, 0, p).min(grid_start(hd + 1 - h, 0, h));
        (hd, hx)
    };
    let (plan, cap) = plan_with_halo(rows, piece_rows, |lo| halos(lo).1);
    let [mut xb, full, half] = alloc_3(be, cap, "hma")?;
    let out = be.alloc(cap)?;
    for (lo, hi) in plan {
        let (hd, base) = halos(lo);
        be.upload(&mut xb, &x[base..hi])?;
        launch_wma(be, &xb, &full, base, (hd, hi), 0, p)?;
        launch_wma(be, &xb, &half, base, (hd, hi), 0, h)?;
        launch_map(be, Op::Add, [&half, &half], &half, base, (hd, hi))?;
        launch_map(be, Op::Sub, [&half, &full], &half, base, (hd, hi))?;
        launch_wma(be, &half, &out, base, (lo, hi), origin, s)?;
        download_rows(be, &out, base, (lo, hi), rows, outs[0])?;
    }
    Ok(())
}

/// A period-1 moving average (TA-Lib copies the input): each piece goes up and comes back, and
/// its NaNs become the canonical one on the host, as the CPU's copy writes them.
fn copy<B: Backend>(
    be: &B,
    x: &[f64],
    outs: &mut [&mut [f64]],
    rows: Rows,
    piece_rows: usize,
) -> Result<(), GpuError> {
    let (plan, cap) = plan_with_halo(rows, piece_rows, |lo| lo);
    let mut xb = be.alloc(cap)?;
    for (lo, hi) in plan {
        be.upload(&mut xb, &x[lo..hi])?;
        download_rows(be, &xb, lo, (lo, hi), rows, outs[0])?;
        let back = &mut outs[0][lo - rows.out_base..hi - rows.out_base];
        back.iter_mut().for_each(|v| *v = canon(*v));
    }
    Ok(())
}
