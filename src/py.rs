//! Layer 4: the few pyo3 functions the Python package needs (`threadx._internal`).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::exec::threads;

/// The crate version the extension was built from.
#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
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

/// Workers a call over `n_rows` rows would get outside a Polars parallel context.
#[pyfunction]
fn workers_for(n_rows: usize) -> usize {
    threads::workers_for(n_rows, false)
}

#[pymodule]
fn _internal(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_function(wrap_pyfunction!(set_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_threads, m)?)?;
    m.add_function(wrap_pyfunction!(workers_for, m)?)?;
    Ok(())
}
