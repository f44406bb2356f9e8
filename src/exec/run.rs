//! Executing a planned call: on the CPU, on one GPU (real or simulated) or split across a device
//! set; then teaching the profile how long it took. A GPU failure computes the call on the CPU
//! ([`fallback`](super::fallback)). None of this changes a bit of the output.

use std::time::Instant;

use super::batch::{self, Unit};
use super::cuda::{self, GpuStatus};
use super::device::Device;
use super::devset::partition::Partition;
use super::devset::{mixed, simulated, DeviceSetSplit, Member};
use super::error::ExecError;
use super::placement::Placement;
use super::plan_call::workload_name;
use super::plan_call::{gpu_profile_key, on_polars_pool_thread, plan_call, workload_tag};
use super::plan_call::{CallContext, PlannedCall};
use super::planner::Plan;
use super::{config, cpu, fallback, profile, set_batch};
use crate::kernels::Spec;

/// Runs `spec` on `inputs` into `outs` (all the same length) where the planner places it, with
/// the call's workload tag (`workload_tag=`; the indicator name by default), and records the
/// measured time in the profile. Returns the plan as executed (after a GPU failure: the CPU).
pub fn execute_tagged(
    spec: &Spec,
    device: &Device,
    tag: Option<&str>,
    inputs: &[&[f64]],
    outs: &mut [&mut [f64]],
    ctx: CallContext,
) -> Result<Plan, ExecError> {
    let rows = inputs.first().map_or(0, |x| x.len());
    let outs: Vec<&mut [f64]> = outs.iter_mut().map(|o| &mut **o).collect();
    execute_batch(
        std::slice::from_ref(spec),
        device,
        tag,
        inputs,
        &[0, rows],
        vec![outs],
        ctx,
    )
}

/// [`execute_tagged`] for a batch: every call of `specs` (one indicator, several parameter sets:
/// a sweep) on every series of `inputs` (`bounds`: the rows `bounds[i]..bounds[i + 1]` are series
/// `i`, independent of the others: `by=` segments), into `outs[call]`. Each series' rows are
/// exactly those of computing it alone, so the bits do not depend on the batch. The batch is
/// planned and profiled as a workload of its own ([`workload_name`]) over all the rows it
/// computes.
pub fn execute_batch(
    specs: &[Spec],
    device: &Device,
    tag: Option<&str>,
    inputs: &[&[f64]],
    bounds: &[usize],
    outs: Vec<Vec<&mut [f64]>>,
    ctx: CallContext,
) -> Result<Plan, ExecError> {
    let Some(spec) = specs.first() else {
        return Err(ExecError::EmptyBatch);
    };
    let segments = bounds.len().saturating_sub(1);
    let rows = bounds.last().copied().unwrap_or(0) * specs.len();
    let workload = workload_name(spec.name(), segments, specs.len());
    let PlannedCall { mut plan, gpus } =
        plan_call(spec.name(), &workload, device, rows, ctx, true, tag)?;
    // GPU and set plans are only made from a status that lists GPUs; CPU plans never read it.
    let gpus = gpus.unwrap_or_default();
    let started = Instant::now();
    let mut outs = outs;
    let record_as = match plan.backend.clone() {
        Placement::Cpu { workers } => {
            batch::run_on_cpu(batch::units(specs, inputs, bounds, outs), workers);
            Some(plan.backend.to_string())
        }
        Placement::Gpu(index) if is_real_gpu(&gpus, index) && specs.len() * segments > 1 => {
            let run = cuda::run_batch(specs, &gpus, index, inputs, bounds, &mut outs);
            let mut units = batch::units(specs, inputs, bounds, outs);
            match run {
                Ok(Some(_)) => Some(gpu_key(&gpus, index, &plan)),
                // The inputs do not fit next to the pieces: one segment at a time.
                Ok(None) => run_units(&mut plan, &gpus, &workload, tag, &mut units),
                Err(e) => {
                    let mut workers = 1;
                    for u in units.iter_mut() {
                        workers =
                            fallback::compute_on_cpu(u.spec, index, &e, &u.inputs, &mut u.outs);
                    }
                    fallback::penalise_gpu(&gpu_key(&gpus, index, &plan), &workload, rows);
                    plan.reason = format!("{}; GPU failed ({e}), computed on the CPU", plan.reason);
                    plan.backend = Placement::Cpu { workers };
                    plan.workers = workers;
                    plan.gpu = None;
                    None
                }
            }
        }
        _ if set_batch::applies(&plan, specs.len() * segments) => set_batch::run(
            &mut plan, &gpus, &workload, tag, specs, inputs, bounds, outs,
        ),
        _ => {
            let mut units = batch::units(specs, inputs, bounds, outs);
            run_units(&mut plan, &gpus, &workload, tag, &mut units)
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    if let Some(backend) = record_as {
        if !ctx.caller_parallel && rows >= profile::MIN_RECORDED_ROWS {
            profile::record(profile::Sample {
                indicator: workload.clone(),
                rows,
                backend,
                seconds,
                unix: profile::store::unix_now(),
            });
        }
    }
    if config::log_enabled() {
        eprintln!(
            "threadx: {} rows={} plan={} ({}) measured {:.3} ms [{} thread]",
            workload,
            rows,
            plan.backend,
            plan.reason,
            seconds * 1e3,
            if on_polars_pool_thread() {
                "polars pool"
            } else {
                "caller"
            }
        );
    }
    Ok(plan)
}

/// Whether GPU `index` of `gpus` is a real one (a batch then goes up once: [`cuda::run_batch`]).
fn is_real_gpu(gpus: &GpuStatus, index: usize) -> bool {
    gpus.devices
        .iter()
        .any(|d| d.index == index && d.simulated.is_none())
}

/// The profile key of GPU `index`'s time.
fn gpu_key(gpus: &GpuStatus, index: usize, plan: &Plan) -> String {
    gpus.devices
        .iter()
        .find(|d| d.index == index)
        .map(gpu_profile_key)
        .unwrap_or_else(|| plan.backend.to_string())
}

/// Runs the units of a batch one by one where `plan` says ([`run_planned`]); returns the profile
/// key of the last.
fn run_units(
    plan: &mut Plan,
    gpus: &GpuStatus,
    workload: &str,
    tag: Option<&str>,
    units: &mut [Unit],
) -> Option<String> {
    let mut record_as = None;
    for unit in units.iter_mut() {
        record_as = run_planned(plan, gpus, workload, tag, unit);
    }
    record_as
}

/// Runs one series of a batch where `plan` says (a GPU or a device set; after a GPU failure, the
/// CPU, and `plan` says so for the series after it). Returns the profile key the batch's time is
/// recorded under, `None` after a GPU failure.
pub(super) fn run_planned(
    plan: &mut Plan,
    gpus: &GpuStatus,
    workload: &str,
    tag: Option<&str>,
    unit: &mut Unit,
) -> Option<String> {
    let (spec, inputs, outs) = (unit.spec, &unit.inputs, &mut unit.outs);
    match plan.backend.clone() {
        Placement::Cpu { workers } => {
            cpu::run(spec, workers, inputs, outs);
            None
        }
        Placement::Gpu(index) => run_on_gpu(spec, plan, gpus, index, workload, inputs, outs),
        Placement::Set(_) => {
            let tag = profile::balance_tag_in_use(workload_tag(spec.name(), tag));
            Some(run_split(spec, plan, gpus, &tag, inputs, outs))
        }
    }
}

/// Runs the call on GPU `index`; returns the profile key its time is recorded under. After a
/// failure the call is computed on the CPU, `plan` says so, and there is nothing more to record
/// (the failure itself was recorded as a penalty on the GPU).
fn run_on_gpu(
    spec: &Spec,
    plan: &mut Plan,
    gpus: &GpuStatus,
    index: usize,
    workload: &str,
    inputs: &[&[f64]],
    outs: &mut [&mut [f64]],
) -> Option<String> {
    let info = gpus.devices.iter().find(|d| d.index == index);
    if let Some((info, slot)) = info.and_then(|d| Some((d, d.simulated?))) {
        let speed = simulated::speed(slot);
        let split = DeviceSetSplit::new(vec![Member::Simulated { speed }], &[1.0]);
        spec.run(&split, inputs, outs);
        return Some(gpu_profile_key(info));
    }
    let key = info
        .map(gpu_profile_key)
        .unwrap_or_else(|| plan.backend.to_string());
    match cuda::run(spec, gpus, index, inputs, outs) {
        Ok(_) => Some(key),
        Err(e) => {
            let workers = fallback::compute_on_cpu(spec, index, &e, inputs, outs);
            let rows = inputs.first().map_or(0, |x| x.len());
            fallback::penalise_gpu(&key, workload, rows);
            plan.reason = format!("{}; GPU failed ({e}), computed on the CPU", plan.reason);
            plan.backend = Placement::Cpu { workers };
            plan.workers = workers;
            plan.gpu = None;
            None
        }
    }
}

/// Runs a multi-device plan and refines the workload's ratios from the members' measured
/// throughputs; returns the profile key its time is recorded under.
///
/// Members that run the Rust kernels (the CPU, simulated GPUs) split their rows through
/// [`DeviceSetSplit`]. With real GPUs in the set, those host members take a prefix of the rows and
/// the GPUs the rest ([`mixed::run`], [`cuda::run_multi`]); a GPU failure computes the call on
/// the CPU, recorded as a CPU call.
fn run_split(
    spec: &Spec,
    plan: &Plan,
    gpus: &GpuStatus,
    tag: &str,
    inputs: &[&[f64]],
    outs: &mut [&mut [f64]],
) -> String {
    let n = inputs.first().map_or(0, |x| x.len());
    let parts = Partition::new(&plan.split, gpus, plan.workers);
    let host_split = DeviceSetSplit::new(parts.host.clone(), &parts.host_shares);
    let mut measured: Vec<(String, f64)> = Vec::new();
    if parts.gpus.is_empty() {
        spec.run(&host_split, inputs, outs);
    } else {
        let split_at = mixed::host_prefix_rows(
            spec.lookback(),
            n,
            parts.host_shares.iter().sum(),
            parts.gpu_shares.iter().sum(),
            !parts.host_keys.is_empty(),
        );
        let result = mixed::run(
            spec,
            &host_split,
            split_at,
            inputs,
            outs,
            |tails, prefix| {
                cuda::run_multi(
                    spec,
                    gpus,
                    &parts.gpus,
                    &parts.gpu_shares,
                    inputs,
                    tails,
                    prefix,
                )
            },
        );
        match result {
            Ok(seconds) => {
                let gpu_total: f64 = parts.gpu_shares.iter().sum::<f64>().max(f64::MIN_POSITIVE);
                let gpu_rows = (n - split_at) as f64;
                measured.extend(
                    parts
                        .gpu_keys
                        .iter()
                        .zip(parts.gpu_shares.iter().zip(&seconds))
                        .filter(|(_, (s, t))| **s > 0.0 && **t > 0.0)
                        .map(|(k, (s, t))| (k.clone(), s / gpu_total * gpu_rows / t)),
                );
            }
            Err(e) => {
                let workers = fallback::compute_on_cpu(spec, parts.gpus[0], &e, inputs, outs);
                return Placement::Cpu { workers }.to_string();
            }
        }
    }
    for (k, t) in parts.host_keys.iter().zip(host_split.times()) {
        if t.rows > 0 && !t.busy.is_zero() {
            measured.push((k.clone(), t.rows as f64 / t.busy.as_secs_f64()));
        }
    }
    if measured.len() > 1 && n >= profile::MIN_REFINE_ROWS {
        profile::refine_balance(tag, &measured);
    }
    plan.backend.to_string()
}
