//! The CUDA backend: the `.cu` kernels of this folder (their specs are in each file's header),
//! compiled at run time by NVRTC ([`nvrtc`]), found and initialised lazily and without panics
//! ([`discovery`]), driven by the device-independent [`pipeline`] through cudarc's driver API
//! ([`driver`]). See docs/architecture.md, "The GPU path".
//!
//! cudarc panics where it cannot load a library or symbol; every entry point here runs inside
//! [`error::catch`], so such a panic becomes a [`GpuError`] and the call computes on the CPU
//! instead. Every entry point also puts the caller's current CUDA context back when it returns
//! ([`context`]), and GPUs are locked by the rules of [`locks`].

pub mod arch;
pub mod args;
pub mod batch;
pub mod context;
pub mod discovery;
pub mod driver;
pub mod error;
pub mod image_cache;
pub mod locks;
pub mod nvrtc;
pub mod nvrtc_lib;
pub mod nvrtc_shadow;
pub mod pipeline;
pub mod reopen;
pub mod sizing;

#[cfg(test)]
mod concurrency_tests;
#[cfg(test)]
mod family_tests;
#[cfg(test)]
mod host;
#[cfg(test)]
mod host_tests;
#[cfg(test)]
mod nvrtc_fake_tests;

use std::time::Instant;

use crate::kernels::Spec;
use context::restoring;
pub use discovery::{GpuInfo, GpuStatus};
use error::catch;
pub use error::{GpuError, GpuFailure};
use sizing::{member_piece_rows, piece_rows};

/// Discovery's result (runs discovery, and so initialises CUDA, on first use).
pub fn status() -> GpuStatus {
    discovery::status()
}

/// What one GPU call did, for the profile's kernel and link statistics.
#[derive(Debug, Clone)]
pub struct GpuRun {
    pub seconds: f64,
    pub h2d_bytes: usize,
    pub d2h_bytes: usize,
    pub pieces_rows: usize,
}

/// Real (not simulated) GPU `index` of `st` and the number of per-device state slots of
/// [`driver::with_device`]: one past the highest real ordinal, since discovery may leave out a
/// GPU that NVRTC cannot serve (its ordinal then has an unused slot).
fn real_gpu(st: &GpuStatus, index: usize) -> Result<(GpuInfo, usize), GpuError> {
    let real: Vec<&GpuInfo> = st
        .devices
        .iter()
        .filter(|d| d.simulated.is_none())
        .collect();
    let info = real
        .iter()
        .find(|d| d.index == index)
        .map(|d| (*d).clone())
        .ok_or(GpuError::NotRealGpu(index))?;
    let slots = real.iter().map(|d| d.index + 1).max().unwrap_or(0);
    Ok((info, slots))
}

/// Computes `spec` on GPU `index` of `gpus` (every row from the lookback on, like
/// [`Spec::run`]).
pub fn run(
    spec: &Spec,
    gpus: &GpuStatus,
    index: usize,
    inputs: &[&[f64]],
    outs: &mut [&mut [f64]],
) -> Result<GpuRun, GpuError> {
    let (info, count) = real_gpu(gpus, index)?;
    catch("CUDA", || {
        restoring(&context::Driver, || {
            driver::with_device(&info, count, |dev| {
                let started = Instant::now();
                let rows = piece_rows(spec, dev.free_rows()?);
                let (h2d, d2h) = {
                    // SAFETY: the backend lives only inside this closure's borrow of `dev`.
                    let be = unsafe { driver::CudaBackend::new(dev)? };
                    pipeline::run(&be, spec, inputs, outs, rows)?;
                    spec.finish(outs);
                    (be.h2d_bytes.get(), be.d2h_bytes.get())
                };
                dev.synchronize()?;
                Ok(GpuRun {
                    seconds: started.elapsed().as_secs_f64(),
                    h2d_bytes: h2d,
                    d2h_bytes: d2h,
                    pieces_rows: rows,
                })
            })
        })
    })
}

/// Computes a batch on GPU `index` of `gpus`: every call of `specs` on every segment
/// (`bounds[i]..bounds[i + 1]`) of `inputs`, into `outs[call]`, the inputs uploaded once
/// ([`batch::run_batch`]; each segment's rows are the bits of [`run`] on it alone). `Ok(None)`,
/// with nothing computed, when the inputs would take more than half of the GPU's free memory: the
/// caller then runs the segments one by one.
pub fn run_batch(
    specs: &[Spec],
    gpus: &GpuStatus,
    index: usize,
    inputs: &[&[f64]],
    bounds: &[usize],
    outs: &mut [Vec<&mut [f64]>],
) -> Result<Option<GpuRun>, GpuError> {
    let (info, count) = real_gpu(gpus, index)?;
    let resident_rows: usize = inputs.iter().map(|x| x.len()).sum();
    catch("CUDA", || {
        restoring(&context::Driver, || {
            driver::with_device(&info, count, |dev| {
                if resident_rows > dev.free_rows()? / 2 {
                    return Ok(None);
                }
                let started = Instant::now();
                let (h2d, d2h, rows) = {
                    // SAFETY: the backend lives only inside this closure's borrow of `dev`.
                    let be = unsafe { driver::CudaBackend::new(dev)? };
                    let mut last = 0;
                    batch::run_batch(&be, specs, inputs, bounds, outs, |spec| {
                        last = piece_rows(spec, dev.free_rows()?);
                        Ok(last)
                    })?;
                    (be.h2d_bytes.get(), be.d2h_bytes.get(), last)
                };
                dev.synchronize()?;
                Ok(Some(GpuRun {
                    seconds: started.elapsed().as_secs_f64(),
                    h2d_bytes: h2d,
                    d2h_bytes: d2h,
                    pieces_rows: rows,
                }))
            })
        })
    })
}

/// Computes `spec` across the real GPUs `indices` of `gpus` with `shares` of the rows (see
/// [`pipeline::run_multi`]); returns each GPU's busy seconds.
///
/// Every GPU of the set is locked here, on the caller's thread, in ascending index order, before
/// any member starts ([`locks::DeviceSlots::with_set`]: calls holding several GPUs must not
/// deadlock each other). The caller's thread also opens each GPU and reads its free memory, so
/// the caller's context is saved and restored around the whole call.
pub fn run_multi(
    spec: &Spec,
    gpus: &GpuStatus,
    indices: &[usize],
    shares: &[f64],
    inputs: &[&[f64]],
    outs: &mut [&mut [f64]],
    prefix: Option<pipeline::Prefix<'_>>,
) -> Result<Vec<f64>, GpuError> {
    let found: Vec<(GpuInfo, usize)> = indices
        .iter()
        .map(|i| real_gpu(gpus, *i))
        .collect::<Result<_, _>>()?;
    let count = found.first().map_or(0, |f| f.1);
    let infos: Vec<GpuInfo> = found.into_iter().map(|f| f.0).collect();
    catch("CUDA", || {
        restoring(&context::Driver, || {
            driver::devices(count).with_set(indices, |set| {
                // Free memory now, with every member locked: no other threadx call can take
                // memory from these GPUs until this call ends.
                let free = (0..set.len())
                    .map(|d| {
                        set.with(d, |slot| driver::open(slot, &infos[d])?.free_rows())
                            .and_then(|r| r)
                    })
                    .collect::<Result<Vec<usize>, GpuError>>()?;
                let rows = member_piece_rows(spec, &free);
                let with_backend =
                    |d: usize,
                     body: &mut dyn FnMut(&driver::CudaBackend) -> Result<(), GpuError>|
                     -> Result<(), GpuError> {
                        catch("CUDA", || {
                            set.with(d, |slot| {
                                let dev = driver::open(slot, &infos[d])?;
                                // SAFETY: the backend lives only inside this closure's borrow
                                // of `dev`.
                                let be = unsafe { driver::CudaBackend::new(dev)? };
                                body(&be)
                            })?
                        })
                    };
                pipeline::run_multi(&with_backend, spec, inputs, outs, shares, &rows, prefix)
            })?
        })
    })
}

/// Compiles every kernel for `arch` (no GPU needed) and returns the CUBIN size and NVRTC version.
pub fn compile_check(arch: &str) -> Result<(usize, (i32, i32)), GpuError> {
    nvrtc::validate_arch(arch)?;
    let (_, version) = discovery::nvrtc()?;
    let cubin = nvrtc::compile(arch)?;
    Ok((cubin.len(), version))
}

/// Measures GPU `index`'s host<->device link: best of 3 copies of 64 MiB each way through the
/// pinned staging path the calls use, and the best of 10 one-value round trips for latency.
pub fn measure_link(index: usize) -> Result<crate::exec::profile::schema::LinkModel, GpuError> {
    use pipeline::Backend;
    let (info, count) = real_gpu(&status(), index)?;
    catch("CUDA link measurement", || {
        restoring(&context::Driver, || {
            driver::with_device(&info, count, |dev| {
                // SAFETY: the backend lives only inside this closure's borrow of `dev`.
                let be = unsafe { driver::CudaBackend::new(dev)? };
                let sync = |be: &driver::CudaBackend| be.synchronize();
                let big = vec![1.0f64; 8 << 20];
                let mut back = vec![0.0f64; big.len()];
                let mut buf = be.alloc(big.len())?;
                let best = |f: &mut dyn FnMut() -> Result<(), GpuError>, runs: usize| {
                    let mut best = f64::INFINITY;
                    for _ in 0..runs {
                        let t = Instant::now();
                        f()?;
                        best = best.min(t.elapsed().as_secs_f64());
                    }
                    Ok::<f64, GpuError>(best)
                };
                be.upload(&mut buf, &big)?;
                sync(&be)?;
                let bytes = (big.len() * 8) as f64;
                let h2d = best(
                    &mut || {
                        be.upload(&mut buf, &big)?;
                        sync(&be)
                    },
                    3,
                )?;
                let d2h = best(&mut || be.download(&buf, 0, &mut back), 3)?;
                let mut one = [0.0f64];
                let latency = best(
                    &mut || {
                        be.upload(&mut buf, &one)?;
                        sync(&be)?;
                        be.download(&buf, 0, &mut one)
                    },
                    10,
                )?;
                Ok(crate::exec::profile::schema::LinkModel {
                    h2d_gb_per_s: bytes / h2d / 1e9,
                    d2h_gb_per_s: bytes / d2h / 1e9,
                    latency_us: latency * 1e6 / 2.0,
                    samples: 1,
                })
            })
        })
    })
}
