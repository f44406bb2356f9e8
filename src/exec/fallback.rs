//! The one way a GPU failure ends: a warning (once per kind of failure per process) and the
//! call computed on the CPU, with the thread heuristic's worker count (the profile's choice may
//! have been the GPU, so it is no guide here). The result is the CPU's, bit for bit the same.

use std::sync::Mutex;

use super::cuda::{GpuError, GpuFailure};
use super::planner::{heuristic_workers, worker_cap, DEFAULT_SMALL_ROWS};
use super::{cpu, cpuinfo, profile};
use crate::kernels::Spec;

/// Computes the call on the CPU after GPU `gpu_index` failed with `err`; returns the workers used.
pub fn compute_on_cpu(
    spec: &Spec,
    gpu_index: usize,
    err: &GpuError,
    inputs: &[&[f64]],
    outs: &mut [&mut [f64]],
) -> usize {
    warn_once_per_kind(spec.name(), gpu_index, err);
    let rows = inputs.first().map_or(0, |x| x.len());
    let workers = heuristic_workers(rows, DEFAULT_SMALL_ROWS, worker_cap(cpuinfo::cpu_info()));
    cpu::run(spec, workers, inputs, outs);
    workers
}

/// Records what the failed call of `rows` rows on the GPU profiled as `key` costs: three times
/// its current average (the most one sample may move it), or 1 µs per row when it has none, so
/// `auto` stops choosing it.
pub fn penalise_gpu(key: &str, indicator: &str, rows: usize) {
    let seconds = {
        let mut st = profile::state();
        let bucket = profile::schema::size_bucket(rows);
        let ns = st
            .machine()
            .stat(indicator, &bucket, key)
            .filter(|s| s.samples > 0)
            .map_or(1000.0, |s| s.ewma_ns_per_row * 3.0);
        ns * rows as f64 / 1e9
    };
    profile::record(profile::Sample {
        indicator: indicator.to_string(),
        rows: rows.max(profile::MIN_RECORDED_ROWS),
        backend: key.to_string(),
        seconds,
        unix: profile::store::unix_now(),
    });
}

fn warn_once_per_kind(indicator: &str, index: usize, err: &GpuError) {
    static SEEN: Mutex<Vec<GpuFailure>> = Mutex::new(Vec::new());
    let kind = err.kind();
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if !seen.contains(&kind) {
        seen.push(kind);
        eprintln!(
            "threadx: warning: {indicator} on GPU {index} failed ({err}); falling back to the CPU \
             (the result is computed there; the profile now avoids this GPU for such calls)"
        );
    }
}
