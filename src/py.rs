//! Layer 4: the few pyo3 functions the Python package needs (`threadx._internal`). Structured
//! results cross as JSON text; the Python side wraps them in small classes.

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use std::collections::BTreeMap;

use crate::exec::{self, cpuinfo, profile, threads, CallContext, Device};
use crate::kernels::registry;

fn to_json<T: serde::Serialize>(value: &T) -> PyResult<String> {
    serde_json::to_string(value).map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

/// The crate version the extension was built from.
#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// The registry as JSON: one object per indicator with its declaration (see
/// `kernels::registry::Indicator`), plus its TA-Lib alias.
#[pyfunction]
fn catalog_json() -> PyResult<String> {
    let rows: Vec<serde_json::Value> = registry::INDICATORS
        .iter()
        .map(|ind| {
            let mut v = serde_json::to_value(ind).unwrap_or_default();
            v["alias"] = serde_json::json!(ind.alias());
            v["call_inputs"] = serde_json::json!(ind.call_inputs().collect::<Vec<_>>());
            v
        })
        .collect();
    to_json(&rows)
}

/// TA-Lib's moving-average type names, indexed by their `matype` code.
#[pyfunction]
fn ma_types() -> Vec<&'static str> {
    crate::kernels::declaration::MA_TYPES.to_vec()
}

fn spec_of(name: &str, params: BTreeMap<String, f64>) -> PyResult<crate::kernels::Spec> {
    registry::build_named(name, params.iter().map(|(k, v)| (k.as_str(), *v)))
        .map_err(|e| PyValueError::new_err(e.to_string()))
}

/// Validates `params` of `name` (ValueError naming the function, the parameter and the expected
/// range) and returns the canonical indicator name.
#[pyfunction]
fn check_params(name: &str, params: BTreeMap<String, f64>) -> PyResult<&'static str> {
    Ok(spec_of(name, params)?.name())
}

/// Warm-up rows of `name` with `params` (defaults for the missing ones).
#[pyfunction]
fn lookback(name: &str, params: BTreeMap<String, f64>) -> PyResult<usize> {
    Ok(spec_of(name, params)?.lookback())
}

/// Forces the worker count of every later call (`None` returns control to the optimizer).
#[pyfunction]
#[pyo3(signature = (n=None))]
fn set_threads(n: Option<usize>) -> PyResult<()> {
    threads::set_threads(n).map_err(PyValueError::new_err)
}

/// The forced worker count (from `set_threads` or `THREADX_NUM_THREADS`), if any.
#[pyfunction]
fn get_threads() -> Option<usize> {
    threads::forced_threads()
}

/// Workers the planner would use for `n_rows` rows of `indicator` outside a parallel context.
#[pyfunction]
#[pyo3(signature = (n_rows=None, indicator=None))]
fn optimal_workers(n_rows: Option<usize>, indicator: Option<&str>) -> usize {
    exec::optimal_workers(n_rows, indicator)
}

/// CPU model and core counts (JSON).
#[pyfunction]
fn cpu_info() -> PyResult<String> {
    to_json(cpuinfo::cpu_info())
}

/// The plan for a call (JSON), without running it and without exploration.
#[pyfunction]
#[pyo3(signature = (indicator, rows, device, workload_tag=None))]
fn explain(
    indicator: &str,
    rows: usize,
    device: &str,
    workload_tag: Option<&str>,
) -> PyResult<String> {
    let device = Device::parse(device)
        .map_err(|m| PyValueError::new_err(format!("threadx.explain: {m}")))?;
    let plan = exec::plan_tagged(
        indicator,
        &device,
        rows,
        CallContext::default(),
        false,
        workload_tag,
    )
    .map_err(|e| PyValueError::new_err(e.to_string()))?;
    to_json(&plan)
}

/// Where the profile is stored (`None` when profiling in memory only).
#[pyfunction]
fn profile_path() -> Option<String> {
    profile::state()
        .path
        .as_ref()
        .map(|p| p.display().to_string())
}

/// Why the profile is in memory only, if it is.
#[pyfunction]
fn profile_memory_only() -> Option<String> {
    profile::state().memory_only.clone()
}

/// This machine's fingerprint (JSON) and its id.
#[pyfunction]
fn fingerprint() -> PyResult<(String, String)> {
    let fp = profile::state().fingerprint.clone();
    Ok((fp.id(), to_json(&fp)?))
}

/// Writes pending samples now; returns the error text if the write failed (profiling then goes
/// on in memory).
#[pyfunction]
fn profile_flush(py: Python<'_>) -> Option<String> {
    py.detach(profile::flush).err()
}

/// Removes entries of other machines and builds not updated for `days` days (default: the
/// configured expiry); returns their ids, or raises OSError when the file cannot be written.
#[pyfunction]
#[pyo3(signature = (days=None))]
fn profile_prune(py: Python<'_>, days: Option<u64>) -> PyResult<Vec<String>> {
    py.detach(move || profile::prune(days))
        .map_err(pyo3::exceptions::PyOSError::new_err)
}

/// The whole profile as this process sees it (JSON), after a flush.
#[pyfunction]
fn profile_show(py: Python<'_>) -> PyResult<String> {
    let _ = py.detach(profile::flush);
    to_json(&profile::state().snapshot())
}

/// Forgets this machine's entry (others stay).
#[pyfunction]
fn profile_reset(py: Python<'_>) -> Option<String> {
    py.detach(profile::reset).err()
}

/// Re-reads `THREADX_PROFILE` / the cache location and reloads the profile.
#[pyfunction]
fn profile_reload(py: Python<'_>) {
    py.detach(profile::reload)
}

/// Adds one measurement (used by `autotune`, and by tests to build profiles).
#[pyfunction]
fn profile_record(indicator: &str, rows: usize, backend: &str, seconds: f64) {
    profile::record(profile::Sample {
        indicator: indicator.to_string(),
        rows,
        backend: backend.to_string(),
        seconds,
        unix: profile::store::unix_now(),
    });
}

/// What GPU discovery found (runs discovery, which starts CUDA, on first use), as JSON.
#[pyfunction]
fn gpu_status(py: Python<'_>) -> PyResult<String> {
    let status = py.detach(crate::exec::cuda::status);
    let devices: Vec<serde_json::Value> = status
        .devices
        .iter()
        .map(|d| {
            serde_json::json!({
                "index": d.index,
                "name": d.name,
                "uuid": d.uuid,
                "compute_capability": [d.compute_capability.0, d.compute_capability.1],
                "arch": d.arch(),
                "memory_bytes": d.memory_bytes,
                "simulated": d.simulated.is_some(),
                "kernel_build": d.kernel_build,
                "open_state": d.open_state,
            })
        })
        .collect();
    to_json(&serde_json::json!({
        "available": !status.devices.is_empty(),
        "reason": status.reason,
        "devices": devices,
        "driver_version": status.driver_version,
        "nvrtc_version": status.nvrtc_version,
        "nvrtc_library": status.nvrtc_library,
        "nvrtc_archs": status.nvrtc_archs,
        "nvrtc_mismatch": status.nvrtc_mismatch,
    }))
}

/// Compiles every kernel for `arch` with NVRTC (no GPU needed): (cubin bytes, NVRTC version).
#[pyfunction]
fn gpu_compile(py: Python<'_>, arch: &str) -> PyResult<(usize, String)> {
    py.detach(|| crate::exec::cuda::compile_check(arch))
        .map(|(bytes, (major, minor))| (bytes, format!("{major}.{minor}")))
        .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(format!("threadx.gpu: {e}")))
}

/// Names of the kernels NVRTC compiles.
#[pyfunction]
fn gpu_kernel_names() -> Vec<&'static str> {
    crate::exec::cuda::args::Kernel::ALL
        .iter()
        .map(|k| k.name())
        .collect()
}

/// Directories to search for NVRTC (the Python package registers the NVIDIA wheels' folders).
#[pyfunction]
fn gpu_add_nvrtc_dirs(dirs: Vec<String>) {
    crate::exec::cuda::discovery::add_nvrtc_search_dirs(dirs.into_iter().map(Into::into));
}

/// Measures GPU `index`'s link, stores it in the profile and returns it as JSON.
#[pyfunction]
fn gpu_measure_link(py: Python<'_>, index: usize) -> PyResult<String> {
    let link = py
        .detach(|| crate::exec::cuda::measure_link(index))
        .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(format!("threadx.gpu: {e}")))?;
    let key = crate::exec::cuda::status()
        .devices
        .iter()
        .find(|d| d.index == index)
        .map(crate::exec::gpu_profile_key)
        .unwrap_or_else(|| format!("gpu:{index}"));
    let _ = py.detach(|| crate::exec::profile::set_link(&key, link.clone()));
    to_json(&link)
}

/// Every workload tag's split ratios (member profile name → share), as JSON.
#[pyfunction]
fn balance_get() -> PyResult<String> {
    to_json(&crate::exec::profile::balances())
}

/// Stores `tag`'s split ratios (JSON object of member profile name → share) and writes them.
#[pyfunction]
fn balance_set(py: Python<'_>, tag: &str, ratios: &str) -> PyResult<()> {
    let ratios: std::collections::BTreeMap<String, f64> = serde_json::from_str(ratios)
        .map_err(|e| PyValueError::new_err(format!("threadx.gpu: bad ratios: {e}")))?;
    let tag = tag.to_string();
    let _ = py.detach(move || crate::exec::profile::set_balance(&tag, ratios));
    Ok(())
}

#[pymodule]
fn _internal(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_function(wrap_pyfunction!(catalog_json, m)?)?;
    m.add_function(wrap_pyfunction!(check_params, m)?)?;
    m.add_function(wrap_pyfunction!(ma_types, m)?)?;
    m.add_function(wrap_pyfunction!(lookback, m)?)?;
    m.add_function(wrap_pyfunction!(set_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_threads, m)?)?;
    m.add_function(wrap_pyfunction!(optimal_workers, m)?)?;
    m.add_function(wrap_pyfunction!(cpu_info, m)?)?;
    m.add_function(wrap_pyfunction!(explain, m)?)?;
    m.add_function(wrap_pyfunction!(profile_path, m)?)?;
    m.add_function(wrap_pyfunction!(profile_memory_only, m)?)?;
    m.add_function(wrap_pyfunction!(fingerprint, m)?)?;
    m.add_function(wrap_pyfunction!(profile_flush, m)?)?;
    m.add_function(wrap_pyfunction!(profile_show, m)?)?;
    m.add_function(wrap_pyfunction!(profile_prune, m)?)?;
    m.add_function(wrap_pyfunction!(profile_reset, m)?)?;
    m.add_function(wrap_pyfunction!(profile_reload, m)?)?;
    m.add_function(wrap_pyfunction!(profile_record, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_status, m)?)?;
    m.add_function(wrap_pyfunction!(balance_get, m)?)?;
    m.add_function(wrap_pyfunction!(balance_set, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_compile, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_kernel_names, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_add_nvrtc_dirs, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_measure_link, m)?)?;
    Ok(())
}
