//! The CUDA [`Backend`]: one context, stream and module per GPU, set up on the first call that
//! uses that GPU and kept for the life of the process. Calls on one GPU are serialised (a mutex
//! per device, taken by the rules of [`locks`](super::locks)); device memory comes from the
//! stream-ordered pool when the GPU has one.
//!
//! Transfers read the caller's slices (Arrow buffers, in place) through two reusable pinned
//! staging buffers: while the DMA engine copies one, the CPU fills the other, and downloads drain
//! one while the next is in flight. Pinned memory is allocated without the write-combined flag,
//! because the CPU reads downloads back out of it.

use std::sync::{Arc, OnceLock};

use cudarc::driver::sys::{CUdeviceptr, CUevent, CUstream};
use cudarc::driver::{
    result, CudaContext, CudaFunction, CudaModule, CudaStream, LaunchConfig, PushKernelArg,
};

use super::args::{Kernel, KernelArgs};
use super::discovery::GpuInfo;
use super::error::GpuError;
use super::locks::DeviceSlots;
use super::nvrtc;
use super::pipeline::{Backend, DeviceBuffer};
use super::reopen;
use crate::exec::config::GpuStep;

/// Rows (f64) per staging buffer: 8 MiB, large enough to run copies near link speed.
const STAGE_ROWS: usize = 1 << 20;
const THREADS_PER_BLOCK: u32 = 256;

/// A failed driver `call` that opens, drives or synchronises the device.
fn err(call: &'static str) -> impl Fn(result::DriverError) -> GpuError {
    move |e| GpuError::Driver {
        call,
        detail: format!("{e:?}"),
    }
}

/// A pinned host buffer and the event that marks its last copy done.
struct Stage {
    ptr: *mut f64,
    event: CUevent,
    pending: bool,
}

/// Everything a GPU keeps between calls.
pub struct DeviceState {
    pub info: GpuInfo,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    _module: Arc<CudaModule>,
    functions: Vec<(Kernel, CudaFunction)>,
    stages: [Stage; 2],
    async_alloc: bool,
    pub compile_origin: String,
}

// SAFETY: the raw pinned pointers and events are only used while the device's mutex is held.
unsafe impl Send for DeviceState {}

impl DeviceState {
    fn open(info: GpuInfo) -> Result<DeviceState, GpuError> {
        let ctx = CudaContext::new(info.index).map_err(err("cuCtx (primary context)"))?;
        // Buffers are used on one stream only: cudarc's cross-stream event tracking is not needed.
        // SAFETY: no CudaSlice of this context is shared between streams.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(err("cuStreamCreate"))?;
        let target = nvrtc::target_for(&info)?;
        // A cached image the driver rejects is deleted and rebuilt once (image_cache).
        let loaded = nvrtc::load(target, |image| {
            ctx.load_module(cudarc::nvrtc::Ptx::from_binary(image.to_vec()))
                .map_err(err("cuModuleLoadData"))
        })?;
        let module = loaded.module;
        let mut functions = Vec::new();
        for k in Kernel::ALL {
            let f = module.load_function(k.name()).map_err(err(k.name()))?;
            functions.push((k, f));
        }
        // A failed open is retried (reopen.rs), so what a half-done open allocated is freed here
        // rather than leaked once per retry.
        let stage = || -> Result<Stage, GpuError> {
            // SAFETY: plain allocations in the bound context; freed in Drop, or below on failure.
            unsafe {
                let ptr = result::malloc_host(STAGE_ROWS * 8, 0).map_err(err("cuMemHostAlloc"))?
                    as *mut f64;
                let event = result::event::create(
                    cudarc::driver::sys::CUevent_flags::CU_EVENT_DISABLE_TIMING,
                )
                .map_err(err("cuEventCreate"))
                .inspect_err(|_| {
                    let _ = result::free_host(ptr as *mut std::ffi::c_void);
                })?;
                Ok(Stage {
                    ptr,
                    event,
                    pending: false,
                })
            }
        };
        let first = stage()?;
        let second = stage().inspect_err(|_| {
            // SAFETY: allocated just above and not shared; freed once.
            unsafe {
                let _ = result::free_host(first.ptr as *mut std::ffi::c_void);
                let _ = result::event::destroy(first.event);
            }
        })?;
        let stages = [first, second];
        let async_alloc = ctx.has_async_alloc();
        Ok(DeviceState {
            info,
            ctx,
            stream,
            _module: module,
            functions,
            stages,
            async_alloc,
            compile_origin: loaded.origin,
        })
    }

    fn raw_stream(&self) -> CUstream {
        self.stream.cu_stream()
    }

    /// Free device memory in f64 rows (for sizing pieces).
    pub fn free_rows(&self) -> Result<usize, GpuError> {
        self.ctx.bind_to_thread().map_err(err("cuCtxSetCurrent"))?;
        let (free, _) = self.ctx.mem_get_info().map_err(err("cuMemGetInfo"))?;
        Ok(free / 8)
    }

    /// Waits for the stage's previous copy.
    fn settle(stage: &mut Stage) -> Result<(), GpuError> {
        if stage.pending {
            // SAFETY: a live event of this context.
            unsafe { result::event::synchronize(stage.event) }
                .map_err(err("cuEventSynchronize"))?;
            stage.pending = false;
        }
        Ok(())
    }

    pub fn synchronize(&self) -> Result<(), GpuError> {
        self.stream
            .synchronize()
            .map_err(err("cuStreamSynchronize"))
    }
}

impl Drop for DeviceState {
    fn drop(&mut self) {
        let _ = self.ctx.bind_to_thread();
        let _ = self.stream.synchronize();
        for s in &self.stages {
            // SAFETY: allocated in `open`, freed once.
            unsafe {
                let _ = result::free_host(s.ptr as *mut std::ffi::c_void);
                let _ = result::event::destroy(s.event);
            }
        }
    }
}

/// Device memory of `len` f64, freed on drop (stream-ordered when the pool is used).
pub struct CudaBuf {
    ptr: CUdeviceptr,
    stream: CUstream,
    pooled: bool,
}

impl DeviceBuffer for CudaBuf {
    fn addr(&self) -> u64 {
        self.ptr
    }
}

impl Drop for CudaBuf {
    fn drop(&mut self) {
        // SAFETY: allocated by `alloc` below; the device's context is current on this thread for
        // the whole call that owns the buffer.
        unsafe {
            let _ = if self.pooled {
                result::free_async(self.ptr, self.stream)
            } else {
                result::free_sync(self.ptr)
            };
        }
    }
}

/// A call's view of one GPU, whose state stays locked (by [`with_device`], or by the call's
/// [`LockedSet`](super::locks::LockedSet)) while it lives.
pub struct CudaBackend {
    dev: std::cell::RefCell<&'static mut DeviceState>,
    /// Bytes moved each way, for the link model.
    pub h2d_bytes: std::cell::Cell<usize>,
    pub d2h_bytes: std::cell::Cell<usize>,
}

impl CudaBackend {
    /// # Safety
    /// The backend must be dropped before `dev`'s borrow ends: create it inside the closure given
    /// to [`with_device`] (or [`LockedSet::with`](super::locks::LockedSet::with)) and do not move
    /// it out (it is neither `Send` nor `Clone`).
    pub unsafe fn new(dev: &mut DeviceState) -> Result<CudaBackend, GpuError> {
        dev.ctx.bind_to_thread().map_err(err("cuCtxSetCurrent"))?;
        // SAFETY: the caller keeps the backend inside the borrow's scope (see above); the
        // 'static only lets the backend be one type whatever the borrow's lifetime.
        let dev: &'static mut DeviceState = unsafe { &mut *(dev as *mut DeviceState) };
        Ok(CudaBackend {
            dev: std::cell::RefCell::new(dev),
            h2d_bytes: std::cell::Cell::new(0),
            d2h_bytes: std::cell::Cell::new(0),
        })
    }

    pub fn synchronize(&self) -> Result<(), GpuError> {
        self.dev.borrow().synchronize()
    }
}

impl Backend for CudaBackend {
    type Buf = CudaBuf;

    fn alloc(&self, len: usize) -> Result<CudaBuf, GpuError> {
        GpuError::injected(GpuStep::Alloc)?;
        let dev = self.dev.borrow();
        let bytes = len.max(1) * 8;
        let stream = dev.raw_stream();
        // SAFETY: the context is current; the buffer frees itself on drop.
        let ptr = unsafe {
            if dev.async_alloc {
                result::malloc_async(stream, bytes)
            } else {
                result::malloc_sync(bytes)
            }
        }
        .map_err(|e| GpuError::Alloc {
            call: "device allocation",
            detail: format!("{e:?}"),
        })?;
        Ok(CudaBuf {
            ptr,
            stream,
            pooled: dev.async_alloc,
        })
    }

    fn upload(&self, dst: &mut CudaBuf, src: &[f64]) -> Result<(), GpuError> {
        GpuError::injected(GpuStep::Upload)?;
        let mut dev = self.dev.borrow_mut();
        let stream = dev.raw_stream();
        for (i, chunk) in src.chunks(STAGE_ROWS).enumerate() {
            let stage = &mut dev.stages[i % 2];
            DeviceState::settle(stage)?;
            // SAFETY: the stage holds STAGE_ROWS f64 and no copy is using it (settled above);
            // the destination range lies inside `dst`.
            unsafe {
                let pinned = std::slice::from_raw_parts_mut(stage.ptr, chunk.len());
                pinned.copy_from_slice(chunk);
                result::memcpy_htod_async(dst.ptr + (i * STAGE_ROWS * 8) as u64, pinned, stream)
                    .map_err(|e| GpuError::Upload {
                        call: "host-to-device copy",
                        detail: format!("{e:?}"),
                    })?;
                result::event::record(stage.event, stream).map_err(err("cuEventRecord"))?;
            }
            stage.pending = true;
        }
        self.h2d_bytes.set(self.h2d_bytes.get() + src.len() * 8);
        Ok(())
    }

    fn download(&self, src: &CudaBuf, at: usize, dst: &mut [f64]) -> Result<(), GpuError> {
        let mut dev = self.dev.borrow_mut();
        let stream = dev.raw_stream();
        let chunks: Vec<(usize, usize)> = (0..dst.len())
            .step_by(STAGE_ROWS)
            .map(|s| (s, (s + STAGE_ROWS).min(dst.len())))
            .collect();
        let enqueue = |dev: &mut DeviceState, i: usize| -> Result<(), GpuError> {
            let (s, e) = chunks[i];
            let stage = &mut dev.stages[i % 2];
            DeviceState::settle(stage)?;
            // SAFETY: as in upload; the source range lies inside `src`.
            unsafe {
                let pinned = std::slice::from_raw_parts_mut(stage.ptr, e - s);
                result::memcpy_dtoh_async(pinned, src.ptr + ((at + s) * 8) as u64, stream)
                    .map_err(|e| GpuError::Download {
                        call: "device-to-host copy",
                        detail: format!("{e:?}"),
                    })?;
                result::event::record(stage.event, stream).map_err(err("cuEventRecord"))?;
            }
            stage.pending = true;
            Ok(())
        };
        if !chunks.is_empty() {
            enqueue(&mut dev, 0)?;
        }
        for i in 0..chunks.len() {
            if i + 1 < chunks.len() {
                enqueue(&mut dev, i + 1)?;
            }
            let (s, e) = chunks[i];
            let stage = &mut dev.stages[i % 2];
            DeviceState::settle(stage)?;
            // SAFETY: the copy into this stage has completed (settled).
            let pinned = unsafe { std::slice::from_raw_parts(stage.ptr, e - s) };
            dst[s..e].copy_from_slice(pinned);
        }
        self.d2h_bytes.set(self.d2h_bytes.get() + dst.len() * 8);
        Ok(())
    }

    fn launch<A: KernelArgs>(
        &self,
        kernel: Kernel,
        threads: usize,
        args: &A,
    ) -> Result<(), GpuError> {
        GpuError::injected(GpuStep::Launch)?;
        if threads == 0 {
            return Ok(());
        }
        let dev = self.dev.borrow();
        let f = dev
            .functions
            .iter()
            .find(|(k, _)| *k == kernel)
            .map(|(_, f)| f)
            .ok_or(GpuError::KernelNotLoaded(kernel.name()))?;
        let grid = threads.div_ceil(THREADS_PER_BLOCK as usize);
        let grid = u32::try_from(grid).map_err(|_| GpuError::Launch {
            kernel: kernel.name(),
            detail: format!("{threads} threads is too many"),
        })?;
        let cfg = LaunchConfig {
            grid_dim: (grid, 1, 1),
            block_dim: (THREADS_PER_BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut builder = dev.stream.launch_builder(f);
        builder.arg(args);
        // SAFETY: the argument block matches the kernel's parameter (args.rs mirrors common.cuh)
        // and every address in it is a live buffer of this call.
        unsafe { builder.launch(cfg) }.map_err(|e| GpuError::Launch {
            kernel: kernel.name(),
            detail: format!("{e:?}"),
        })?;
        Ok(())
    }
}

/// Per-GPU state, opened on first use. `None` until then; a failed open is retried after a
/// backoff (see `reopen`), not on every call and not never.
pub type Slot = reopen::Slot<DeviceState>;
static DEVICES: OnceLock<DeviceSlots<Slot>> = OnceLock::new();

/// Every real GPU's slot (`count` of them, fixed by the first call). All locking of GPUs goes
/// through these slots and the rules of [`locks`](super::locks).
pub fn devices(count: usize) -> &'static DeviceSlots<Slot> {
    DEVICES.get_or_init(|| DeviceSlots::new(count, || None))
}

/// The state in a locked `slot`, opening GPU `info` first if needed.
pub fn open<'s>(slot: &'s mut Slot, info: &GpuInfo) -> Result<&'s mut DeviceState, GpuError> {
    reopen::get_or_open(info.index, slot, || DeviceState::open(info.clone()))
}

/// Runs `f` with the GPU `index`'s state, opening it first if needed (single-device calls; a
/// multi-device call locks its whole set at once, see [`locks`](super::locks)).
pub fn with_device<T>(
    info: &GpuInfo,
    count: usize,
    f: impl FnOnce(&mut DeviceState) -> Result<T, GpuError>,
) -> Result<T, GpuError> {
    let mut guard = devices(count).lock_one(info.index)?;
    f(open(&mut guard, info)?)
}
