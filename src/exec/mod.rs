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
    },
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecError::NoGpu { indicator, device } => write!(
                f,
                "threadx.{indicator}: device='{device}' was requested but no GPU backend is available \
                 (this build runs on the CPU only); use device='auto' or device='cpu'"
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
    if ctx.caller_parallel && forced.is_none() {
        let req = planner::PlanRequest {
            indicator,
            rows,
            device,
            caller_parallel: true,
            forced_threads: None,
            cpu,
            profile: None,
            draw,
        };
        return planner::plan(&req);
    }
    let mut st = profile::state();
    let req = planner::PlanRequest {
        indicator,
        rows,
        device,
        caller_parallel: ctx.caller_parallel,
        forced_threads: forced,
        cpu,
        profile: Some(st.machine()),
        draw,
    };
    planner::plan(&req)
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
    let plan = plan(spec, device, rows, ctx, true)?;
    let started = Instant::now();
    run_with_workers(spec, plan.workers, inputs, outs);
    let seconds = started.elapsed().as_secs_f64();
    if !ctx.caller_parallel && rows >= MIN_RECORDED_ROWS {
        profile::record(profile::Sample {
            indicator: spec.name().to_string(),
            rows,
            backend: plan.backend.clone(),
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
