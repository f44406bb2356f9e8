//! The compiled-kernel cache (in memory, and on disk next to the profile) and what to do when a
//! cached image does not load. A truncated, corrupt or foreign file in the cache would otherwise
//! fail every later process's module load and so disable the GPU for good; instead it is deleted
//! and the kernels are compiled once more. Loading and compiling are passed in, so the policy is
//! tested without NVRTC or a GPU.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::error::GpuError;

static MEMORY: Mutex<Option<HashMap<String, Arc<Vec<u8>>>>> = Mutex::new(None);

fn memory_get(key: &str) -> Option<Arc<Vec<u8>>> {
    MEMORY.lock().ok()?.as_ref()?.get(key).cloned()
}

fn memory_set(key: &str, bytes: Option<Arc<Vec<u8>>>) {
    if let Ok(mut m) = MEMORY.lock() {
        let m = m.get_or_insert_with(HashMap::new);
        match bytes {
            Some(b) => m.insert(key.to_string(), b),
            None => m.remove(key),
        };
    }
}

/// A loaded module and the image it came from.
pub struct Loaded<M> {
    pub module: M,
    pub image: Arc<Vec<u8>>,
    /// "memory", "disk" or "nvrtc"; "nvrtc (cached image did not load: ...)" after a rebuild.
    pub origin: String,
}

/// Loads the image cached under `key` (memory) or in `file` (disk), else compiles, caches and
/// loads a new one. When a cached image does not load, it is dropped from both caches and
/// compiled once more; an image just compiled that does not load is an error (no loop).
pub fn load_or_rebuild<M>(
    key: &str,
    file: Option<&Path>,
    mut load: impl FnMut(&[u8]) -> Result<M, GpuError>,
    compile: impl FnOnce() -> Result<Vec<u8>, GpuError>,
) -> Result<Loaded<M>, GpuError> {
    let cached = match memory_get(key) {
        Some(b) => Some((b, "memory")),
        None => file
            .and_then(|f| std::fs::read(f).ok())
            .filter(|b| !b.is_empty())
            .map(|b| (Arc::new(b), "disk")),
    };
    let mut origin = "nvrtc".to_string();
    if let Some((image, from)) = cached {
        match load(&image) {
            Ok(module) => {
                memory_set(key, Some(Arc::clone(&image)));
                return Ok(Loaded {
                    module,
                    image,
                    origin: from.into(),
                });
            }
            Err(e) => {
                memory_set(key, None);
                if let Some(f) = file {
                    // A failure to delete is harmless: the rebuild below overwrites the file.
                    let _ = std::fs::remove_file(f);
                }
                origin = format!("nvrtc (cached image did not load: {e})");
            }
        }
    }
    let image = Arc::new(compile()?);
    if let Some(f) = file {
        store(f, &image);
    }
    let module = load(&image)?;
    memory_set(key, Some(Arc::clone(&image)));
    Ok(Loaded {
        module,
        image,
        origin,
    })
}

/// Writes a cache file atomically (temp + rename); a failure only costs a compile next time.
pub fn store(path: &Path, bytes: &[u8]) {
    let Some(dir) = path.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let tmp: PathBuf = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().map_or("k".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    if std::fs::write(&tmp, bytes).is_ok() && std::fs::rename(&tmp, path).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    const GOOD: &[u8] = b"\x7fELF good cubin";

    fn temp_dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("threadx-image-cache-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A module loader that accepts only [`GOOD`], like the driver rejecting a corrupt CUBIN.
    fn load(bytes: &[u8]) -> Result<usize, GpuError> {
        if bytes == GOOD {
            Ok(bytes.len())
        } else {
            Err(GpuError::Driver {
                call: "cuModuleLoadData",
                detail: "CUDA_ERROR_INVALID_IMAGE".into(),
            })
        }
    }

    #[test]
    fn a_corrupt_cached_cubin_is_deleted_and_compiled_again() {
        let dir = temp_dir("corrupt");
        let file = dir.join("sm_90-0123-nvrtc12.9.cubin");
        std::fs::write(&file, b"garbage, not a cubin").unwrap();
        let compiles = Cell::new(0);
        let compile = || {
            compiles.set(compiles.get() + 1);
            Ok(GOOD.to_vec())
        };
        let key = file.display().to_string();
        let got = load_or_rebuild(&key, Some(&file), load, compile).expect("rebuilt and loaded");
        assert_eq!(got.module, GOOD.len());
        assert_eq!(compiles.get(), 1);
        assert!(
            got.origin
                .starts_with("nvrtc (cached image did not load: cuModuleLoadData"),
            "{}",
            got.origin
        );
        // The cache now holds the good image, so the next process loads it without compiling.
        assert_eq!(std::fs::read(&file).unwrap(), GOOD);
        let again = load_or_rebuild(&key, Some(&file), load, || {
            panic!("a good cached image must not be compiled again")
        })
        .unwrap();
        assert_eq!(again.origin, "memory");
        memory_set(&key, None);
        let from_disk = load_or_rebuild(&key, Some(&file), load, || {
            panic!("a good cached image must not be compiled again")
        })
        .unwrap();
        assert_eq!(from_disk.origin, "disk");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_fresh_image_that_does_not_load_is_an_error_not_a_loop() {
        let dir = temp_dir("fresh-bad");
        let file = dir.join("sm_90-bad.cubin");
        std::fs::write(&file, b"garbage").unwrap();
        let compiles = Cell::new(0);
        let r = load_or_rebuild(&file.display().to_string(), Some(&file), load, || {
            compiles.set(compiles.get() + 1);
            Ok(b"also garbage".to_vec())
        });
        assert!(matches!(r, Err(GpuError::Driver { .. })));
        assert_eq!(compiles.get(), 1, "compiled exactly once more");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_compile_error_is_returned_and_nothing_is_cached() {
        let dir = temp_dir("compile-error");
        let file = dir.join("sm_90-x.cubin");
        let r = load_or_rebuild(&file.display().to_string(), Some(&file), load, || {
            Err(GpuError::Compile("nvrtcCompileProgram failed".into()))
        });
        assert_eq!(
            r.err(),
            Some(GpuError::Compile("nvrtcCompileProgram failed".into()))
        );
        assert!(!file.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
