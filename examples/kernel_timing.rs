//! Times the kernels alone (no Polars) on 10M rows: `cargo run --release --example kernel_timing`.
//!
//! Arguments: `[rows] [indicator name, "rolling_max", or "copy" for the baseline only] [repetitions]`.
//! Each line is the best of the repetitions (the machine is shared: the minimum is the least
//! disturbed run) of the wall time and of the CPU time of all threads, and their ns/row; `copy` is
//! a plain copy of the three input arrays into three outputs, the memory traffic floor that a
//! kernel reading OHLC data is compared with.
use std::time::Instant;

use threadx::exec::cpu::RayonSplit;
use threadx::kernels::extrema::rolling_max;
use threadx::kernels::split::Sequential;
use threadx::kernels::Spec;

/// Nanoseconds all threads of this process have run on a CPU (Linux schedstat; 0 elsewhere). On a
/// shared machine it is steadier than wall time: waiting for a core is not counted.
fn cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Best wall time and best CPU time (all threads) of `reps` runs of `f`, in ms.
fn best_of(reps: usize, mut f: impl FnMut()) -> (f64, f64) {
    let (mut wall, mut cpu) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..reps {
        let (t0, c0) = (Instant::now(), cpu_ns());
        f();
        wall = wall.min(t0.elapsed().as_secs_f64() * 1e3);
        cpu = cpu.min((cpu_ns() - c0) as f64 * 1e-6);
    }
    (wall, cpu)
}

/// `name(p1,p2,...)` from the spec's parameters, so two stoch settings can be told apart.
fn label(spec: &Spec) -> String {
    let dbg = format!("{spec:?}");
    let params: Vec<&str> = dbg
        .split([',', '{', '}'])
        .filter_map(|f| f.split(':').nth(1))
        .map(str::trim)
        .collect();
    format!("{}({})", spec.name(), params.join(","))
}

fn report(name: &str, workers: usize, (wall, cpu): (f64, f64), n: usize) {
    let ns = |ms: f64| ms * 1e6 / n as f64;
    println!(
        "{name:<16} workers={workers}  {wall:8.2} ms  {:6.2} ns/row   cpu {cpu:8.2} ms  {:6.2} ns/row",
        ns(wall),
        ns(cpu)
    );
}

fn main() {
    let arg = |i: usize| std::env::args().nth(i);
    let n: usize = arg(1).and_then(|a| a.parse().ok()).unwrap_or(10_000_000);
    let only = arg(2);
    let reps: usize = arg(3).and_then(|a| a.parse().ok()).unwrap_or(5);
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
    let mut outs = vec![vec![0.0; n]; 3];
    if only.as_deref().is_none_or(|o| o == "copy") {
        let ms = best_of(reps, || {
            for (o, i) in outs.iter_mut().zip([&c, &h, &l]) {
                o.copy_from_slice(i);
            }
        });
        report("copy3", 1, ms, n);
    }
    if only.as_deref().is_none_or(|o| o == "rolling_max") {
        // The windowed-extrema primitive alone (stoch's first level), window 5 and 14.
        for w in [5, 14] {
            for workers in [1usize, 2] {
                let ms = best_of(reps, || {
                    if workers == 1 {
                        rolling_max(&Sequential, &h, w, &mut outs[0]);
                    } else {
                        rolling_max(&RayonSplit::new(workers), &h, w, &mut outs[0]);
                    }
                });
                report(&format!("max({w})"), workers, ms, n);
            }
        }
    }
    let specs = [
        Spec::bollinger(20, 2.0).unwrap(),
        Spec::sma(30).unwrap(),
        Spec::ema(30).unwrap(),
        Spec::wma(30).unwrap(),
        Spec::rolling_std(5, 0).unwrap(),
        Spec::rsi(14).unwrap(),
        Spec::macd(12, 26, 9).unwrap(),
        Spec::atr(14).unwrap(),
        Spec::stoch(5, 3, 3).unwrap(),
        Spec::stoch(14, 3, 3).unwrap(),
        Spec::stoch(21, 5, 8).unwrap(),
        Spec::Obv,
    ];
    for spec in specs {
        if only.as_deref().is_some_and(|o| o != spec.name()) {
            continue;
        }
        let inputs: Vec<&[f64]> = match spec.inputs().len() {
            3 => vec![&c, &h, &l],
            2 => vec![&c, &h],
            _ => vec![&c],
        };
        for workers in [1usize, 2] {
            let ms = best_of(reps, || {
                let mut views: Vec<&mut [f64]> = outs
                    .iter_mut()
                    .take(spec.outputs().len())
                    .map(|o| o.as_mut_slice())
                    .collect();
                if workers == 1 {
                    spec.run(&Sequential, &inputs, &mut views);
                } else {
                    spec.run(&RayonSplit::new(workers), &inputs, &mut views);
                }
            });
            report(&label(&spec), workers, ms, n);
        }
    }
}
