//! Device sets with real GPUs and host members (the CPU, simulated GPUs): the host members take
//! rows `0..split_at`, the GPUs the rest, at the same time.
//!
//! Every kernel is causal (row `t` depends on inputs at rows `<= t` only, on grids anchored at
//! row 0), so the host members compute their rows exactly by running on the inputs cut at
//! `split_at`. The GPUs' recursive filters continue from the scan states the prefix ends in,
//! which the host run hands over through [`Splitter::scan_carry_out`] as each scan finishes;
//! meanwhile the GPUs run their local scans, and only the carry chain waits for the prefix.

use std::sync::mpsc;
use std::sync::Mutex;

use super::cuda::pipeline::Prefix;
use super::cuda::GpuError;
use super::devset::DeviceSetSplit;
use crate::kernels::split::Splitter;
use crate::kernels::Spec;

/// Runs `spec` with `host` on rows `0..split_at` and `gpus(tails, prefix)` on the rest, where
/// `tails` are the outputs from row `split_at` on. `split_at` must be 0, or a multiple of the
/// scan block that holds every seed row (the lookback).
pub fn run<F>(
    spec: &Spec,
    host: &DeviceSetSplit,
    split_at: usize,
    inputs: &[&[f64]],
    outs: &mut [&mut [f64]],
    gpus: F,
) -> Result<Vec<f64>, GpuError>
where
    F: FnOnce(&mut [&mut [f64]], Option<Prefix<'_>>) -> Result<Vec<f64>, GpuError> + Send,
{
    let n = inputs.first().map_or(0, |x| x.len());
    let split_at = split_at.min(n);
    let host_ins: Vec<&[f64]> = inputs.iter().map(|x| &x[..split_at]).collect();
    let mut heads = Vec::with_capacity(outs.len());
    let mut tails = Vec::with_capacity(outs.len());
    for o in outs.iter_mut() {
        let (h, t) = o.split_at_mut(split_at);
        heads.push(h);
        tails.push(t);
    }
    let (tx, rx) = mpsc::channel();
    let rx = Mutex::new(rx);
    let host = HostPart {
        split: host,
        to: Mutex::new(Some(tx)),
    };
    std::thread::scope(|scope| {
        let host_job = scope.spawn(|| {
            if split_at > 0 {
                spec.run(&host, &host_ins, &mut heads);
            }
            // Dropping the sender tells the GPUs no further state will come.
            if let Ok(mut to) = host.to.lock() {
                to.take();
            }
        });
        let prefix = (split_at > 0).then_some(Prefix {
            rows: split_at,
            carries: &rx,
        });
        let gpu = if split_at < n {
            gpus(&mut tails, prefix)
        } else {
            Ok(Vec::new())
        };
        match host_job.join() {
            Ok(()) => gpu,
            Err(_) => Err(GpuError("the host part of the device set panicked".into())),
        }
    })
}

/// The host members' splitter, forwarding every scan's final state to the GPUs.
struct HostPart<'a> {
    split: &'a DeviceSetSplit,
    to: Mutex<Option<mpsc::Sender<Vec<f64>>>>,
}

impl Splitter for HostPart<'_> {
    fn for_each_piece<const K: usize, F>(&self, first_row: usize, outs: [&mut [f64]; K], fill: F)
    where
        F: Fn(usize, [&mut [f64]; K]) + Sync + Send,
    {
        self.split.for_each_piece(first_row, outs, fill)
    }

    fn map_indexed<T: Send, F>(&self, n: usize, f: F) -> Vec<T>
    where
        F: Fn(usize) -> T + Sync + Send,
    {
        self.split.map_indexed(n, f)
    }

    fn max_pieces(&self) -> usize {
        self.split.max_pieces()
    }

    fn last_piece_start(&self, first_row: usize, len: usize) -> usize {
        self.split.last_piece_start(first_row, len)
    }

    fn workers(&self) -> usize {
        self.split.workers()
    }

    fn run_workers<F>(&self, worker: F)
    where
        F: Fn() + Sync + Send,
    {
        self.split.run_workers(worker)
    }

    fn scan_carry_out(&self, carry: &[f64]) {
        if let Ok(to) = self.to.lock() {
            if let Some(to) = to.as_ref() {
                let _ = to.send(carry.to_vec());
            }
        }
    }
}
