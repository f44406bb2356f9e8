//! A batch on one GPU (`by=` segments laid end to end, several parameter sets of one indicator):
//! every input column goes up once, whole, and every parameter set runs against that one device
//! copy: all its segments at once when the rows fit in one piece (below), else each segment
//! through the single-series pipeline ([`pipeline::run`]).
//!
//! [`Resident`] is the backend the pipeline sees: its `upload` of rows that lie inside a resident
//! input column moves no data but points the buffer at those rows of the device copy (a device
//! pointer offset), so a segment's pieces and halos read the rows the single-series path would
//! have uploaded, at the same offsets from the buffer's element 0. Anything else (the middle band
//! of Bollinger-on-MA, powers, carries) is uploaded as usual. Each segment keeps its own grid,
//! scan blocks and pieces (anchored at its first row), so its bits are those of the segment alone.
//!
//! When all the rows fit in one piece, each kernel launch covers every segment: every kernel an
//! indicator launches has a segmented twin (`TxSeg` in `common.cuh`) whose thread `i` finds its
//! segment in a table of first threads and runs the single-series body on that segment alone.
//! - The families without per-segment state (moving moments: SMA, SUM, rolling std/var, z-score,
//!   Bollinger, AVGDEV; WMA, ROC, STOCH, MAX/MIN/MINMAX/MIDPOINT/MIDPRICE/DONCHIAN, TRIMA, VWMA,
//!   HMA, CORREL, the LINEARREG family, BETA, the elementwise indicators, Bollinger-on-MA around
//!   a windowed average, period-1 averages) run the pipeline once over the whole concatenation
//!   through [`Segmented`], which turns each launch into its twin's ([`Kernel::segmented`]).
//! - The scan families (EMA, RMA, RSI, ATR, NATR, OBV, cumsum, MACD, DEMA, TEMA, T3, ZLEMA, KAMA,
//!   KC) run [`pipeline::scans_segments`]: per stage one drive, one local-scan and one fix-up
//!   launch for all segments, each with its own seeds and carries.
//! - Bollinger bands around a scan average: the middle through [`pipeline::scans_segments`], then
//!   the bands through [`Segmented`] ([`pipeline::bands_around_middle`]).
//!
//! Still per segment and per piece: any batch whose rows need several pieces (and, as a guard, a
//! scan whose segments' stages would differ in more than their seeds).
//!
//! The sequential state machines (`kernels::sequential`) cannot be cut, so they take one thread
//! per segment: [`run_machine_batch`] runs every segment in one launch of `tx_machine_seg`.

use super::args::{Kernel, KernelArgs, MachineArgs, Seg};
use super::error::GpuError;
use super::pipeline::{self, Backend, DeviceBuffer};
use crate::kernels::Spec;

/// A buffer of [`Resident`]: its own device array, or a view of rows of a resident input.
pub struct ResidentBuf<Buf> {
    own: Buf,
    /// (resident column, first row, device address of that row) while the buffer is a view.
    view: Option<(usize, usize, u64)>,
}

impl<Buf: DeviceBuffer> DeviceBuffer for ResidentBuf<Buf> {
    fn addr(&self) -> u64 {
        self.view.map_or_else(|| self.own.addr(), |v| v.2)
    }
}

/// `be` with `columns` resident on the device (see the module doc).
pub struct Resident<'a, B: Backend> {
    be: &'a B,
    columns: Vec<(&'a [f64], B::Buf)>,
}

impl<'a, B: Backend> Resident<'a, B> {
    /// Uploads each column once, whole.
    pub fn new(be: &'a B, columns: &[&'a [f64]]) -> Result<Self, GpuError> {
        let columns = columns
            .iter()
            .map(|&c| {
                let mut buf = be.alloc(c.len().max(1))?;
                be.upload(&mut buf, c)?;
                Ok((c, buf))
            })
            .collect::<Result<_, GpuError>>()?;
        Ok(Resident { be, columns })
    }

    /// The resident column holding all of `src`, and the row `src` starts at.
    fn find(&self, src: &[f64]) -> Option<(usize, usize)> {
        if src.is_empty() {
            return None;
        }
        let start = src.as_ptr() as usize;
        let end = start + std::mem::size_of_val(src);
        self.columns.iter().enumerate().find_map(|(i, (c, _))| {
            let lo = c.as_ptr() as usize;
            let hi = lo + std::mem::size_of_val(*c);
            (lo <= start && end <= hi).then(|| (i, (start - lo) / std::mem::size_of::<f64>()))
        })
    }
}

impl<B: Backend> Backend for Resident<'_, B> {
    type Buf = ResidentBuf<B::Buf>;

    fn alloc(&self, len: usize) -> Result<Self::Buf, GpuError> {
        Ok(ResidentBuf {
            own: self.be.alloc(len)?,
            view: None,
        })
    }

    fn upload(&self, dst: &mut Self::Buf, src: &[f64]) -> Result<(), GpuError> {
        if let Some((col, row)) = self.find(src) {
            let addr = self.columns[col].1.addr() + (row * std::mem::size_of::<f64>()) as u64;
            dst.view = Some((col, row, addr));
            return Ok(());
        }
        dst.view = None;
        self.be.upload(&mut dst.own, src)
    }

    fn download(&self, src: &Self::Buf, at: usize, dst: &mut [f64]) -> Result<(), GpuError> {
        match src.view {
            Some((col, row, _)) => self.be.download(&self.columns[col].1, row + at, dst),
            None => self.be.download(&src.own, at, dst),
        }
    }

    fn launch<A: KernelArgs>(
        &self,
        kernel: Kernel,
        threads: usize,
        args: &A,
    ) -> Result<(), GpuError> {
        self.be.launch(kernel, threads, args)
    }
}

/// [`Resident`] running every launch on all the segments of a batch at once: each launch the
/// pipeline makes for the whole concatenation (one piece, rows from the lookback on) becomes its
/// kernel's segmented twin ([`Kernel::segmented`], `TxSeg` in `common.cuh`), which gives every
/// segment the rows, grid and halos of a launch on it alone. Segments no longer than the lookback
/// get no threads (they have no output rows).
struct Segmented<'r, 'a, B: Backend> {
    res: &'r Resident<'a, B>,
    bounds: &'r [usize],
    lookback: usize,
    /// `bounds` on the device (int64).
    starts: B::Buf,
    /// Each launch's table of first threads, kept until the batch's outputs are down.
    tables: std::cell::RefCell<Vec<B::Buf>>,
}

/// An int64 array on the device travels as the f64s of the same bits.
fn as_bits(v: usize) -> f64 {
    f64::from_bits(v as u64)
}

impl<'r, 'a, B: Backend> Segmented<'r, 'a, B> {
    fn new(
        res: &'r Resident<'a, B>,
        bounds: &'r [usize],
        lookback: usize,
    ) -> Result<Self, GpuError> {
        let starts: Vec<f64> = bounds.iter().map(|&b| as_bits(b)).collect();
        let mut buf = res.be.alloc(starts.len())?;
        res.be.upload(&mut buf, &starts)?;
        Ok(Segmented {
            res,
            bounds,
            lookback,
            starts: buf,
            tables: std::cell::RefCell::new(Vec::new()),
        })
    }
}

impl<B: Backend> Backend for Segmented<'_, '_, B> {
    type Buf = ResidentBuf<B::Buf>;

    fn alloc(&self, len: usize) -> Result<Self::Buf, GpuError> {
        self.res.alloc(len)
    }

    fn upload(&self, dst: &mut Self::Buf, src: &[f64]) -> Result<(), GpuError> {
        self.res.upload(dst, src)
    }

    fn download(&self, src: &Self::Buf, at: usize, dst: &mut [f64]) -> Result<(), GpuError> {
        self.res.download(src, at, dst)
    }

    fn launch<A: KernelArgs>(
        &self,
        kernel: Kernel,
        _threads: usize,
        args: &A,
    ) -> Result<(), GpuError> {
        let no_twin = || GpuError::Launch {
            kernel: kernel.name(),
            detail: "no segmented twin".into(),
        };
        let twin = kernel.segmented().ok_or_else(no_twin)?;
        let total = self.bounds.last().copied().unwrap_or(0);
        let mut first = Vec::with_capacity(self.bounds.len());
        let mut threads = 0;
        for seg in self.bounds.windows(2) {
            first.push(as_bits(threads));
            let len = seg[1] - seg[0];
            if len > self.lookback {
                // The launch's `hi` is the concatenation's end; the segment's is `len`.
                threads += args
                    .segment_threads((total - len) as i64)
                    .ok_or_else(no_twin)?;
            }
        }
        first.push(as_bits(threads));
        if threads == 0 {
            return Ok(());
        }
        let mut table = self.res.be.alloc(first.len())?;
        self.res.be.upload(&mut table, &first)?;
        let seg = Seg {
            a: *args,
            starts: self.starts.addr(),
            first: table.addr(),
            nseg: (self.bounds.len() - 1) as i64,
        };
        self.tables.borrow_mut().push(table);
        self.res.be.launch(twin, threads, &seg)
    }
}

/// Every segment of `spec` at once: a family without per-segment state through [`Segmented`]
/// ([`pipeline::run`] over the whole concatenation in one piece), a scan family through
/// [`pipeline::scans_segments`], into full-length host arrays from which each segment's rows from
/// its lookback on are copied to `outs` (the rows before stay the caller's), then [`Spec::finish`]
/// per segment, as a single call does. `false`, with nothing written, when the segments must run
/// one by one.
fn all_segments<B: Backend>(
    res: &Resident<'_, B>,
    spec: &Spec,
    inputs: &[&[f64]],
    bounds: &[usize],
    outs: &mut [&mut [f64]],
    piece_rows: usize,
) -> Result<bool, GpuError> {
    let n = bounds.last().copied().unwrap_or(0);
    let lookback = spec.lookback();
    let mut whole = vec![vec![0.0; n]; outs.len()];
    {
        let mut w: Vec<&mut [f64]> = whole.iter_mut().map(|v| v.as_mut_slice()).collect();
        let done = if pipeline::segmentable(spec, inputs)? {
            let seg = Segmented::new(res, bounds, lookback)?;
            pipeline::run(&seg, spec, inputs, &mut w, piece_rows)?;
            true
        } else if let Spec::BollingerMa { period, matype, .. } = *spec {
            // A scan middle, then the windowed bands around it, each over all segments at once.
            let ma = Spec::Ma { period, matype };
            pipeline::scans_segments(res, &ma, inputs, bounds, &mut w[..1], piece_rows)? && {
                let seg = Segmented::new(res, bounds, lookback)?;
                pipeline::bands_around_middle(&seg, spec, inputs, &mut w, piece_rows)?
            }
        } else {
            pipeline::scans_segments(res, spec, inputs, bounds, &mut w, piece_rows)?
        };
        if !done {
            return Ok(false);
        }
    }
    for (out, whole) in outs.iter_mut().zip(&whole) {
        for s in bounds.windows(2) {
            if s[1] - s[0] > lookback {
                let rows = s[0] + lookback..s[1];
                out[rows.clone()].copy_from_slice(&whole[rows]);
            }
        }
    }
    for s in bounds.windows(2) {
        let mut out: Vec<&mut [f64]> = outs.iter_mut().map(|o| &mut o[s[0]..s[1]]).collect();
        spec.finish(&mut out);
    }
    Ok(true)
}

/// Computes every call of `specs` on every segment (`bounds[i]..bounds[i + 1]`) of `inputs` into
/// `outs[call]`, with the inputs uploaded once: each segment's rows from its lookback on are those
/// of [`pipeline::run`] on that segment alone (then [`Spec::finish`], as a single call does).
/// `piece_rows(spec)`: the piece size of `spec`, asked once the inputs are resident.
pub fn run_batch<B: Backend>(
    be: &B,
    specs: &[Spec],
    inputs: &[&[f64]],
    bounds: &[usize],
    outs: &mut [Vec<&mut [f64]>],
    mut piece_rows: impl FnMut(&Spec) -> Result<usize, GpuError>,
) -> Result<(), GpuError> {
    let resident = Resident::new(be, inputs)?;
    let n = bounds.last().copied().unwrap_or(0);
    for (spec, call) in specs.iter().zip(outs.iter_mut()) {
        let rows = piece_rows(spec)?;
        if bounds.len() >= 2
            && n <= rows
            && all_segments(&resident, spec, inputs, bounds, call, rows)?
        {
            continue;
        }
        for w in bounds.windows(2) {
            let seg: Vec<&[f64]> = inputs.iter().map(|x| &x[w[0]..w[1]]).collect();
            let mut out: Vec<&mut [f64]> = call.iter_mut().map(|o| &mut o[w[0]..w[1]]).collect();
            pipeline::run(&resident, spec, &seg, &mut out, rows)?;
            spec.finish(&mut out);
        }
    }
    Ok(())
}

/// A sequential state machine (`kernels::sequential`; `machine` one of `args::MACHINE_*`) on
/// every segment (`bounds[i]..bounds[i + 1]`) of a batch in one launch of `tx_machine_seg`, one
/// thread per segment: each input goes up once, whole, and each output comes down once. Each
/// segment's rows from `first_row` rows after its start on get the bits of `run_machine` on that
/// segment alone; the rows before stay the caller's.
pub fn run_machine_batch<B: Backend>(
    be: &B,
    machine: i64,
    inputs: [&[f64]; 2],
    bounds: &[usize],
    first_row: usize,
    outs: [&mut [f64]; 2],
) -> Result<(), GpuError> {
    let n = bounds.last().copied().unwrap_or(0);
    let nseg = bounds.len().saturating_sub(1);
    let well_formed = bounds.first().is_none_or(|&b| b == 0)
        && bounds.windows(2).all(|w| w[0] <= w[1])
        && inputs.iter().all(|x| x.len() == n)
        && outs.iter().all(|o| o.len() == n);
    if !well_formed {
        return Err(GpuError::Launch {
            kernel: Kernel::MachineSeg.name(),
            detail: format!(
                "segment bounds must rise from 0 to the {n} rows of every input and output"
            ),
        });
    }
    if nseg == 0 || n == 0 {
        return Ok(());
    }
    let [x0, x1] = inputs;
    let (mut in0, mut in1) = (be.alloc(n)?, be.alloc(n)?);
    be.upload(&mut in0, x0)?;
    be.upload(&mut in1, x1)?;
    let starts: Vec<f64> = bounds.iter().map(|&b| as_bits(b)).collect();
    let mut starts_buf = be.alloc(starts.len())?;
    be.upload(&mut starts_buf, &starts)?;
    let (out0, out1) = (be.alloc(n)?, be.alloc(n)?);
    let args = MachineArgs {
        in0: in0.addr(),
        in1: in1.addr(),
        out0: out0.addr(),
        out1: out1.addr(),
        starts: starts_buf.addr(),
        nseg: nseg as i64,
        first_row: first_row as i64,
        machine,
    };
    be.launch(Kernel::MachineSeg, nseg, &args)?;
    let mut whole = vec![0.0; n];
    for (out, dev) in outs.into_iter().zip([&out0, &out1]) {
        be.download(dev, 0, &mut whole)?;
        for s in bounds.windows(2) {
            let rows = (s[0] + first_row).min(s[1])..s[1];
            out[rows.clone()].copy_from_slice(&whole[rows]);
        }
    }
    Ok(())
}
