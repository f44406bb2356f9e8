//! Simulated GPUs (`THREADX_SIMULATED_GPUS="1.0,0.5"`): devices that run the Rust kernels on one
//! CPU thread and then idle, so that they take `1/speed` times as long as that thread. GPU
//! discovery lists them after the real GPUs (`GpuInfo::simulated` holds their slot), so tests and
//! demos of multi-device balancing run on any machine. Their bits are the CPU's by construction.

use std::time::Instant;

use crate::exec::config;

/// The current speed of simulated GPU `slot` (1.0 if the variable no longer lists it or is no
/// longer valid). Read on every call, so a test can slow a device down mid-process.
pub fn speed(slot: usize) -> f64 {
    config::simulated_gpu_speeds()
        .ok()
        .and_then(|s| s.get(slot).copied())
        .unwrap_or(1.0)
}

/// After work that started at `started`, idles until it has taken `1/speed` times as long as it
/// did (a speed of 1.0 or more does not wait). The speed is clamped to the accepted range, so
/// the wait is at most `1000x` the work and never overflows.
pub fn pace(speed: f64, started: Instant) {
    let spent = started.elapsed();
    let speed = if speed.is_nan() {
        1.0
    } else {
        speed.clamp(config::MIN_SIMULATED_SPEED, config::MAX_SIMULATED_SPEED)
    };
    if speed < 1.0 {
        std::thread::sleep(spent.mul_f64(1.0 / speed - 1.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_slower_device_lasts_longer() {
        let t = Instant::now();
        std::thread::sleep(Duration::from_millis(5));
        pace(0.5, t);
        assert!(t.elapsed() >= Duration::from_millis(10));
    }
}
