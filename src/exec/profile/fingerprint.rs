//! What makes timings comparable: entries measured under another fingerprint are ignored (kept in
//! the file for the machine or build that made them, never deleted).

use serde::{Deserialize, Serialize};

use crate::exec::cpuinfo::cpu_info;

/// Version of the profile file's layout (`schema.rs`). It lives here, in the fingerprint, because
/// timings written under another layout are not comparable; `schema` re-exports it, so this module
/// needs nothing from `schema` (which builds on the fingerprint).
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub schema_version: u32,
    pub threadx_version: String,
    /// Hash of the kernel and executor sources and the compile options (build.rs).
    pub build_hash: String,
    pub cpu_model: String,
    pub physical_cores: usize,
    pub logical_cores: usize,
    /// Per GPU: UUID, name, compute capability, driver and NVRTC versions (GPU backend).
    #[serde(default)]
    pub gpus: Vec<String>,
}

impl Fingerprint {
    pub fn current() -> Self {
        let cpu = cpu_info();
        Fingerprint {
            schema_version: SCHEMA_VERSION,
            threadx_version: env!("CARGO_PKG_VERSION").to_string(),
            build_hash: env!("THREADX_BUILD_HASH").to_string(),
            cpu_model: cpu.model.clone(),
            physical_cores: cpu.physical_cores,
            logical_cores: cpu.logical_cores,
            gpus: Vec::new(),
        }
    }

    /// Stable short id (FNV-1a 64 of the canonical JSON), the key of this machine's entry.
    pub fn id(&self) -> String {
        let text = serde_json::to_string(self).unwrap_or_default();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in text.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }
}
