//! Device sets with real GPUs and host members (the CPU, simulated GPUs): the host members take
//! rows `0..split_at`, the GPUs the rest, at the same time.
//!
//! Every kernel is causal (row `t` depends on inputs at rows `<= t` only, on grids anchored at
//! row 0), so the host members compute their rows exactly by running on the inputs cut at
//! `split_at`. The GPUs' recursive filters continue from the scan states the prefix ends in,
//! which the host run hands over through a [`ScanCarryHandoff`] as each scan finishes; meanwhile
//! the GPUs run their local scans, and only the carry chain waits for the prefix.

use super::handoff::{CloseOnDrop, ScanCarryHandoff};
use crate::exec::cuda::pipeline::Prefix;
use crate::exec::cuda::GpuError;
use crate::kernels::scan::SCAN_BLOCK;
use crate::kernels::split::Splitter;
use crate::kernels::Spec;

/// Rows the host members take: their share of the `rows`, on the scan-block grid, and at least
/// every seed row (`lookback + 1` rows rounded up to a block), so that the GPUs only ever continue
/// scans. 0 when there are no host members (or no shares at all).
pub fn host_prefix_rows(
    lookback: usize,
    rows: usize,
    host_share: f64,
    gpu_share: f64,
    has_host_members: bool,
) -> usize {
    let total = host_share + gpu_share;
    if !has_host_members || total <= 0.0 {
        return 0;
    }
    let ideal = host_share / total * rows as f64;
    let min_prefix = (lookback + 1).div_ceil(SCAN_BLOCK) * SCAN_BLOCK;
    (((ideal / SCAN_BLOCK as f64).round() as usize) * SCAN_BLOCK)
        .max(min_prefix)
        .min(rows)
}

/// Runs `spec` with `host` on rows `0..split_at` and `gpus(tails, prefix)` on the rest, where
/// `tails` are the outputs from row `split_at` on. `split_at` must be 0, or a multiple of the
/// scan block that holds every seed row (see [`host_prefix_rows`]). `host` is the host members'
/// splitter (a [`DeviceSetSplit`](super::DeviceSetSplit) in production).
pub fn run<S, F>(
    spec: &Spec,
    host: &S,
    split_at: usize,
    inputs: &[&[f64]],
    outs: &mut [&mut [f64]],
    gpus: F,
) -> Result<Vec<f64>, GpuError>
where
    S: Splitter,
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
    let handoff = ScanCarryHandoff::new();
    let host = HostPart::new(host, &handoff);
    let seconds = std::thread::scope(|scope| {
        let host_job = scope.spawn(|| {
            // Closing tells the GPUs no further state will come, even if the host part panics.
            let _close = CloseOnDrop(&handoff);
            if split_at > 0 {
                spec.run(&host, &host_ins, &mut heads);
            }
        });
        let prefix = (split_at > 0).then_some(Prefix {
            rows: split_at,
            carries: &handoff,
        });
        let gpu = if split_at < n {
            gpus(&mut tails, prefix)
        } else {
            Ok(Vec::new())
        };
        match host_job.join() {
            Ok(()) => gpu,
            Err(_) => Err(GpuError::DeviceSet(
                "the host part of the device set panicked",
            )),
        }
    })?;
    // The parts were computed apart; steps over the whole column come last.
    spec.finish(outs);
    Ok(seconds)
}

/// The host members' splitter: the members' own splitter (a
/// [`DeviceSetSplit`](super::DeviceSetSplit)), forwarding every scan's final state to the GPUs
/// through the hand-off.
pub struct HostPart<'a, S> {
    split: &'a S,
    handoff: &'a ScanCarryHandoff,
}

impl<'a, S: Splitter> HostPart<'a, S> {
    pub fn new(split: &'a S, handoff: &'a ScanCarryHandoff) -> Self {
        HostPart { split, handoff }
    }
}

impl<S: Splitter> Splitter for HostPart<'_, S> {
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
        self.handoff.send(carry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_prefix_is_on_the_grid_and_holds_every_seed_row() {
        let b = SCAN_BLOCK;
        assert_eq!(host_prefix_rows(10, 100 * b, 1.0, 3.0, true), 25 * b);
        // Too small a share still covers the seed rows (here two blocks).
        assert_eq!(host_prefix_rows(b + 5, 100 * b, 0.001, 1.0, true), 2 * b);
        assert_eq!(host_prefix_rows(10, 3 * b, 1.0, 0.0, true), 3 * b);
        assert_eq!(host_prefix_rows(10, 100 * b, 1.0, 1.0, false), 0);
        assert_eq!(host_prefix_rows(10, 100 * b, 0.0, 0.0, true), 0);
    }
}
