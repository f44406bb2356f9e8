//! Test stand-in for a GPU: the same `.cu` sources compiled as C++ for the host (through
//! `host_shim.h`, with `-ffp-contract=off`, the counterpart of NVRTC's `--fmad=false`) and driven
//! by the same [`pipeline`](super::pipeline) code as the CUDA backend. Tests compare its output
//! bit-for-bit with the Rust kernels, so the kernels' arithmetic, the argument layouts, the halos,
//! the carries and the piece logic are all checked on machines without a GPU.

use std::cell::UnsafeCell;
use std::ffi::{c_char, c_int, c_uint, c_void, CString};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use super::args::{Kernel, KernelArgs};
use super::error::GpuError;
use super::pipeline::{Backend, DeviceBuffer};

type LaunchFn = unsafe extern "C" fn(*const c_char, c_uint, c_uint, *const c_void) -> c_int;

/// The host build of the kernels, compiled once per test process with `$CXX` (default `c++`).
pub struct HostKernels {
    _lib: libloading::Library,
    launch: LaunchFn,
}

fn build() -> Result<HostKernels, String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/exec/cuda");
    let out = std::env::temp_dir().join(format!("threadx-host-kernels-{}.so", std::process::id()));
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let status = Command::new(&cxx)
        .args([
            "-std=c++17",
            "-O2",
            "-ffp-contract=off",
            "-fno-fast-math",
            "-fPIC",
            "-shared",
        ])
        .args(["-Wall", "-Wextra", "-Werror"])
        .arg(dir.join("host_launch.cpp"))
        .arg("-o")
        .arg(&out)
        .status()
        .map_err(|e| format!("cannot run the C++ compiler '{cxx}': {e}"))?;
    if !status.success() {
        return Err(format!(
            "'{cxx}' failed to compile the kernels for the host: {status}"
        ));
    }
    // SAFETY: a library we just built from our own sources; its only symbol has the declared type.
    unsafe {
        let lib = libloading::Library::new(&out).map_err(|e| e.to_string())?;
        let launch = *lib
            .get::<LaunchFn>(b"tx_host_launch\0")
            .map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&out);
        Ok(HostKernels { _lib: lib, launch })
    }
}

/// The compiled library; a test cannot go on without it, so a failed build fails the test (this
/// module only exists under `cfg(test)`).
pub fn kernels() -> &'static HostKernels {
    static LIB: OnceLock<Result<HostKernels, String>> = OnceLock::new();
    match LIB.get_or_init(build) {
        Ok(k) => k,
        Err(e) => panic!("host build of the CUDA kernels: {e}"),
    }
}

/// A host array standing in for device memory; the kernels write it through its address.
pub struct HostBuf(Box<[UnsafeCell<f64>]>);

impl DeviceBuffer for HostBuf {
    fn addr(&self) -> u64 {
        self.0.as_ptr() as u64
    }
}

/// Runs launches on the calling thread, 128 threads per block.
pub struct HostBackend {
    pub launches: std::cell::Cell<usize>,
    /// Fail every launch from this one on (tests of error handling).
    pub fail_from_launch: Option<usize>,
    /// Panic at this launch (tests of panics inside a member, as cudarc may panic).
    pub panic_at_launch: Option<usize>,
}

impl HostBackend {
    pub fn new() -> HostBackend {
        HostBackend {
            launches: std::cell::Cell::new(0),
            fail_from_launch: None,
            panic_at_launch: None,
        }
    }
}

impl Backend for HostBackend {
    type Buf = HostBuf;

    fn alloc(&self, len: usize) -> Result<HostBuf, GpuError> {
        // Poisoned with NaN so a row the kernels forget to write cannot pass for a result.
        Ok(HostBuf(
            (0..len).map(|_| UnsafeCell::new(f64::NAN)).collect(),
        ))
    }

    fn upload(&self, dst: &mut HostBuf, src: &[f64]) -> Result<(), GpuError> {
        for (d, s) in dst.0.iter_mut().zip(src) {
            *d.get_mut() = *s;
        }
        Ok(())
    }

    fn download(&self, src: &HostBuf, at: usize, dst: &mut [f64]) -> Result<(), GpuError> {
        let cells = src
            .0
            .get(at..at + dst.len())
            .ok_or_else(|| GpuError::Download {
                call: "download",
                detail: "out of range".into(),
            })?;
        for (d, s) in dst.iter_mut().zip(cells) {
            // SAFETY: no launch is running (launches are synchronous here).
            *d = unsafe { *s.get() };
        }
        Ok(())
    }

    fn launch<A: KernelArgs>(
        &self,
        kernel: Kernel,
        threads: usize,
        args: &A,
    ) -> Result<(), GpuError> {
        const BLOCK: usize = 128;
        let name = CString::new(kernel.name()).map_err(|e| GpuError::Launch {
            kernel: kernel.name(),
            detail: e.to_string(),
        })?;
        let grid = threads.div_ceil(BLOCK) as c_uint;
        self.launches.set(self.launches.get() + 1);
        if self.panic_at_launch == Some(self.launches.get()) {
            panic!("injected panic at launch {}", self.launches.get());
        }
        if self
            .fail_from_launch
            .is_some_and(|n| self.launches.get() > n)
        {
            return Err(GpuError::Launch {
                kernel: kernel.name(),
                detail: "injected failure".into(),
            });
        }
        // SAFETY: `args` is the #[repr(C)] mirror of the kernel's argument struct and every
        // address in it points into a live HostBuf of this backend.
        let rc = unsafe {
            (kernels().launch)(
                name.as_ptr(),
                grid,
                BLOCK as c_uint,
                args as *const A as *const c_void,
            )
        };
        if rc != 0 {
            return Err(GpuError::KernelNotLoaded(kernel.name()));
        }
        Ok(())
    }
}

/// Runs `f` on its own thread and returns its result, or fails the test if it is still running
/// after `seconds`: a deadlock then fails instead of hanging the test run (the stuck thread is
/// left behind; the test process ends with the run). A panic inside `f` fails the test with
/// that panic.
pub fn deadline<T: Send + 'static>(
    seconds: u64,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    use std::sync::mpsc::{channel, RecvTimeoutError};
    let (tx, rx) = channel();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(seconds)) {
        Ok(v) => v,
        Err(RecvTimeoutError::Timeout) => {
            panic!("{what}: still running after {seconds} s (deadlock)")
        }
        Err(RecvTimeoutError::Disconnected) => match worker.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => panic!("{what}: ended without a result"),
        },
    }
}

/// `devset::mixed::run` as production runs it: `host` computes rows `..split_at`, and fresh
/// host-built GPUs with `shares` of the rest (one piece each) compute the tail.
pub fn run_mixed_on_host_gpus<S: crate::kernels::split::Splitter>(
    spec: &crate::kernels::Spec,
    host: &S,
    split_at: usize,
    ins: &[&[f64]],
    outs: &mut [&mut [f64]],
    shares: &[f64],
) -> Result<Vec<f64>, GpuError> {
    let with_backend = |_d: usize,
                        body: &mut dyn FnMut(&HostBackend) -> Result<(), GpuError>|
     -> Result<(), GpuError> { body(&HostBackend::new()) };
    crate::exec::devset::mixed::run(spec, host, split_at, ins, outs, |tails, prefix| {
        super::pipeline::run_multi(
            &with_backend,
            spec,
            ins,
            tails,
            shares,
            &vec![usize::MAX; shares.len()],
            prefix,
        )
    })
}
