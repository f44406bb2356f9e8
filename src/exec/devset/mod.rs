//! Device sets: one call's rows split across several devices, with output bits identical to a
//! single device's. Everything about sets lives here:
//!
//! - [`DeviceSet`], [`SetMember`], [`SplitShare`]: the sets a plan can name (`all`, `gpus`,
//!   `gpu:<i>,<j>`), their members and the members' shares of the rows.
//! - [`partition`]: a planned split cut into the members that run the Rust kernels (the CPU,
//!   simulated GPUs) and the real GPUs.
//! - [`split`]: [`DeviceSetSplit`], the [`Splitter`](crate::kernels::split::Splitter) that runs
//!   the Rust-kernel members side by side on the global scan-block grid.
//! - [`mixed`]: real GPUs with host members: the host members take a prefix of the rows, the
//!   GPUs the rest, and [`handoff`] carries the prefix's scan states over to the GPUs.
//! - [`simulated`]: simulated GPUs (`THREADX_SIMULATED_GPUS`), for tests and demos of balancing.

pub mod handoff;
pub mod mixed;
pub mod partition;
pub mod simulated;
pub mod split;

use std::fmt;

use serde::Serialize;

pub use split::{DeviceSetSplit, Member, MemberTime};

/// A set of devices a plan splits one call across.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSet {
    /// Every usable GPU and the CPU (`all`).
    All,
    /// Every usable GPU (`gpus`).
    Gpus,
    /// The listed GPU ordinals, at least two (`gpu:<i>,<j>,…`).
    Listed(Vec<usize>),
}

impl fmt::Display for DeviceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSet::All => f.write_str("all"),
            DeviceSet::Gpus => f.write_str("gpus"),
            DeviceSet::Listed(ids) => {
                let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
                write!(f, "gpu:{}", ids.join(","))
            }
        }
    }
}

/// One device of a set, as a plan names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetMember {
    /// The CPU (`cpu`).
    Cpu,
    /// GPU ordinal `i`, real or simulated (`gpu:<i>`).
    Gpu(usize),
}

impl fmt::Display for SetMember {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetMember::Cpu => f.write_str("cpu"),
            SetMember::Gpu(i) => write!(f, "gpu:{i}"),
        }
    }
}

/// Plans are read by Python as JSON: members appear as their text (`cpu`, `gpu:<i>`).
impl Serialize for SetMember {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One member of a multi-device plan and its share of the rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitShare {
    pub device: SetMember,
    /// Its name in the profile (`cpu`, `gpu:<uuid>`) and in the balance ratios.
    pub key: String,
    pub share: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_and_members_print_as_users_write_them() {
        assert_eq!(DeviceSet::All.to_string(), "all");
        assert_eq!(DeviceSet::Gpus.to_string(), "gpus");
        assert_eq!(DeviceSet::Listed(vec![0, 2]).to_string(), "gpu:0,2");
        let share = SplitShare {
            device: SetMember::Gpu(1),
            key: "gpu:uuid".into(),
            share: 0.5,
        };
        assert_eq!(
            serde_json::to_string(&share).unwrap(),
            r#"{"device":"gpu:1","key":"gpu:uuid","share":0.5}"#
        );
    }
}
