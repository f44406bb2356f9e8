//! Which code the driver gets for a device: a CUBIN for its exact architecture when the loaded
//! NVRTC can build one, else PTX for the newest virtual architecture NVRTC knows that the device
//! can run, which the driver compiles (JIT) at module load. Checking only NVRTC's major version
//! is not enough: an NVRTC older than the device's architecture cannot emit its SASS, and without
//! this choice every call on that device would fail to compile and fall back to the CPU while
//! the status still said "available".
//!
//! The PTX path keeps the results bit-identical: it is built with the same options (`--fmad=false`
//! and the IEEE division/square root flags, see `nvrtc::OPTIONS`), so the PTX spells every
//! operation with an explicit rounding (`.rn`) that the driver's JIT may not contract or reorder.

use std::fmt;

use super::error::GpuError;

/// What to build for one device; the number is the architecture as NVRTC lists it (major * 10 +
/// minor, e.g. 90 for compute capability 9.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// SASS for exactly this architecture (`--gpu-architecture=sm_XY`).
    Cubin(i32),
    /// PTX for this virtual architecture (`--gpu-architecture=compute_XY`), JIT-compiled by the
    /// driver for the device.
    Ptx(i32),
}

impl Target {
    /// NVRTC's `--gpu-architecture` value.
    pub fn nvrtc_arch(&self) -> String {
        match self {
            Target::Cubin(a) => format!("sm_{a}"),
            Target::Ptx(a) => format!("compute_{a}"),
        }
    }

    /// The cache file extension, so a CUBIN and a PTX image never share a file.
    pub fn extension(&self) -> &'static str {
        match self {
            Target::Cubin(_) => "cubin",
            Target::Ptx(_) => "ptx",
        }
    }
}

/// The form the status shows: "cubin sm_90" or "ptx compute_80 JIT by the driver".
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Cubin(_) => write!(f, "cubin {}", self.nvrtc_arch()),
            Target::Ptx(_) => write!(f, "ptx {} JIT by the driver", self.nvrtc_arch()),
        }
    }
}

/// A compute capability as NVRTC numbers architectures (`(9, 0)` → 90, `(12, 0)` → 120).
pub fn arch_number(compute_capability: (i32, i32)) -> i32 {
    compute_capability.0 * 10 + compute_capability.1
}

/// Chooses the build for a device of architecture `device` (see [`arch_number`]) given the
/// architectures `supported` by the loaded NVRTC (`nvrtcGetSupportedArchs`, any order).
pub fn select(supported: &[i32], device: i32) -> Result<Target, GpuError> {
    if supported.contains(&device) {
        return Ok(Target::Cubin(device));
    }
    // PTX of an older virtual architecture runs on every newer device: the newest one NVRTC knows
    // that is not newer than the device gives the driver the most to work with.
    if let Some(best) = supported.iter().copied().filter(|a| *a <= device).max() {
        return Ok(Target::Ptx(best));
    }
    let range = match (supported.iter().min(), supported.iter().max()) {
        (Some(lo), Some(hi)) => format!("sm_{lo} to sm_{hi}"),
        _ => "no architecture at all".to_string(),
    };
    Err(GpuError::BadArch(format!(
        "this NVRTC supports {range}, none of them as old as the device's sm_{device}: install an \
         NVRTC (nvidia-cuda-nvrtc wheel or CUDA toolkit) that still supports sm_{device}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NVRTC_12_4: &[i32] = &[50, 52, 53, 60, 61, 62, 70, 72, 75, 80, 86, 87, 89, 90];

    #[test]
    fn a_listed_architecture_gets_its_exact_cubin() {
        assert_eq!(select(NVRTC_12_4, 90), Ok(Target::Cubin(90)));
        assert_eq!(select(NVRTC_12_4, 86), Ok(Target::Cubin(86)));
        assert_eq!(Target::Cubin(90).to_string(), "cubin sm_90");
    }

    #[test]
    fn a_device_newer_than_nvrtc_gets_ptx_of_the_newest_older_architecture() {
        // Blackwell (sm_100, sm_120) with an NVRTC that stops at sm_90.
        assert_eq!(select(NVRTC_12_4, 120), Ok(Target::Ptx(90)));
        assert_eq!(select(NVRTC_12_4, 100), Ok(Target::Ptx(90)));
        // An unlisted architecture between listed ones takes the one below, never the one above
        // (PTX for a newer architecture does not load on an older device).
        assert_eq!(select(&[80, 90], 89), Ok(Target::Ptx(80)));
        assert_eq!(select(&[90, 80, 75], 86), Ok(Target::Ptx(80)));
        assert_eq!(
            Target::Ptx(80).to_string(),
            "ptx compute_80 JIT by the driver"
        );
        assert_eq!(Target::Ptx(80).nvrtc_arch(), "compute_80");
    }

    #[test]
    fn a_device_older_than_every_supported_architecture_is_refused_with_the_range() {
        let e = select(&[75, 80, 90], 61).unwrap_err();
        assert_eq!(e.kind(), GpuError::BadArch(String::new()).kind());
        let msg = e.to_string();
        assert!(msg.contains("sm_75 to sm_90"), "{msg}");
        assert!(msg.contains("sm_61"), "{msg}");
        let none = select(&[], 90).unwrap_err().to_string();
        assert!(none.contains("no architecture at all"), "{none}");
    }

    #[test]
    fn compute_capabilities_number_like_nvrtc() {
        assert_eq!(arch_number((9, 0)), 90);
        assert_eq!(arch_number((8, 6)), 86);
        assert_eq!(arch_number((12, 0)), 120);
    }
}
