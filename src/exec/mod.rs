//! Layer 2: where and how, never what. Parses the user's placement, asks the planner (fed by the
//! persisted profile) for a plan, runs a [`Spec`] through a [`Splitter`], and teaches the profile
//! how long it took. None of these choices changes a single bit of the output.

pub mod cpu;
pub mod cpuinfo;
pub mod cuda;
pub mod device;
pub mod planner;
pub mod profile;
pub mod threads;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

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
    let state = STATE.get_or_init(|| {
        let seed = std::env::var("THREADX_SEED")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        AtomicU64::new(seed.unwrap_or(0x0074_6872_6561_6478))
    });
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

fn log_enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("THREADX_LOG").is_ok_and(|v| !v.is_empty() && v != "0"))
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
    let draw = if explore && !ctx.caller_parallel {
        next_draw()
    } else {
        1.0
    };
    let forced = threads::forced_threads();
    let cpu = cpuinfo::cpu_info();
    // Inside Polars' parallel sections (thousands of `.over()` groups) the plan is fixed: skip the
    // profile lock entirely.
    if ctx.caller_parallel && forced.is_none() && !matches!(device, Device::Gpu(_)) {
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
        };
        return planner::plan(&req);
    }
    // CUDA starts only for calls that may use it: a forced GPU, or a large `auto` call.
    let gpu_status = match device {
        Device::Gpu(_) => Some(cuda::status()),
        Device::Auto if !ctx.caller_parallel && rows >= planner::GPU_AUTO_MIN_ROWS => {
            Some(cuda::status())
        }
        _ => None,
    };
    let mut st = profile::state();
    let machine = st.machine();
    let gpus: Vec<planner::GpuCandidate> = gpu_status
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
    let req = planner::PlanRequest {
        indicator,
        rows,
        device,
        caller_parallel: ctx.caller_parallel,
        forced_threads: forced,
        cpu,
        profile: Some(machine),
        draw,
        gpus: &gpus,
        gpu_reason: gpu_status.and_then(|s| s.reason.as_deref()),
    };
    planner::plan(&req)
}

/// A GPU's backend name in the profile: its UUID, so entries survive device renumbering.
pub fn gpu_profile_key(d: &cuda::GpuInfo) -> String {
    format!("gpu:{}", d.uuid)
}

/// One warning per kind of GPU failure per process.
fn warn_gpu_fallback(indicator: &str, index: usize, err: &cuda::GpuError) {
    static SEEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let kind = err.0.split(':').next().unwrap_or("").to_string();
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
    let rows = inputs.first().map_or(0, |x| x.len());
    let mut plan = plan(spec, device, rows, ctx, true)?;
    let started = Instant::now();
    let mut backend_key = plan.backend.clone();
    if let Some(index) = plan.gpu {
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
    if log_enabled() {
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
