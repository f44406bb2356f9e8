//! The user's placement request: `"auto"`, `"cpu"`, `"gpu"`, `"gpu:0"`, `"gpu:0,1"`, `"gpus"`, `"all"`.

use std::fmt;

/// The largest GPU ordinal a device string may name (CUDA numbers devices with a C `int`).
pub const MAX_GPU_ORDINAL: usize = i32::MAX as usize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    Auto,
    Cpu,
    /// The first usable GPU (`None`) or the listed ordinals (several: a device set).
    Gpu(Option<Vec<usize>>),
    /// Every usable GPU as one device set.
    Gpus,
    /// Every usable GPU and the CPU as one device set.
    All,
}

impl Device {
    pub fn parse(text: &str) -> Result<Device, String> {
        let t = text.trim().to_ascii_lowercase();
        match t.as_str() {
            "auto" => return Ok(Device::Auto),
            "cpu" => return Ok(Device::Cpu),
            "gpu" => return Ok(Device::Gpu(None)),
            "gpus" => return Ok(Device::Gpus),
            "all" => return Ok(Device::All),
            _ => {}
        }
        let bad = || {
            format!("device must be 'auto', 'cpu', 'gpu', 'gpu:<i>[,<j>...]', 'gpus' or 'all', got '{text}'")
        };
        let list = t.strip_prefix("gpu:").ok_or_else(bad)?;
        let ids: Result<Vec<usize>, _> =
            list.split(',').map(|p| p.trim().parse::<usize>()).collect();
        match ids {
            Ok(ids) if ids.iter().any(|i| *i > MAX_GPU_ORDINAL) => Err(format!(
                "device GPU ordinals must be in [0, {MAX_GPU_ORDINAL}], got '{text}'"
            )),
            Ok(ids) if !ids.is_empty() => {
                if let Some(dup) = ids.iter().enumerate().find(|(i, v)| ids[..*i].contains(v)) {
                    return Err(format!("device lists gpu {} twice in '{text}'", dup.1));
                }
                Ok(Device::Gpu(Some(ids)))
            }
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Auto => write!(f, "auto"),
            Device::Cpu => write!(f, "cpu"),
            Device::Gpu(None) => write!(f, "gpu"),
            Device::Gpus => write!(f, "gpus"),
            Device::All => write!(f, "all"),
            Device::Gpu(Some(ids)) => {
                let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
                write!(f, "gpu:{}", ids.join(","))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_rejects_others() {
        assert_eq!(Device::parse("auto"), Ok(Device::Auto));
        assert_eq!(Device::parse("CPU"), Ok(Device::Cpu));
        assert_eq!(Device::parse("gpu"), Ok(Device::Gpu(None)));
        assert_eq!(Device::parse("gpu:0,1"), Ok(Device::Gpu(Some(vec![0, 1]))));
        assert_eq!(Device::parse("gpu:1").unwrap().to_string(), "gpu:1");
        assert_eq!(Device::parse(" GPUS "), Ok(Device::Gpus));
        assert_eq!(Device::parse("all").unwrap().to_string(), "all");
        for bad in [
            "",
            "tpu",
            "gpu:",
            "gpu:a",
            "gpu:0,",
            "gpu:1,0,1",
            "gpu:00,0",
        ] {
            assert!(Device::parse(bad).is_err(), "{bad}");
        }
        for bad in ["gpu:2147483648", "gpu:99999999999999999999999"] {
            assert!(Device::parse(bad).is_err(), "{bad}");
        }
    }
}
