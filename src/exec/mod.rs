//! Layer 2: where and how, never what. Parses the user's placement, asks the planner (fed by the
//! persisted profile) for a plan, runs a [`Spec`] through a [`Splitter`], and teaches the profile
//! how long it took. None of these choices changes a single bit of the output.

pub mod config;
pub mod cpu;
pub mod cpuinfo;
pub mod cuda;
pub mod device;
pub mod devset;
pub mod mixed;
pub mod planner;
pub mod profile;
pub mod threads;

#[cfg(test)]
mod golden_tests;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use crate::kernels::scan::SCAN_BLOCK;
use crate::kernels::split::{Sequential, Splitter};
use crate::kernels::Spec;
pub use device::Device;
pub use planner::Plan;

/// What the caller knows about the surroundings of this call.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallContext {
    /// Polars is already running this call inside its own parallel section (`.over()`,
    /// `group_by`): adding threads would oversubscribe the machine.
    pub caller_parallel: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExecError {
    /// A GPU placement was forced but this build has no GPU backend.
    NoGpu {
        indicator: &'static str,
        device: String,
        reason: String,
    },
    /// A GPU ordinal that is not among the usable GPUs.
    NoSuchGpu {
        indicator: &'static str,
        ordinal: usize,
        available: Vec<usize>,
    },
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecError::NoGpu {
                indicator,
                device,
                reason,
            } => write!(
                f,
                "threadx.{indicator}: device='{device}' was requested but there is no usable GPU \
                 ({reason}); use device='auto' or device='cpu'"
            ),
            ExecError::NoSuchGpu {
                indicator,
                ordinal,
                available,
            } => write!(
                f,
                "threadx.{indicator}: device='gpu:{ordinal}': there is no usable GPU {ordinal} \
                 (usable GPUs: {available:?})"
            ),
        }
    }
}

impl std::error::Error for ExecError {}

/// Calls smaller than this are not recorded in the profile (timer noise dominates).
pub const MIN_RECORDED_ROWS: usize = 256;

/// The exploration draws: a 64-bit LCG seeded from `THREADX_SEED` (default fixed), advanced once
/// per planned call, so a run's sequence of plans can be reproduced.
fn next_draw() -> f64 {
    static STATE: OnceLock<AtomicU64> = OnceLock::new();
    let state =
        STATE.get_or_init(|| AtomicU64::new(config::seed().unwrap_or(0x0074_6872_6561_6478)));
    let mut x = state.load(Ordering::Relaxed);
    loop {
        let next = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        match state.compare_exchange_weak(x, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return (next >> 11) as f64 / (1u64 << 53) as f64,
            Err(cur) => x = cur,
        }
    }
}

/// True on threads of Polars' own pool ("polars-N"): Polars runs `.over()` groups, `group_by`
/// aggregations and the expressions of a multi-expression `select` there, side by side, without
/// setting the plugin's parallel flag; adding our own threads would oversubscribe the machine.
/// Read once per thread (Linux: the thread's name; elsewhere: never).
pub fn on_polars_pool_thread() -> bool {
    thread_local! {
        static POOL: bool = std::fs::read_to_string("/proc/thread-self/comm")
            .is_ok_and(|name| name.starts_with("polars-"));
    }
    POOL.with(|p| *p)
}

/// Plans a call of `rows` rows. `explore == false` (for `explain`) never explores.
pub fn plan(
    spec: &Spec,
    device: &Device,
    rows: usize,
    ctx: CallContext,
    explore: bool,
) -> Result<Plan, ExecError> {
    plan_named(spec.name(), device, rows, ctx, explore)
}

pub fn plan_named(
    indicator: &str,
    device: &Device,
    rows: usize,
    ctx: CallContext,
    explore: bool,
) -> Result<Plan, ExecError> {
    plan_tagged(indicator, device, rows, ctx, explore, None)
}

/// The workload tag a call's balance ratios are stored under: `workload_tag=`, else the indicator.
pub fn workload_tag<'a>(indicator: &'a str, tag: Option<&'a str>) -> &'a str {
    tag.filter(|t| !t.is_empty()).unwrap_or(indicator)
}

/// Like [`plan_named`], with the call's workload tag (its stored split ratios; falls back to the
/// `default` tag's).
pub fn plan_tagged(
    indicator: &str,
    device: &Device,
    rows: usize,
    ctx: CallContext,
    explore: bool,
    tag: Option<&str>,
) -> Result<Plan, ExecError> {
    let draw = if explore && !ctx.caller_parallel {
        next_draw()
    } else {
        1.0
    };
    let forced = threads::forced_threads();
    let cpu = cpuinfo::cpu_info();
    // Inside Polars' parallel sections (thousands of `.over()` groups) the plan is fixed: skip the
    // profile lock entirely.
    if ctx.caller_parallel && forced.is_none() && matches!(device, Device::Auto | Device::Cpu) {
        let req = planner::PlanRequest {
            indicator,
            rows,
            device,
            caller_parallel: true,
            forced_threads: None,
            cpu,
            profile: None,
            draw,
            gpus: &[],
            gpu_reason: None,
            balance: None,
        };
        return planner::plan(&req);
    }
    // CUDA starts only for calls that may use it: a forced GPU, or a large `auto` call.
    let gpu_status = match device {
        Device::Gpu(_) | Device::Gpus | Device::All => Some(cuda::status()),
        Device::Auto if !ctx.caller_parallel && rows >= planner::GPU_AUTO_MIN_ROWS => {
            Some(cuda::status())
        }
        _ => None,
    };
    let mut st = profile::state();
    let machine = st.machine();
    let gpus: Vec<planner::GpuCandidate> = gpu_status
        .as_ref()
        .map(|s| {
            s.devices
                .iter()
                .map(|d| {
                    let profile_key = gpu_profile_key(d);
                    planner::GpuCandidate {
                        index: d.index,
                        link: machine.links.get(&profile_key).cloned(),
                        profile_key,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let tag = workload_tag(indicator, tag);
    let balance = machine
        .balance
        .get(tag)
        .or_else(|| machine.balance.get("default"));
    let req = planner::PlanRequest {
        indicator,
        rows,
        device,
        caller_parallel: ctx.caller_parallel,
        forced_threads: forced,
        cpu,
        profile: Some(&*machine),
        draw,
        gpus: &gpus,
        gpu_reason: gpu_status.as_ref().and_then(|s| s.reason.as_deref()),
        balance,
    };
    planner::plan(&req)
}

/// Runs a multi-device plan and refines the workload's ratios from the members' measured
/// throughputs; returns the backend name its time is recorded under.
///
/// Members that run the Rust kernels (the CPU, simulated GPUs) split their rows through
/// [`devset::DeviceSetSplit`]. With real GPUs in the set, those host members take a prefix of the
/// rows and the GPUs the rest ([`mixed::run`], [`cuda::run_multi`]); a GPU failure computes the
/// call on the CPU.
fn run_split(
    spec: &Spec,
    plan: &Plan,
    tag: &str,
    inputs: &[&[f64]],
    outs: &mut [&mut [f64]],
) -> String {
    let status = cuda::status();
    let n = inputs.first().map_or(0, |x| x.len());
    let (mut gpu_idx, mut gpu_shares, mut gpu_keys) = (Vec::new(), Vec::new(), Vec::new());
    let (mut host, mut host_shares, mut host_keys) = (Vec::new(), Vec::new(), Vec::new());
    for m in &plan.split {
        let gpu = m
            .device
            .strip_prefix("gpu:")
            .and_then(|i| i.parse::<usize>().ok())
            .and_then(|i| status.devices.iter().find(|d| d.index == i));
        let member = match gpu.map(|d| (d.index, d.simulated)) {
            Some((i, None)) => {
                gpu_idx.push(i);
                gpu_shares.push(m.share);
                gpu_keys.push(m.key.clone());
                continue;
            }
            Some((_, Some(slot))) => devset::Member::Simulated {
                speed: cuda::discovery::simulated_speed(slot),
            },
            None => devset::Member::Cpu {
                workers: plan.workers.max(1),
            },
        };
        host.push(member);
        host_shares.push(m.share);
        host_keys.push(m.key.clone());
    }
    let host_split = devset::DeviceSetSplit::new(host, &host_shares);
    let mut measured: Vec<(String, f64)> = Vec::new();
    if gpu_idx.is_empty() {
        spec.run(&host_split, inputs, outs);
    } else {
        // The host prefix: its share of the rows, on the scan-block grid, holding every seed row.
        let host_share: f64 = host_shares.iter().sum();
        let total = host_share + gpu_shares.iter().sum::<f64>();
        let split_at = if host_keys.is_empty() || total <= 0.0 {
            0
        } else {
            let ideal = host_share / total * n as f64;
            let min_prefix = (spec.lookback() + 1).div_ceil(SCAN_BLOCK) * SCAN_BLOCK;
            (((ideal / SCAN_BLOCK as f64).round() as usize) * SCAN_BLOCK)
                .max(min_prefix)
                .min(n)
        };
        let result = mixed::run(
            spec,
            &host_split,
            split_at,
            inputs,
            outs,
            |tails, prefix| cuda::run_multi(spec, &gpu_idx, &gpu_shares, inputs, tails, prefix),
        );
        match result {
            Ok(seconds) => {
                let gpu_total: f64 = gpu_shares.iter().sum::<f64>().max(f64::MIN_POSITIVE);
                let gpu_rows = (n - split_at) as f64;
                measured.extend(
                    gpu_keys
                        .iter()
                        .zip(gpu_shares.iter().zip(&seconds))
                        .filter(|(_, (s, t))| **s > 0.0 && **t > 0.0)
                        .map(|(k, (s, t))| (k.clone(), s / gpu_total * gpu_rows / t)),
                );
            }
            Err(e) => {
                warn_gpu_fallback(spec.name(), gpu_idx.first().copied().unwrap_or(0), &e);
                let workers = planner::heuristic_workers(
                    n,
                    planner::DEFAULT_SMALL_ROWS,
                    planner::worker_cap(cpuinfo::cpu_info()),
                );
                run_with_workers(spec, workers, inputs, outs);
                return format!("cpu:{workers}");
            }
        }
    }
    for (k, t) in host_keys.iter().zip(host_split.times()) {
        if t.rows > 0 && !t.busy.is_zero() {
            measured.push((k.clone(), t.rows as f64 / t.busy.as_secs_f64()));
        }
    }
    if measured.len() > 1 && n >= profile::MIN_REFINE_ROWS {
        profile::refine_balance(tag, &measured);
    }
    plan.backend.clone()
}

/// A GPU's backend name in the profile: its UUID, so entries survive device renumbering.
pub fn gpu_profile_key(d: &cuda::GpuInfo) -> String {
    format!("gpu:{}", d.uuid)
}

/// One warning per kind of GPU failure per process.
fn warn_gpu_fallback(indicator: &str, index: usize, err: &cuda::GpuError) {
    static SEEN: std::sync::Mutex<Vec<cuda::GpuFailure>> = std::sync::Mutex::new(Vec::new());
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

/// What a failed GPU call costs in the profile: three times its current average (the most one
/// sample may move it), or 1 µs per row when it has none, so `auto` stops choosing it.
fn gpu_penalty_seconds(key: &str, indicator: &str, rows: usize) -> f64 {
    let mut st = profile::state();
    let bucket = profile::schema::size_bucket(rows);
    let ns = st
        .machine()
        .stat(indicator, &bucket, key)
        .filter(|s| s.samples > 0)
        .map_or(1000.0, |s| s.ewma_ns_per_row * 3.0);
    ns * rows as f64 / 1e9
}

/// Runs `spec` on `inputs` into `outs` (all the same length) under the planned split, and records
/// the measured time in the profile.
pub fn execute(
    spec: &Spec,
    device: &Device,
    inputs: &[&[f64]],
    outs: &mut [&mut [f64]],
    ctx: CallContext,
) -> Result<Plan, ExecError> {
    execute_tagged(spec, device, None, inputs, outs, ctx)
}

/// [`execute`] for a call with a workload tag (`workload_tag=`; the indicator name by default).
pub fn execute_tagged(
    spec: &Spec,
    device: &Device,
    tag: Option<&str>,
    inputs: &[&[f64]],
    outs: &mut [&mut [f64]],
    ctx: CallContext,
) -> Result<Plan, ExecError> {
    let rows = inputs.first().map_or(0, |x| x.len());
    let mut plan = plan_tagged(spec.name(), device, rows, ctx, true, tag)?;
    let started = Instant::now();
    let mut backend_key = plan.backend.clone();
    let simulated = plan.gpu.and_then(|i| {
        cuda::status()
            .devices
            .iter()
            .find(|d| d.index == i)
            .and_then(|d| d.simulated)
    });
    if !plan.split.is_empty() {
        let tag = profile::balance_tag_in_use(workload_tag(spec.name(), tag));
        backend_key = run_split(spec, &plan, &tag, inputs, outs);
    } else if let Some(slot) = simulated {
        let speed = cuda::discovery::simulated_speed(slot);
        let split = devset::DeviceSetSplit::new(vec![devset::Member::Simulated { speed }], &[1.0]);
        spec.run(&split, inputs, outs);
        backend_key = format!("gpu:sim-{slot}");
    } else if let Some(index) = plan.gpu {
        let info = cuda::status()
            .devices
            .iter()
            .find(|d| d.index == index)
            .cloned();
        let key = info
            .as_ref()
            .map(gpu_profile_key)
            .unwrap_or_else(|| plan.backend.clone());
        match cuda::run(spec, index, inputs, outs) {
            Ok(_) => backend_key = key,
            Err(e) => {
                warn_gpu_fallback(spec.name(), index, &e);
                let penalty = gpu_penalty_seconds(&key, spec.name(), rows);
                profile::record(profile::Sample {
                    indicator: spec.name().to_string(),
                    rows: rows.max(MIN_RECORDED_ROWS),
                    backend: key,
                    seconds: penalty,
                    unix: profile::store::unix_now(),
                });
                let workers = planner::heuristic_workers(
                    rows,
                    planner::DEFAULT_SMALL_ROWS,
                    planner::worker_cap(cpuinfo::cpu_info()),
                );
                plan.reason = format!("{}; GPU failed ({e}), computed on the CPU", plan.reason);
                plan.backend = format!("cpu:{workers}");
                plan.workers = workers;
                plan.gpu = None;
                backend_key = plan.backend.clone();
                run_with_workers(spec, workers, inputs, outs);
            }
        }
    } else {
        run_with_workers(spec, plan.workers, inputs, outs);
    }
    let seconds = started.elapsed().as_secs_f64();
    if !ctx.caller_parallel && rows >= MIN_RECORDED_ROWS && !plan.reason.contains("GPU failed") {
        profile::record(profile::Sample {
            indicator: spec.name().to_string(),
            rows,
            backend: backend_key,
            seconds,
            unix: profile::store::unix_now(),
        });
    }
    if config::log_enabled() {
        eprintln!(
            "threadx: {} rows={} plan={} ({}) measured {:.3} ms [{} thread]",
            spec.name(),
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

fn run_with_workers(spec: &Spec, workers: usize, inputs: &[&[f64]], outs: &mut [&mut [f64]]) {
    fn go<S: Splitter>(s: &S, spec: &Spec, inputs: &[&[f64]], outs: &mut [&mut [f64]]) {
        spec.run(s, inputs, outs)
    }
    if workers <= 1 {
        go(&Sequential, spec, inputs, outs);
    } else {
        go(&cpu::RayonSplit::new(workers), spec, inputs, outs);
    }
}
