//! Planning one call: what the caller knows ([`CallContext`]), the exploration draw, the GPUs
//! (discovered only for calls that may use one, and looked up once per call), the profile, and
//! the planner's answer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use super::cuda::{self, GpuInfo, GpuStatus};
use super::device::Device;
use super::error::ExecError;
use super::planner::{self, Plan};
use super::profile::schema::bucket_exponent;
use super::{config, cpuinfo, profile, threads};
use crate::kernels::registry::{self, Devices};

/// What the caller knows about the surroundings of this call.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallContext {
    /// Polars is already running this call inside its own parallel section (`.over()`,
    /// `group_by`): adding threads would oversubscribe the machine.
    pub caller_parallel: bool,
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

/// The workload tag a call's balance ratios are stored under: `workload_tag=`, else the indicator.
pub fn workload_tag<'a>(indicator: &'a str, tag: Option<&'a str>) -> &'a str {
    tag.filter(|t| !t.is_empty()).unwrap_or(indicator)
}

/// The profile entry of a call that is more than one series of one parameter set: `sma` over 2,000
/// `by=` segments is `sma[by 2^10]`, a sweep of 40 parameter sets `sma[sweep 2^5]` (powers of two,
/// like the size buckets), so the planner learns those workloads apart from plain calls.
pub fn workload_name(indicator: &str, segments: usize, combinations: usize) -> String {
    let mut name = indicator.to_string();
    if segments > 1 {
        name.push_str(&format!("[by 2^{}]", bucket_exponent(segments)));
    }
    if combinations > 1 {
        name.push_str(&format!("[sweep 2^{}]", bucket_exponent(combinations)));
    }
    name
}

/// A GPU's backend name in the profile: its UUID, so entries survive device renumbering.
pub fn gpu_profile_key(d: &GpuInfo) -> String {
    format!("gpu:{}", d.uuid)
}

/// A plan and the GPU status it was made with (`None`: the call could not use a GPU, so
/// discovery was not consulted). Execution uses this status instead of looking it up again.
pub struct PlannedCall {
    pub plan: Plan,
    pub gpus: Option<GpuStatus>,
}

/// Plans a call of `rows` rows of `indicator`. `explore == false` (for `explain`) never explores.
pub fn plan_named(
    indicator: &str,
    device: &Device,
    rows: usize,
    ctx: CallContext,
    explore: bool,
) -> Result<Plan, ExecError> {
    plan_tagged(indicator, device, rows, ctx, explore, None)
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
    plan_call(indicator, indicator, device, rows, ctx, explore, tag).map(|p| p.plan)
}

/// [`plan_tagged`], keeping the GPU status for the execution of the plan; the call's timings are
/// looked up under `workload` (the indicator's name, or [`workload_name`]'s).
pub fn plan_call(
    indicator: &str,
    workload: &str,
    device: &Device,
    rows: usize,
    ctx: CallContext,
    explore: bool,
    tag: Option<&str>,
) -> Result<PlannedCall, ExecError> {
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
            workload,
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
        let plan = planner::plan(&req)?;
        return Ok(PlannedCall { plan, gpus: None });
    }
    // CUDA starts only for calls that may use it: a forced GPU, or a large `auto` call, of an
    // indicator whose declaration allows GPUs.
    let may_use_gpu = gpu_allowed(
        registry::find(indicator).map(|d| d.devices),
        indicator,
        device,
    )? && match device {
        Device::Gpu(_) | Device::Gpus | Device::All => true,
        Device::Auto => !ctx.caller_parallel && rows >= planner::GPU_AUTO_MIN_ROWS,
        Device::Cpu => false,
    };
    let gpu_status = may_use_gpu.then(cuda::status);
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
        workload,
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
    let plan = planner::plan(&req)?;
    drop(st);
    Ok(PlannedCall {
        plan,
        gpus: gpu_status,
    })
}

/// Whether the registry lets `indicator` run on a GPU: an indicator declared CPU-only is never
/// placed on one (`auto` does not consider GPUs), and forcing one is an error that says why.
fn gpu_allowed(
    devices: Option<Devices>,
    indicator: &str,
    device: &Device,
) -> Result<bool, ExecError> {
    let Some(reason) = devices
        .filter(|d| !d.cuda)
        .map(|d| d.no_cuda_reason.unwrap_or("no CUDA kernel"))
    else {
        return Ok(true);
    };
    match device {
        Device::Gpu(_) | Device::Gpus | Device::All => Err(ExecError::NotOnGpu {
            indicator: registry::find(indicator).map_or("indicator", |d| d.name),
            device: device.to_string(),
            reason,
        }),
        Device::Auto | Device::Cpu => Ok(false),
    }
}

/// The worker count the planner would use for `n_rows` rows of `indicator` outside a parallel
/// context (`threadx.optimal_workers`); `None` rows means "a large input": the worker cap.
pub fn optimal_workers(n_rows: Option<usize>, indicator: Option<&str>) -> usize {
    if let Some(k) = threads::forced_threads() {
        return k;
    }
    let cpu = cpuinfo::cpu_info();
    let Some(rows) = n_rows else {
        return planner::worker_cap(cpu);
    };
    let ctx = CallContext {
        caller_parallel: false,
    };
    plan_named(indicator.unwrap_or("sma"), &Device::Auto, rows, ctx, false).map_or(1, |p| p.workers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_only_indicators_never_reach_a_gpu() {
        let cpu_only = Devices {
            cpu: true,
            cuda: false,
            no_cuda_reason: Some("a sequential state machine"),
        };
        assert!(!gpu_allowed(Some(cpu_only), "sma", &Device::Auto).unwrap());
        assert!(!gpu_allowed(Some(cpu_only), "sma", &Device::Cpu).unwrap());
        for forced in [Device::Gpu(None), Device::Gpus, Device::All] {
            let e = gpu_allowed(Some(cpu_only), "sma", &forced).unwrap_err();
            assert!(e
                .to_string()
                .contains("cannot run on a GPU (a sequential state machine)"));
        }
        assert!(gpu_allowed(Some(registry::CPU_AND_CUDA), "sma", &Device::Gpus).unwrap());
        assert!(gpu_allowed(None, "sma", &Device::Auto).unwrap());
    }
}
