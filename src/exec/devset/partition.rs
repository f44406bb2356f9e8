//! A planned split cut by who runs it: the real GPUs (the CUDA pipeline) and the host members that
//! run the Rust kernels (the CPU, simulated GPUs; [`DeviceSetSplit`](super::DeviceSetSplit)).

use super::simulated;
use super::split::Member;
use super::{SetMember, SplitShare};
use crate::exec::cuda::GpuStatus;

/// The members of a split, each with its share of the rows and its name in the profile.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Partition {
    /// Members that run the Rust kernels.
    pub host: Vec<Member>,
    pub host_shares: Vec<f64>,
    pub host_keys: Vec<String>,
    /// Ordinals of the real GPUs.
    pub gpus: Vec<usize>,
    pub gpu_shares: Vec<f64>,
    pub gpu_keys: Vec<String>,
}

impl Partition {
    /// Cuts `split` using the GPUs of `status`: a real GPU goes to the CUDA side, a simulated one
    /// runs at its current speed, and the CPU (or a GPU `status` no longer lists) runs on the
    /// CPU with `cpu_workers`.
    pub fn new(split: &[SplitShare], status: &GpuStatus, cpu_workers: usize) -> Partition {
        let mut p = Partition::default();
        for m in split {
            let gpu = match m.device {
                SetMember::Gpu(i) => status.devices.iter().find(|d| d.index == i),
                SetMember::Cpu => None,
            };
            let member = match gpu.map(|d| (d.index, d.simulated)) {
                Some((index, None)) => {
                    p.gpus.push(index);
                    p.gpu_shares.push(m.share);
                    p.gpu_keys.push(m.key.clone());
                    continue;
                }
                Some((_, Some(slot))) => Member::Simulated {
                    speed: simulated::speed(slot),
                },
                None => Member::Cpu {
                    workers: cpu_workers.max(1),
                },
            };
            p.host.push(member);
            p.host_shares.push(m.share);
            p.host_keys.push(m.key.clone());
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::cuda::GpuInfo;

    fn gpu(index: usize, simulated: Option<usize>) -> GpuInfo {
        GpuInfo {
            index,
            name: "test".into(),
            uuid: format!("u{index}"),
            compute_capability: (9, 0),
            memory_bytes: 1 << 30,
            simulated,
            kernel_build: None,
            open_state: None,
        }
    }

    fn share(device: SetMember, key: &str, share: f64) -> SplitShare {
        SplitShare {
            device,
            key: key.into(),
            share,
        }
    }

    #[test]
    fn real_gpus_go_to_cuda_and_the_rest_to_the_host() {
        let status = GpuStatus {
            devices: vec![gpu(0, None), gpu(1, Some(0))],
            ..Default::default()
        };
        let split = [
            share(SetMember::Gpu(0), "gpu:u0", 0.5),
            share(SetMember::Gpu(1), "gpu:sim-0", 0.2),
            share(SetMember::Cpu, "cpu", 0.2),
            share(SetMember::Gpu(7), "gpu:gone", 0.1),
        ];
        let p = Partition::new(&split, &status, 0);
        assert_eq!((p.gpus, p.gpu_shares), (vec![0], vec![0.5]));
        assert_eq!(p.gpu_keys, vec!["gpu:u0"]);
        assert_eq!(p.host.len(), 3);
        assert!(matches!(p.host[0], Member::Simulated { .. }));
        assert_eq!(p.host[1], Member::Cpu { workers: 1 });
        assert_eq!(p.host[2], Member::Cpu { workers: 1 });
        assert_eq!(p.host_keys, vec!["gpu:sim-0", "cpu", "gpu:gone"]);
    }
}
