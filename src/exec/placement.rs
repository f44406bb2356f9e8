//! Where a planned call runs, as a type. The user's request is parsed once, at the boundary
//! ([`Device::parse`](super::Device::parse)); from there on plans carry a [`Placement`] and code
//! matches on it. Its text (`cpu:<w>`, `gpu:<i>`, `all`, `gpus`, `gpu:<i>,<j>`) is what Python
//! reads in a plan's JSON and what the profile stores CPU and set timings under.

use std::fmt;

use serde::Serialize;

use super::devset::DeviceSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// The CPU with this many workers.
    Cpu { workers: usize },
    /// One GPU, by ordinal (real or simulated).
    Gpu(usize),
    /// Several devices splitting the rows.
    Set(DeviceSet),
}

impl Placement {
    /// The GPU ordinal of a single-GPU placement.
    pub fn gpu(&self) -> Option<usize> {
        match self {
            Placement::Gpu(i) => Some(*i),
            _ => None,
        }
    }

    /// The device set of a multi-device placement.
    pub fn set(&self) -> Option<&DeviceSet> {
        match self {
            Placement::Set(s) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Placement::Cpu { workers } => write!(f, "cpu:{workers}"),
            Placement::Gpu(i) => write!(f, "gpu:{i}"),
            Placement::Set(s) => s.fmt(f),
        }
    }
}

/// Serialized as its text, the shape Python's `Explanation` has always read.
impl Serialize for Placement {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placements_print_and_serialize_as_before() {
        let cases = [
            (Placement::Cpu { workers: 4 }, "cpu:4"),
            (Placement::Gpu(1), "gpu:1"),
            (Placement::Set(DeviceSet::All), "all"),
            (Placement::Set(DeviceSet::Gpus), "gpus"),
            (Placement::Set(DeviceSet::Listed(vec![0, 1])), "gpu:0,1"),
        ];
        for (p, text) in cases {
            assert_eq!(p.to_string(), text);
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{text}\""));
        }
    }
}
