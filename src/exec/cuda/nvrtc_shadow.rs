//! Detecting a second NVRTC that a by-name open resolves to. We call NVRTC through our own handle
//! (`nvrtc_lib`), so such a library no longer serves our calls; but it is what cudarc (and any
//! other library in the process that opens `libnvrtc.so` by name) gets, and its presence usually
//! means an old toolkit is first on `LD_LIBRARY_PATH`. The status reports it so the user sees
//! which NVRTC threadx uses and which one it is not using.
//!
//! The comparison is a pure function of two identities ([`mismatch`]); reading an identity from
//! a loaded library needs the library.

use super::error::catch;
use super::nvrtc_lib::NvrtcLib;

/// One loaded NVRTC: the file it came from, its version and the address of its `nvrtcVersion`.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub path: String,
    pub version: Option<(i32, i32)>,
    pub address: usize,
}

impl Identity {
    /// The identity of an opened library; `path` is used when the mapping cannot be read.
    pub fn of(lib: &NvrtcLib, path: &str) -> Identity {
        let address = lib.version_address();
        Identity {
            path: mapped_file(address).unwrap_or_else(|| path.to_string()),
            version: lib.version().ok(),
            address,
        }
    }

    fn describe(&self) -> String {
        match self.version {
            Some((major, minor)) => format!("{} (NVRTC {major}.{minor})", self.path),
            None => format!("{} (version unknown)", self.path),
        }
    }
}

/// `None` when `ours` and `by_name` are the same library (same `nvrtcVersion` address, or the
/// same file); else the status's message naming both.
pub fn mismatch(ours: &Identity, by_name: &Identity) -> Option<String> {
    if ours.address == by_name.address || same_file(&ours.path, &by_name.path) {
        return None;
    }
    Some(format!(
        "libnvrtc opened by name (as cudarc and LD_LIBRARY_PATH resolve it) is {}, not {}: \
         threadx compiles with the latter through its own handle",
        by_name.describe(),
        ours.describe()
    ))
}

fn same_file(a: &str, b: &str) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The file mapped at `address` in this process (Linux: `/proc/self/maps`), if known.
pub fn mapped_file(address: usize) -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (lo, hi) = fields.next()?.split_once('-')?;
        let lo = usize::from_str_radix(lo, 16).ok()?;
        let hi = usize::from_str_radix(hi, 16).ok()?;
        if !(lo..hi).contains(&address) {
            return None;
        }
        // perms, offset, dev, inode, then the path (which may contain spaces).
        let path: Vec<&str> = fields.skip(4).collect();
        (!path.is_empty()).then(|| path.join(" "))
    })
}

/// The NVRTC that cudarc's by-name lookup resolves to in this process, if it finds one. Loading
/// it is what cudarc would do on its first NVRTC call anyway.
pub fn by_name() -> Option<Identity> {
    // SAFETY: a presence probe that only opens and closes the library; checked first because
    // cudarc's loader panics (and prints the panic) when it finds nothing.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return None;
    }
    catch("NVRTC by name", || {
        // SAFETY: loads the library cudarc's bindings would use; nothing is called through it
        // except `nvrtcVersion`, with its real signature.
        let lib = unsafe { cudarc::nvrtc::sys::culib() };
        let version: libloading::Symbol<unsafe extern "C" fn(*mut i32, *mut i32) -> i32> = unsafe {
            lib.get(b"nvrtcVersion")
        }
        .map_err(|e| super::error::GpuError::Unavailable(format!("nvrtcVersion missing: {e}")))?;
        let (mut major, mut minor) = (0, 0);
        // SAFETY: plain out-parameters.
        let rc = unsafe { version(&mut major, &mut minor) };
        let address = *version as usize;
        Ok(Identity {
            path: mapped_file(address).unwrap_or_else(|| "libnvrtc (by name)".into()),
            version: (rc == 0).then_some((major, minor)),
            address,
        })
    })
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(path: &str, version: (i32, i32), address: usize) -> Identity {
        Identity {
            path: path.into(),
            version: Some(version),
            address,
        }
    }

    #[test]
    fn the_same_library_is_no_mismatch() {
        let ours = id("/wheel/libnvrtc.so.12", (12, 9), 0x1000);
        assert_eq!(mismatch(&ours, &ours.clone()), None);
        // Same symbol address, whatever the path was recorded as.
        assert_eq!(
            mismatch(&ours, &id("libnvrtc (by name)", (12, 9), 0x1000)),
            None
        );
    }

    #[test]
    fn a_different_library_is_reported_with_both_paths_and_versions() {
        let ours = id("/wheel/libnvrtc.so.12", (12, 9), 0x1000);
        let system = id("/usr/local/cuda-11.8/lib64/libnvrtc.so", (11, 8), 0x9000);
        let msg = mismatch(&ours, &system).expect("two libraries are a mismatch");
        assert!(
            msg.contains("/usr/local/cuda-11.8/lib64/libnvrtc.so (NVRTC 11.8)"),
            "{msg}"
        );
        assert!(msg.contains("/wheel/libnvrtc.so.12 (NVRTC 12.9)"), "{msg}");
        // Even two copies of one version are two libraries (their addresses differ).
        assert!(mismatch(&ours, &id("/other/libnvrtc.so", (12, 9), 0x2000)).is_some());
    }

    #[test]
    fn the_maps_name_this_test_binary_for_its_own_code() {
        let here = mapped_file(mapped_file as *const () as usize).expect("our code is mapped");
        let exe = std::env::current_exe().unwrap();
        let exe_name = exe.file_name().unwrap().to_string_lossy().into_owned();
        assert!(here.ends_with(&exe_name), "{here} vs {exe_name}");
        assert_eq!(mapped_file(0), None);
    }
}
