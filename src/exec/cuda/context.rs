//! The caller's current CUDA context, saved before each call and put back after it.
//!
//! Driving a GPU makes its context current on the thread that drives it, and single-device calls
//! (and the opening and sizing of every GPU of a set) run on the caller's thread. Left as it is,
//! that context stays current after threadx returns, and CUDA's runtime API adopts the current
//! context: on a multi-GPU machine, PyTorch or CuPy work the user runs next on that thread would
//! silently land on whichever GPU threadx used last. Every entry point of the backend therefore
//! runs inside [`restoring`], which puts the previous context (or none) back on every exit: a
//! result, an error, or a panic unwinding towards [`catch`](super::error::catch).
//!
//! The driver calls sit behind [`CurrentContext`] so tests can check the rule without a GPU.

use cudarc::driver::result::ctx;
use cudarc::driver::sys::CUcontext;

use super::error::GpuError;

/// Reads and sets the context current on the calling thread.
pub trait CurrentContext {
    /// A context handle; `None` stands for "no context current".
    type Ctx: Copy;
    fn get(&self) -> Result<Option<Self::Ctx>, GpuError>;
    fn set(&self, ctx: Option<Self::Ctx>) -> Result<(), GpuError>;
}

/// The CUDA driver's `cuCtxGetCurrent` / `cuCtxSetCurrent`.
pub struct Driver;

impl CurrentContext for Driver {
    type Ctx = CUcontext;

    fn get(&self) -> Result<Option<CUcontext>, GpuError> {
        ctx::get_current().map_err(|e| GpuError::Driver {
            call: "cuCtxGetCurrent",
            detail: format!("{e:?}"),
        })
    }

    fn set(&self, c: Option<CUcontext>) -> Result<(), GpuError> {
        // SAFETY: `c` is a context this thread had current before the call (still alive: the
        // caller owns it and we do not destroy contexts), or null, which unbinds.
        unsafe { ctx::set_current(c.unwrap_or(std::ptr::null_mut())) }.map_err(|e| {
            GpuError::Driver {
                call: "cuCtxSetCurrent",
                detail: format!("{e:?}"),
            }
        })
    }
}

/// Puts `previous` back when dropped, on the thread that saved it.
struct Restore<'a, C: CurrentContext> {
    api: &'a C,
    previous: Option<C::Ctx>,
}

impl<C: CurrentContext> Drop for Restore<'_, C> {
    fn drop(&mut self) {
        // Nothing better can be done if the driver refuses: the call's own result stands (its
        // outputs are complete), and a refusal here means the driver itself is failing.
        let _ = self.api.set(self.previous);
    }
}

/// Runs `f` and then makes the context that was current before it current again, however `f`
/// ends. If the current context cannot even be read, `f` does not run: it would change a context
/// that could not be put back.
pub fn restoring<C: CurrentContext, T>(
    api: &C,
    f: impl FnOnce() -> Result<T, GpuError>,
) -> Result<T, GpuError> {
    let previous = api.get()?;
    let _restore = Restore { api, previous };
    f()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A thread's "current context", with every call recorded.
    struct Shim {
        current: RefCell<Option<u32>>,
        calls: RefCell<Vec<String>>,
        fail_get: bool,
    }

    impl Shim {
        fn new(current: Option<u32>) -> Shim {
            Shim {
                current: RefCell::new(current),
                calls: RefCell::new(Vec::new()),
                fail_get: false,
            }
        }

        /// What a GPU call does: make its own context current.
        fn bind(&self, ctx: u32) {
            *self.current.borrow_mut() = Some(ctx);
        }
    }

    impl CurrentContext for Shim {
        type Ctx = u32;

        fn get(&self) -> Result<Option<u32>, GpuError> {
            self.calls.borrow_mut().push("get".into());
            if self.fail_get {
                return Err(GpuError::Driver {
                    call: "cuCtxGetCurrent",
                    detail: "injected".into(),
                });
            }
            Ok(*self.current.borrow())
        }

        fn set(&self, ctx: Option<u32>) -> Result<(), GpuError> {
            self.calls.borrow_mut().push(format!("set {ctx:?}"));
            *self.current.borrow_mut() = ctx;
            Ok(())
        }
    }

    #[test]
    fn the_callers_context_is_current_again_after_a_call() {
        let shim = Shim::new(Some(7));
        let r = restoring(&shim, || {
            shim.bind(1);
            Ok(42)
        });
        assert_eq!(r, Ok(42));
        assert_eq!(*shim.current.borrow(), Some(7));
        assert_eq!(*shim.calls.borrow(), vec!["get", "set Some(7)"]);
    }

    #[test]
    fn no_context_before_means_none_after() {
        let shim = Shim::new(None);
        let _ = restoring(&shim, || {
            shim.bind(3);
            Ok(())
        });
        assert_eq!(*shim.current.borrow(), None);
    }

    #[test]
    fn an_error_or_a_panic_restores_the_context_too() {
        let shim = Shim::new(Some(5));
        let r: Result<(), GpuError> = restoring(&shim, || {
            shim.bind(2);
            Err(GpuError::NoDevice(2))
        });
        assert_eq!(r, Err(GpuError::NoDevice(2)));
        assert_eq!(*shim.current.borrow(), Some(5));
        let r = super::super::error::catch("CUDA", || {
            restoring(&shim, || -> Result<(), GpuError> {
                shim.bind(4);
                panic!("inside cudarc")
            })
        });
        assert!(matches!(r, Err(GpuError::Panicked { .. })), "{r:?}");
        assert_eq!(*shim.current.borrow(), Some(5));
    }

    #[test]
    fn an_unreadable_context_stops_the_call_before_it_changes_anything() {
        let mut shim = Shim::new(Some(9));
        shim.fail_get = true;
        let mut ran = false;
        let r = restoring(&shim, || {
            ran = true;
            shim.bind(1);
            Ok(())
        });
        assert!(r.is_err());
        assert!(!ran);
        assert_eq!(*shim.current.borrow(), Some(9));
    }
}
