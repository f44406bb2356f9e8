//! What the CPU offers: model, physical and logical cores, hyperthreading.
//!
//! Physical cores are counted as distinct `(package, core)` pairs among the CPUs this process may
//! run on (Linux sysfs topology, then `/proc/cpuinfo`); where neither is readable the logical count
//! stands in, so nothing here can fail.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CpuInfo {
    pub model: String,
    pub physical_cores: usize,
    pub logical_cores: usize,
    pub hyperthreading: bool,
}

/// The memory available to new allocations now (Linux `MemAvailable`), if the system says.
pub fn available_memory_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// The CPU of this machine, read once.
pub fn cpu_info() -> &'static CpuInfo {
    static INFO: OnceLock<CpuInfo> = OnceLock::new();
    INFO.get_or_init(detect)
}

fn detect() -> CpuInfo {
    let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split(':').nth(1))
        })
        .map(|m| m.trim().to_string())
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let physical = sysfs_physical_cores(logical)
        .or_else(|| proc_physical_cores(&cpuinfo))
        .unwrap_or(logical)
        .clamp(1, logical);
    CpuInfo {
        model,
        physical_cores: physical,
        logical_cores: logical,
        hyperthreading: logical > physical,
    }
}

/// Distinct (package, core) pairs over the first `logical` online CPUs in sysfs.
fn sysfs_physical_cores(logical: usize) -> Option<usize> {
    let mut cores = BTreeSet::new();
    for cpu in 0..logical.max(1) * 4 {
        let base = format!("/sys/devices/system/cpu/cpu{cpu}/topology");
        let (Ok(pkg), Ok(core)) = (
            std::fs::read_to_string(format!("{base}/physical_package_id")),
            std::fs::read_to_string(format!("{base}/core_id")),
        ) else {
            continue;
        };
        cores.insert((pkg.trim().to_string(), core.trim().to_string()));
        if cores.len() >= logical {
            break;
        }
    }
    (!cores.is_empty()).then_some(cores.len())
}

/// Distinct (physical id, core id) pairs in `/proc/cpuinfo`.
pub fn proc_physical_cores(cpuinfo: &str) -> Option<usize> {
    let mut cores = BTreeSet::new();
    for block in cpuinfo.split("\n\n") {
        let field = |name: &str| {
            block.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == name).then(|| v.trim().to_string())
            })
        };
        if let (Some(p), Some(c)) = (field("physical id"), field("core id")) {
            cores.insert((p, c));
        }
    }
    (!cores.is_empty()).then_some(cores.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_hyperthreads_once() {
        let text = "processor: 0\nphysical id: 0\ncore id: 0\n\nprocessor: 1\nphysical id: 0\ncore id: 0\n\n\
                    processor: 2\nphysical id: 0\ncore id: 1\n\nprocessor: 3\nphysical id: 0\ncore id: 1\n";
        assert_eq!(proc_physical_cores(text), Some(2));
        assert_eq!(proc_physical_cores("processor: 0\n"), None);
    }

    #[test]
    fn this_machine_is_consistent() {
        let info = cpu_info();
        assert!(info.physical_cores >= 1 && info.physical_cores <= info.logical_cores);
        assert_eq!(
            info.hyperthreading,
            info.logical_cores > info.physical_cores
        );
        assert!(!info.model.is_empty());
    }
}
