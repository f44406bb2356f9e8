//! NVRTC called through our own handle. Discovery picks one NVRTC by absolute path (`THREADX_NVRTC`,
//! the toolkit, the NVIDIA wheels); cudarc's bindings instead open it by bare name, trying the
//! unversioned `libnvrtc.so` first, which the dynamic loader does not match against an already
//! loaded `libnvrtc.so.12`. A system toolkit's NVRTC on the loader path would then serve every
//! call while the status named the other library, and an old toolkit fails to compile for newer
//! GPUs. So the few functions we use are resolved from the library discovery opened, and cudarc's
//! NVRTC bindings are never called. Every symbol is resolved when the library is opened, so a
//! library that is not a usable NVRTC fails there, with a message, instead of panicking later.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::Path;

use super::error::GpuError;

type Program = *mut c_void;
type VersionFn = unsafe extern "C" fn(*mut c_int, *mut c_int) -> c_int;
type ErrorStringFn = unsafe extern "C" fn(c_int) -> *const c_char;
type NumArchsFn = unsafe extern "C" fn(*mut c_int) -> c_int;
type ArchsFn = unsafe extern "C" fn(*mut c_int) -> c_int;
type CreateFn = unsafe extern "C" fn(
    *mut Program,
    *const c_char,
    *const c_char,
    c_int,
    *const *const c_char,
    *const *const c_char,
) -> c_int;
type DestroyFn = unsafe extern "C" fn(*mut Program) -> c_int;
type CompileFn = unsafe extern "C" fn(Program, c_int, *const *const c_char) -> c_int;
type SizeFn = unsafe extern "C" fn(Program, *mut usize) -> c_int;
type GetFn = unsafe extern "C" fn(Program, *mut c_char) -> c_int;

/// What NVRTC emits: SASS for one architecture, or PTX (with its terminating NUL, the form
/// `cuModuleLoadData` takes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Cubin,
    Ptx,
}

/// An open NVRTC library and the functions we call, resolved from it.
pub struct NvrtcLib {
    version: VersionFn,
    error_string: ErrorStringFn,
    num_archs: NumArchsFn,
    archs: ArchsFn,
    create: CreateFn,
    destroy: DestroyFn,
    compile: CompileFn,
    log_size: SizeFn,
    log: GetFn,
    cubin_size: SizeFn,
    cubin: GetFn,
    ptx_size: SizeFn,
    ptx: GetFn,
    /// Keeps the function pointers above valid; dropped last.
    _lib: libloading::Library,
}

impl std::fmt::Debug for NvrtcLib {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NvrtcLib")
    }
}

/// Copies symbol `name` of `lib` out as a plain function pointer of type `F`.
///
/// # Safety
/// `F` must be the symbol's real signature; the pointer is valid while `lib` is loaded.
unsafe fn sym<F: Copy>(lib: &libloading::Library, name: &str) -> Result<F, String> {
    // SAFETY: per the contract above.
    unsafe { lib.get::<F>(name.as_bytes()) }
        .map(|s| *s)
        .map_err(|e| format!("not a usable NVRTC ({name} missing: {e})"))
}

impl NvrtcLib {
    /// Opens the library at `path` (an absolute path, or a bare name for the dynamic loader).
    pub fn open(path: impl AsRef<Path>) -> Result<NvrtcLib, String> {
        let path = path.as_ref();
        // SAFETY: loading NVRTC runs no initialisation code with preconditions.
        let lib = unsafe { libloading::Library::new(path) }
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let at = |e: String| format!("{}: {e}", path.display());
        // SAFETY: the signatures are NVRTC's (nvrtc.h, CUDA 11.2 and later).
        unsafe {
            Ok(NvrtcLib {
                version: sym(&lib, "nvrtcVersion").map_err(at)?,
                error_string: sym(&lib, "nvrtcGetErrorString").map_err(at)?,
                num_archs: sym(&lib, "nvrtcGetNumSupportedArchs").map_err(at)?,
                archs: sym(&lib, "nvrtcGetSupportedArchs").map_err(at)?,
                create: sym(&lib, "nvrtcCreateProgram").map_err(at)?,
                destroy: sym(&lib, "nvrtcDestroyProgram").map_err(at)?,
                compile: sym(&lib, "nvrtcCompileProgram").map_err(at)?,
                log_size: sym(&lib, "nvrtcGetProgramLogSize").map_err(at)?,
                log: sym(&lib, "nvrtcGetProgramLog").map_err(at)?,
                cubin_size: sym(&lib, "nvrtcGetCUBINSize").map_err(at)?,
                cubin: sym(&lib, "nvrtcGetCUBIN").map_err(at)?,
                ptx_size: sym(&lib, "nvrtcGetPTXSize").map_err(at)?,
                ptx: sym(&lib, "nvrtcGetPTX").map_err(at)?,
                _lib: lib,
            })
        }
    }

    /// Where `nvrtcVersion` of this library lives: two handles are the same library exactly when
    /// they resolve it to the same address.
    pub fn version_address(&self) -> usize {
        self.version as usize
    }

    fn describe(&self, call: &str, rc: c_int) -> String {
        // SAFETY: returns a static string for any code (NVRTC documents "unrecognized" ones).
        let text = unsafe { (self.error_string)(rc) };
        let text = if text.is_null() {
            "unknown error".into()
        } else {
            // SAFETY: a NUL-terminated static string.
            unsafe { CStr::from_ptr(text) }
                .to_string_lossy()
                .into_owned()
        };
        format!("{call}: {text} ({rc})")
    }

    /// NVRTC's (major, minor) version.
    pub fn version(&self) -> Result<(i32, i32), String> {
        let (mut major, mut minor) = (0, 0);
        // SAFETY: plain out-parameters.
        let rc = unsafe { (self.version)(&mut major, &mut minor) };
        if rc != 0 {
            return Err(self.describe("nvrtcVersion", rc));
        }
        Ok((major, minor))
    }

    /// The real architectures this NVRTC can build SASS for (e.g. 75, 80, 90), sorted.
    pub fn supported_archs(&self) -> Result<Vec<i32>, String> {
        let mut n: c_int = 0;
        // SAFETY: plain out-parameter.
        let rc = unsafe { (self.num_archs)(&mut n) };
        if rc != 0 {
            return Err(self.describe("nvrtcGetNumSupportedArchs", rc));
        }
        let mut archs = vec![0 as c_int; n.max(0) as usize];
        if !archs.is_empty() {
            // SAFETY: a buffer of exactly the count NVRTC reported.
            let rc = unsafe { (self.archs)(archs.as_mut_ptr()) };
            if rc != 0 {
                return Err(self.describe("nvrtcGetSupportedArchs", rc));
            }
        }
        archs.sort_unstable();
        Ok(archs)
    }

    /// Compiles `source` with `options` and returns the `output` image. Errors carry the log.
    pub fn compile(
        &self,
        source: &str,
        name: &str,
        options: &[String],
        output: Output,
    ) -> Result<Vec<u8>, GpuError> {
        let compile_err = |m: String| GpuError::Compile(m);
        let src = CString::new(source).map_err(|e| compile_err(e.to_string()))?;
        let name = CString::new(name).map_err(|e| compile_err(e.to_string()))?;
        let opts: Vec<CString> = options
            .iter()
            .map(|o| CString::new(o.as_str()))
            .collect::<Result<_, _>>()
            .map_err(|e| compile_err(e.to_string()))?;
        let opt_ptrs: Vec<*const c_char> = opts.iter().map(|o| o.as_ptr()).collect();
        let mut prog: Program = std::ptr::null_mut();
        // SAFETY: valid C strings that outlive the call; no headers.
        let rc = unsafe {
            (self.create)(
                &mut prog,
                src.as_ptr(),
                name.as_ptr(),
                0,
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(compile_err(self.describe("nvrtcCreateProgram", rc)));
        }
        let out = self.compile_program(prog, &opt_ptrs, output);
        // SAFETY: created above, destroyed exactly once.
        let _ = unsafe { (self.destroy)(&mut prog) };
        out
    }

    fn compile_program(
        &self,
        prog: Program,
        opts: &[*const c_char],
        output: Output,
    ) -> Result<Vec<u8>, GpuError> {
        // SAFETY: a live program and an array of `opts.len()` valid C strings.
        let rc = unsafe { (self.compile)(prog, opts.len() as c_int, opts.as_ptr()) };
        if rc != 0 {
            let log = self
                .read(prog, self.log_size, self.log)
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .unwrap_or_default();
            return Err(GpuError::Compile(format!(
                "{}: {}",
                self.describe("nvrtcCompileProgram", rc),
                log.trim_end_matches('\0').trim()
            )));
        }
        let (size, get, what) = match output {
            Output::Cubin => (self.cubin_size, self.cubin, "CUBIN"),
            Output::Ptx => (self.ptx_size, self.ptx, "PTX"),
        };
        self.read(prog, size, get)
            .map_err(|e| GpuError::Compile(format!("reading the {what}: {e}")))
    }

    /// Reads one of a program's outputs: its size, then a buffer of exactly that size.
    fn read(&self, prog: Program, size: SizeFn, get: GetFn) -> Result<Vec<u8>, String> {
        let mut n = 0usize;
        // SAFETY: a live program; plain out-parameter.
        let rc = unsafe { size(prog, &mut n) };
        if rc != 0 {
            return Err(self.describe("size query", rc));
        }
        let mut buf = vec![0u8; n];
        // SAFETY: a buffer of the size NVRTC reported.
        let rc = unsafe { get(prog, buf.as_mut_ptr() as *mut c_char) };
        if rc != 0 {
            return Err(self.describe("output query", rc));
        }
        Ok(buf)
    }
}
