//! A batch on one GPU (`by=` segments laid end to end, several parameter sets of one indicator):
//! every input column goes up once, whole, and every (parameter set, segment) runs the
//! single-series pipeline ([`pipeline::run`]) against that one device copy.
//!
//! [`Resident`] is the backend the pipeline sees: its `upload` of rows that lie inside a resident
//! input column moves no data but points the buffer at those rows of the device copy (a device
//! pointer offset), so a segment's pieces and halos read the rows the single-series path would
//! have uploaded, at the same offsets from the buffer's element 0. Anything else (the middle band
//! of Bollinger-on-MA, powers, carries) is uploaded as usual. Each segment keeps its own grid,
//! scan blocks and pieces (anchored at its first row), so its bits are those of the segment alone.
//!
//! The moving-moments indicators (SMA, SUM, rolling std/var, z-score, Bollinger, AVGDEV) run all
//! segments in one launch ([`pipeline::moments_segments`], `tx_moments_seg`) when all the rows fit
//! in one piece; every other indicator still launches per segment and per piece, its outputs
//! coming back per piece.

use super::args::{Kernel, KernelArgs};
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
    for (spec, call) in specs.iter().zip(outs.iter_mut()) {
        let rows = piece_rows(spec)?;
        if let Some((_, x)) = resident.columns.first() {
            if pipeline::moments_segments(be, spec, inputs, x, bounds, call, rows)? {
                continue;
            }
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
