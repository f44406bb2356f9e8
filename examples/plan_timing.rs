//! Cost of planning one call (profile lock + planner): `cargo run --release --example plan_timing`.
use std::time::Instant;

use threadx::exec::{plan_named, CallContext, Device};

fn main() {
    let n = 200_000;
    for (label, ctx) in [
        (
            "standalone call",
            CallContext {
                caller_parallel: false,
            },
        ),
        (
            "inside .over()",
            CallContext {
                caller_parallel: true,
            },
        ),
    ] {
        let _ = plan_named("sma", &Device::Auto, 1_000, ctx, true);
        let t0 = Instant::now();
        for i in 0..n {
            let _ = plan_named("sma", &Device::Auto, 1_000 + (i & 1023), ctx, true);
        }
        println!(
            "{label:<16} {:7.1} ns per plan",
            t0.elapsed().as_secs_f64() * 1e9 / n as f64
        );
    }
}
