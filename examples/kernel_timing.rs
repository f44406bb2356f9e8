//! Times the kernels alone (no Polars) on 10M rows:
//! `cargo run --release --example kernel_timing [ROWS [NAME[,NAME…]]]`.
//! Prints the best of 5 runs (ms and ns/row), after a memcpy of one column as a memory baseline,
//! and on Linux the mean CPU time of all the process's threads per row: on a machine shared with
//! other jobs, wall time with 2 workers says little, CPU time (spin-waits included) still does.
use std::time::Instant;

use threadx::exec::cpu::RayonSplit;
use threadx::kernels::split::Sequential;
use threadx::kernels::Spec;

const REPS: usize = 5;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let mut seed = 1u64;
    let mut p = 100.0;
    let c: Vec<f64> = (0..n)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            p += ((seed >> 11) as f64 / (1u64 << 53) as f64) - 0.5;
            p
        })
        .collect();
    let h: Vec<f64> = c.iter().map(|v| v + 0.3).collect();
    let l: Vec<f64> = c.iter().map(|v| v - 0.3).collect();
    let specs = [
        Spec::bollinger(20, 2.0).unwrap(),
        Spec::sma(30).unwrap(),
        Spec::ema(30).unwrap(),
        Spec::wma(30).unwrap(),
        Spec::rolling_std(5, 0).unwrap(),
        Spec::rsi(14).unwrap(),
        Spec::macd(12, 26, 9).unwrap(),
        Spec::atr(14).unwrap(),
        Spec::natr(14).unwrap(),
        Spec::stoch(5, 3, 3).unwrap(),
        Spec::stoch(14, 3, 3).unwrap(),
        Spec::stoch(21, 5, 8).unwrap(),
        Spec::Obv,
        // Wave A's scan-based averages (#12's speed targets).
        Spec::Kama { period: 30 },
        Spec::T3 {
            period: 5,
            vfactor: 0.7,
        },
    ];
    let only = std::env::args().nth(2);
    let wanted = |name: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|w| w == name))
    };
    let mut outs = vec![vec![0.0; n]; 3];
    if wanted("memcpy") {
        let mut best = f64::INFINITY;
        for _ in 0..REPS {
            let t0 = Instant::now();
            outs[0].copy_from_slice(&c);
            best = best.min(t0.elapsed().as_secs_f64() * 1e3);
        }
        report("memcpy", 1, best, n);
    }
    for spec in specs {
        if !wanted(spec.name()) {
            continue;
        }
        let inputs: Vec<&[f64]> = match spec.inputs().len() {
            3 => vec![&c, &h, &l],
            2 => vec![&c, &h],
            _ => vec![&c],
        };
        for workers in [1usize, 2] {
            let mut best = f64::INFINITY;
            // Scheduler ticks make each run's CPU time coarse (4 ms here): sum over all runs.
            let mut cpu = cpu_ns().map(|_| 0u64);
            for _ in 0..REPS {
                let mut views: Vec<&mut [f64]> = outs
                    .iter_mut()
                    .take(spec.outputs().len())
                    .map(|o| o.as_mut_slice())
                    .collect();
                let cpu0 = cpu_ns();
                let t0 = Instant::now();
                if workers == 1 {
                    spec.run(&Sequential, &inputs, &mut views);
                } else {
                    spec.run(&RayonSplit::new(workers), &inputs, &mut views);
                }
                best = best.min(t0.elapsed().as_secs_f64() * 1e3);
                if let (Some(a), Some(b), Some(sum)) = (cpu0, cpu_ns(), cpu.as_mut()) {
                    *sum += b - a;
                }
            }
            report(spec.name(), workers, best, n);
            if let Some(sum) = cpu {
                let per_row = sum as f64 / (REPS * n.max(1)) as f64;
                println!(
                    "{:<12} workers={workers}  cpu {per_row:6.3} ns/row",
                    spec.name()
                );
            }
        }
    }
}

fn report(name: &str, workers: usize, best_ms: f64, n: usize) {
    let ns_per_row = best_ms * 1e6 / n.max(1) as f64;
    println!("{name:<12} workers={workers}  {best_ms:8.2} ms  {ns_per_row:6.3} ns/row");
}

/// CPU time of all threads of this process so far (the rayon pool's included), in ns, from
/// `/proc/self/task/*/schedstat` (Linux only).
fn cpu_ns() -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}
