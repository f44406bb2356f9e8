//! Simulated GPUs (`THREADX_SIMULATED_GPUS="1.0,0.5"`): devices that run the Rust kernels on one
//! CPU thread and then idle, so that they take `1/speed` times as long as a nominal device of
//! [`NOMINAL_NS_PER_ROW`] (or as that thread, when it was slower). The nominal time makes their
//! speeds what the variable says on a busy machine too: a piece of work then lasts mostly
//! sleeping, which other processes do not slow down, so profiling measures the stated ratios
//! instead of the moment's CPU contention. GPU
//! discovery lists them after the real GPUs (`GpuInfo::simulated` holds their slot), so tests and
//! demos of multi-device balancing run on any machine. Their bits are the CPU's by construction.

use std::time::{Duration, Instant};

use crate::exec::config;

/// The current speed of simulated GPU `slot` (1.0 if the variable no longer lists it or is no
/// longer valid). Read on every call, so a test can slow a device down mid-process.
pub fn speed(slot: usize) -> f64 {
    config::simulated_gpu_speeds()
        .ok()
        .and_then(|s| s.get(slot).copied())
        .unwrap_or(1.0)
}

/// A simulated GPU of speed 1.0 takes this long per row at least: well above any of our kernels
/// on one thread (a few ns per row), so that on a loaded machine the sleep, not the contended
/// computing, still sets the time, and the host's own work around a call (converting inputs,
/// building the output: a few ms per million rows) is small beside it.
pub const NOMINAL_NS_PER_ROW: f64 = 100.0;

/// After work on `rows` rows that started at `started`, idles until it has taken `1/speed` times
/// as long as the longer of the work itself and the nominal time of those rows. Speeds above 1.0
/// run at 1.0 (a simulated device cannot outrun its thread). The speed is clamped to the
/// accepted range, so the wait is at most `1000x` and never overflows.
pub fn pace(speed: f64, started: Instant, rows: usize) {
    let spent = started.elapsed();
    let speed = if speed.is_nan() {
        1.0
    } else {
        speed.clamp(config::MIN_SIMULATED_SPEED, config::MAX_SIMULATED_SPEED)
    };
    let nominal = Duration::from_secs_f64(rows as f64 * NOMINAL_NS_PER_ROW * 1e-9);
    let target = spent.max(nominal).mul_f64(1.0 / speed.min(1.0));
    if let Some(wait) = target.checked_sub(spent) {
        std::thread::sleep(wait);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slower_device_lasts_longer() {
        let t = Instant::now();
        std::thread::sleep(Duration::from_millis(5));
        pace(0.5, t, 0);
        assert!(t.elapsed() >= Duration::from_millis(10));
    }

    #[test]
    fn short_work_lasts_the_nominal_time_of_its_rows() {
        // 50,000 rows: 5 ms at speed 1.0, 20 ms at 0.25, whatever the (tiny) work took.
        for (speed, want_ms) in [(1.0, 5.0), (0.25, 20.0), (4.0, 5.0)] {
            let t = Instant::now();
            pace(speed, t, 50_000);
            let ms = t.elapsed().as_secs_f64() * 1e3;
            assert!(
                ms >= want_ms,
                "speed {speed}: {ms} ms, want at least {want_ms}"
            );
            assert!(
                ms < want_ms * 3.0 + 20.0,
                "speed {speed}: {ms} ms, want about {want_ms}"
            );
        }
    }
}
