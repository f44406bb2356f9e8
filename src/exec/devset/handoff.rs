//! The hand-off of scan states from the host prefix of a mixed device set to its GPUs.
//!
//! In a set with real GPUs, the host members compute rows `0..split_at` and the GPUs the rest
//! ([`mixed`](super::mixed)). A recursive indicator's GPU rows continue from the state its scans
//! end in on the host side: every scan the host runs reports that state through
//! [`Splitter::scan_carry_out`](crate::kernels::split::Splitter::scan_carry_out), once per scan
//! stage and in stage order (MACD: the line, then the signal). [`ScanCarryHandoff`] carries those
//! states across threads to the GPU pipeline, which takes them as a
//! [`CarrySource`]: one state per stage, waiting for the host when it is not there yet, `None` once
//! the host part has finished (or failed) without sending it.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;

use crate::exec::cuda::pipeline::CarrySource;

/// A one-way queue of scan states from the host prefix (sender) to the GPUs (receiver).
pub struct ScanCarryHandoff {
    to_gpus: Mutex<Option<Sender<Vec<f64>>>>,
    from_host: Mutex<Receiver<Vec<f64>>>,
}

impl Default for ScanCarryHandoff {
    fn default() -> Self {
        Self::new()
    }
}

impl ScanCarryHandoff {
    pub fn new() -> Self {
        let (tx, rx) = channel();
        ScanCarryHandoff {
            to_gpus: Mutex::new(Some(tx)),
            from_host: Mutex::new(rx),
        }
    }

    /// Host side: the state a scan stage ends in (its carry into a block after the prefix).
    pub fn send(&self, state: &[f64]) {
        if let Ok(to) = self.to_gpus.lock() {
            if let Some(to) = to.as_ref() {
                let _ = to.send(state.to_vec());
            }
        }
    }

    /// Host side: no further state will come. Waiting GPUs then get `None` instead of blocking.
    pub fn close(&self) {
        if let Ok(mut to) = self.to_gpus.lock() {
            to.take();
        }
    }
}

impl CarrySource for ScanCarryHandoff {
    fn next_state(&self) -> Option<Vec<f64>> {
        self.from_host.lock().ok()?.recv().ok()
    }
}

/// Closes the hand-off when dropped, so the GPUs never wait on a host part that panicked.
pub struct CloseOnDrop<'a>(pub &'a ScanCarryHandoff);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::devset::mixed::HostPart;
    use crate::exec::devset::{DeviceSetSplit, Member};
    use crate::kernels::split::{Sequential, Splitter};
    use crate::kernels::testing::series_zoo;
    use crate::kernels::Spec;

    /// A splitter that runs sequentially and hands every scan's final state to `handoff`, as the
    /// host part of a mixed set does.
    struct Reporting<'a>(&'a ScanCarryHandoff);

    impl Splitter for Reporting<'_> {
        fn for_each_piece<const K: usize, F>(&self, first: usize, outs: [&mut [f64]; K], fill: F)
        where
            F: Fn(usize, [&mut [f64]; K]) + Sync + Send,
        {
            Sequential.for_each_piece(first, outs, fill)
        }

        fn map_indexed<T: Send, F>(&self, n: usize, f: F) -> Vec<T>
        where
            F: Fn(usize) -> T + Sync + Send,
        {
            Sequential.map_indexed(n, f)
        }

        fn max_pieces(&self) -> usize {
            1
        }

        fn last_piece_start(&self, first_row: usize, len: usize) -> usize {
            Sequential.last_piece_start(first_row, len)
        }

        fn scan_carry_out(&self, carry: &[f64]) {
            self.0.send(carry)
        }
    }

    fn run(spec: &Spec, split: &impl Splitter, x: &[f64]) -> Vec<Vec<f64>> {
        let mut outs = vec![vec![0.0; x.len()]; spec.outputs().len()];
        let mut views: Vec<&mut [f64]> = outs.iter_mut().map(|o| o.as_mut_slice()).collect();
        spec.run(split, &[x], &mut views);
        outs
    }

    #[test]
    fn states_arrive_in_stage_order_then_the_handoff_ends() {
        let x = &series_zoo(3_000, 2)[0];
        // EMA: one stage whose state is its last output value.
        let handoff = ScanCarryHandoff::new();
        let ema = Spec::ema(30).unwrap();
        let out = run(&ema, &Reporting(&handoff), x);
        handoff.close();
        let state = handoff.next_state().expect("one state for one scan");
        assert_eq!(state.len(), 1);
        assert_eq!(state[0].to_bits(), out[0][x.len() - 1].to_bits());
        assert_eq!(handoff.next_state(), None);
        // MACD: the line's two channels (fast and slow EMA), then the signal's one.
        let handoff = ScanCarryHandoff::new();
        run(&Spec::macd(12, 26, 9).unwrap(), &Reporting(&handoff), x);
        drop(CloseOnDrop(&handoff));
        let lens: Vec<usize> = std::iter::from_fn(|| handoff.next_state())
            .map(|s| s.len())
            .collect();
        assert_eq!(lens, vec![2, 1]);
    }

    #[test]
    fn the_states_do_not_depend_on_how_the_host_splits_its_rows() {
        let x = &series_zoo(20_000, 3)[0];
        let spec = Spec::macd(12, 26, 9).unwrap();
        let sequential = ScanCarryHandoff::new();
        run(&spec, &Reporting(&sequential), x);
        sequential.close();
        // The host part of a mixed set: a device set of the CPU and a simulated GPU.
        let split = DeviceSetSplit::new(
            vec![Member::Cpu { workers: 2 }, Member::Simulated { speed: 1.0 }],
            &[0.6, 0.4],
        );
        let handoff = ScanCarryHandoff::new();
        run(&spec, &HostPart::new(&split, &handoff), x);
        handoff.close();
        let bits =
            |s: Option<Vec<f64>>| s.map(|v| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>());
        for _ in 0..3 {
            assert_eq!(bits(sequential.next_state()), bits(handoff.next_state()));
        }
    }
}
