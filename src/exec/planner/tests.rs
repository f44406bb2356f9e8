//! The planner's unit tests: forced placements, the choice among measured candidates,
//! exploration, device sets and the learned small-input threshold.

use std::collections::BTreeMap;

use super::*;
use crate::exec::cpuinfo::CpuInfo;
use crate::exec::device::Device;
use crate::exec::devset::{DeviceSet, SetMember};
use crate::exec::error::ExecError;
use crate::exec::placement::Placement;
use crate::exec::profile::schema::{LinkModel, MachineProfile};
use crate::exec::profile::{Fingerprint, Sample};

fn cpu(physical: usize) -> CpuInfo {
    CpuInfo {
        model: "test".into(),
        physical_cores: physical,
        logical_cores: physical * 2,
        hyperthreading: true,
    }
}

fn req<'a>(rows: usize, cpu: &'a CpuInfo, profile: Option<&'a MachineProfile>) -> PlanRequest<'a> {
    PlanRequest {
        indicator: "sma",
        workload: "sma",
        rows,
        device: &Device::Auto,
        caller_parallel: false,
        forced_threads: None,
        cpu,
        profile,
        draw: 0.99,
        gpus: &[],
        gpu_reason: Some("test: no GPU"),
        balance: None,
    }
}

fn gpu(index: usize, link: Option<LinkModel>) -> GpuCandidate {
    GpuCandidate {
        index,
        profile_key: format!("gpu:uuid-{index}"),
        link,
    }
}

/// Adds three `sma` samples of `rows` rows at `ns` per row for `backend`.
fn measure(p: &mut MachineProfile, backend: &str, rows: usize, ns: f64) {
    for _ in 0..3 {
        p.push(&Sample {
            indicator: "sma".into(),
            rows,
            backend: backend.into(),
            seconds: ns * rows as f64 / 1e9,
            unix: 1,
        });
    }
}

/// A profile where every CPU candidate of a 4-core machine and `gpu:uuid-0` are measured.
fn cpu_and_gpu_profile(rows: usize, cpu_ns: f64, gpu_ns: f64) -> MachineProfile {
    let mut p = profile_with(&[
        (rows, 1, cpu_ns * 2.0, 3),
        (rows, 2, cpu_ns * 1.5, 3),
        (rows, 4, cpu_ns, 3),
    ]);
    measure(&mut p, "gpu:uuid-0", rows, gpu_ns);
    p
}

#[test]
fn forced_gpu_picks_the_listed_device_or_explains_why_not() {
    let c = cpu(4);
    let gpus = [gpu(0, None), gpu(1, None)];
    let mut r = req(10, &c, None);
    r.device = &Device::Gpu(None);
    assert!(matches!(plan(&r), Err(ExecError::NoGpu { reason, .. }) if reason == "test: no GPU"));
    r.gpus = &gpus;
    assert_eq!(plan(&r).unwrap().gpu, Some(0));
    let one = Device::Gpu(Some(vec![1]));
    r.device = &one;
    let p = plan(&r).unwrap();
    assert_eq!((p.gpu, &p.backend), (Some(1), &Placement::Gpu(1)));
    let missing = Device::Gpu(Some(vec![7]));
    r.device = &missing;
    assert!(matches!(
        plan(&r),
        Err(ExecError::NoSuchGpu { ordinal: 7, .. })
    ));
}

#[test]
fn a_forced_gpu_plan_lists_the_profile_entry_behind_its_prediction() {
    let c = cpu(4);
    let gpus = [gpu(0, None)];
    let rows = GPU_AUTO_MIN_ROWS;
    let measured = cpu_and_gpu_profile(rows, 2.0, 0.5);
    let mut r = req(rows, &c, Some(&measured));
    r.gpus = &gpus;
    r.device = &Device::Gpu(None);
    let p = plan(&r).unwrap();
    assert!(p.candidates[0].samples > 0);
    assert_eq!(p.profile_entries.len(), 1, "{:?}", p.profile_entries);
    assert!(
        p.profile_entries[0].contains("gpu:uuid-0"),
        "{:?}",
        p.profile_entries
    );
    r.profile = None;
    assert!(plan(&r).unwrap().profile_entries.is_empty());
}

#[test]
fn auto_picks_the_gpu_only_when_its_measured_time_wins() {
    let c = cpu(4);
    let gpus = [gpu(0, None)];
    let rows = GPU_AUTO_MIN_ROWS * 4;
    let fast_gpu = cpu_and_gpu_profile(rows, 2.0, 0.5);
    let mut r = req(rows, &c, Some(&fast_gpu));
    r.gpus = &gpus;
    let p = plan(&r).unwrap();
    // GPU 0.5 ns/row beats the CPU's 2.0; splitting 80/20 by throughput beats both.
    let gpu_alone = p
        .candidates
        .iter()
        .find(|c| c.backend == Placement::Gpu(0))
        .unwrap();
    let cpu_best = p
        .candidates
        .iter()
        .find(|c| c.backend == Placement::Cpu { workers: 4 })
        .unwrap();
    assert!(gpu_alone.predicted_ms < cpu_best.predicted_ms);
    assert_eq!(p.backend, Placement::Set(DeviceSet::All), "{}", p.reason);
    assert!((p.split[0].share - 0.8).abs() < 1e-12, "{:?}", p.split);
    // Once the split has been measured slower than the GPU alone, the GPU alone wins.
    let mut measured = fast_gpu.clone();
    measure(&mut measured, "all", rows, 0.7);
    r.profile = Some(&measured);
    let p = plan(&r).unwrap();
    assert_eq!(
        (p.gpu, &p.backend),
        (Some(0), &Placement::Gpu(0)),
        "{}",
        p.reason
    );
    let mut slow_gpu = cpu_and_gpu_profile(rows, 2.0, 5.0);
    measure(&mut slow_gpu, "all", rows, 2.5);
    r.profile = Some(&slow_gpu);
    let p = plan(&r).unwrap();
    assert_eq!(
        (p.gpu, &p.backend),
        (None, &Placement::Cpu { workers: 4 }),
        "{}",
        p.reason
    );
    // Small calls and calls inside Polars' parallel sections never consider the GPU.
    let mut small = req(GPU_AUTO_MIN_ROWS / 2, &c, Some(&fast_gpu));
    small.gpus = &gpus;
    assert!(plan(&small)
        .unwrap()
        .candidates
        .iter()
        .all(|c| matches!(c.backend, Placement::Cpu { .. })));
    r.profile = Some(&fast_gpu);
    r.caller_parallel = true;
    assert_eq!(plan(&r).unwrap().gpu, None);
}

#[test]
fn a_forced_set_runs_its_cpu_member_on_the_forced_worker_count() {
    let c = cpu(4);
    let gpus = [gpu(0, None)];
    let mut r = req(1000, &c, None);
    r.gpus = &gpus;
    r.device = &Device::All;
    assert_eq!(plan(&r).unwrap().workers, worker_cap(&c));
    r.forced_threads = Some(2);
    let p = plan(&r).unwrap();
    assert_eq!(p.backend, Placement::Set(DeviceSet::All));
    assert_eq!(p.workers, 2);
}

#[test]
fn forced_sets_use_stored_ratios_then_throughputs_then_equal_shares() {
    let c = cpu(4);
    let gpus = [gpu(0, None), gpu(1, None)];
    let mut r = req(1000, &c, None);
    r.gpus = &gpus;
    r.device = &Device::Gpus;
    let p = plan(&r).unwrap();
    assert_eq!(p.backend, Placement::Set(DeviceSet::Gpus));
    assert_eq!(
        p.split
            .iter()
            .map(|m| (m.device, m.share))
            .collect::<Vec<_>>(),
        vec![(SetMember::Gpu(0), 0.5), (SetMember::Gpu(1), 0.5)]
    );
    let stored: BTreeMap<String, f64> = [("gpu:uuid-0", 3.0), ("gpu:uuid-1", 1.0), ("cpu", 4.0)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    r.balance = Some(&stored);
    r.device = &Device::All;
    let p = plan(&r).unwrap();
    let shares: Vec<f64> = p.split.iter().map(|m| m.share).collect();
    assert_eq!(shares, vec![0.375, 0.125, 0.5]);
    assert!(p.reason.contains("stored balance ratios"), "{}", p.reason);
    // A set with a member the ratios do not cover falls back to measured throughputs.
    let rows = 1 << 21;
    let prof = cpu_and_gpu_profile(rows, 2.0, 1.0);
    let one = BTreeMap::from([("gpu:uuid-0".to_string(), 1.0)]);
    let mut r = req(rows, &c, Some(&prof));
    r.gpus = &gpus[..1];
    r.balance = Some(&one);
    r.device = &Device::All;
    let p = plan(&r).unwrap();
    assert!(p.reason.contains("measured throughputs"), "{}", p.reason);
    let shares: Vec<f64> = p.split.iter().map(|m| m.share).collect();
    assert!((shares[0] - 2.0 / 3.0).abs() < 1e-12, "{shares:?}");
    let two = Device::Gpu(Some(vec![0, 5]));
    r.device = &two;
    assert!(matches!(
        plan(&r),
        Err(ExecError::NoSuchGpu { ordinal: 5, .. })
    ));
}

#[test]
fn auto_splits_only_when_the_predicted_makespan_wins() {
    let c = cpu(4);
    let gpus = [gpu(0, None)];
    let rows = GPU_AUTO_MIN_ROWS * 4;
    // GPU 1.0 ns/row, CPU (4 workers) 1.0 ns/row: split halves the time -> "all".
    let even = cpu_and_gpu_profile(rows, 1.0, 1.0);
    let mut r = req(rows, &c, Some(&even));
    r.gpus = &gpus;
    let p = plan(&r).unwrap();
    assert_eq!(p.backend, Placement::Set(DeviceSet::All), "{}", p.reason);
    let all = p
        .candidates
        .iter()
        .find(|c| c.backend == Placement::Set(DeviceSet::All))
        .unwrap();
    let single = rows as f64 * 1.0 / 1e6;
    let want = single / 2.0 + SET_OVERHEAD_MS;
    assert!((all.predicted_ms.unwrap() - want).abs() < 1e-9, "{all:?}");
    assert_eq!(p.split.len(), 2);
    // Without measurements for every member a set is never picked.
    let cpu_only = profile_with(&[(rows, 1, 4.0, 3), (rows, 2, 3.0, 3), (rows, 4, 2.0, 3)]);
    r.profile = Some(&cpu_only);
    let p = plan(&r).unwrap();
    assert!(p.split.is_empty(), "{}", p.backend);
}

#[test]
fn an_unmeasured_gpu_is_explored_and_predicted_from_its_link() {
    let c = cpu(4);
    let link = LinkModel {
        h2d_gb_per_s: 25.0,
        d2h_gb_per_s: 20.0,
        latency_us: 10.0,
        samples: 1,
    };
    let gpus = [gpu(0, Some(link.clone()))];
    let rows = GPU_AUTO_MIN_ROWS * 2;
    let mut r = req(rows, &c, None);
    r.gpus = &gpus;
    let p = plan(&r).unwrap();
    assert_eq!(p.gpu, None, "no samples: the CPU default runs");
    let g = p
        .candidates
        .iter()
        .find(|c| c.backend == Placement::Gpu(0))
        .unwrap();
    let want = (rows as f64 * 8.0 / 25e9 + rows as f64 * 8.0 / 20e9 + 20e-6) * 1e3;
    assert!(
        (g.predicted_ms.unwrap() - want).abs() < 1e-9,
        "{g:?} vs {want}"
    );
    r.draw = EXPLORE_RATE / 4.0;
    let p = plan(&r).unwrap();
    assert!(p.explored && p.gpu == Some(0), "{}", p.reason);
}

fn profile_with(entries: &[(usize, usize, f64, u64)]) -> MachineProfile {
    let mut p = MachineProfile::new(Fingerprint::current());
    for &(rows, workers, ns_per_row, n) in entries {
        for _ in 0..n {
            p.push(&Sample {
                indicator: "sma".into(),
                rows,
                backend: format!("cpu:{workers}"),
                seconds: ns_per_row * rows as f64 / 1e9,
                unix: 1,
            });
        }
    }
    p
}

#[test]
fn small_inputs_get_one_worker() {
    let c = cpu(8);
    let p = req(1_000, &c, None);
    assert_eq!(plan(&p).unwrap().workers, 1);
}

#[test]
fn inside_a_parallel_context_one_worker() {
    let c = cpu(8);
    let mut p = req(50_000_000, &c, None);
    p.caller_parallel = true;
    let plan = plan(&p).unwrap();
    assert_eq!(plan.workers, 1);
    assert!(plan.reason.contains("parallel"));
}

#[test]
fn forced_threads_are_honoured_and_gpu_is_an_error() {
    let c = cpu(4);
    let mut p = req(100, &c, None);
    p.forced_threads = Some(3);
    assert_eq!(plan(&p).unwrap().workers, 3);
    let gpu = Device::Gpu(None);
    p.device = &gpu;
    assert!(matches!(plan(&p), Err(ExecError::NoGpu { .. })));
}

#[test]
fn cold_start_uses_the_conservative_default() {
    let c = cpu(8);
    let plan = plan(&req(10_000_000, &c, None)).unwrap();
    assert_eq!(
        plan.workers,
        heuristic_workers(10_000_000, DEFAULT_SMALL_ROWS, 7)
    );
    assert_eq!(plan.workers, 7);
    assert!(plan.reason.contains("too few samples"), "{}", plan.reason);
    assert!(plan.candidates.iter().all(|c| c.predicted_ms.is_none()));
}

#[test]
fn a_full_profile_picks_the_fastest_candidate() {
    let c = cpu(4); // candidates cpu:1, cpu:2, cpu:4
    let rows = 1 << 20;
    let p = profile_with(&[(rows, 1, 4.0, 6), (rows, 2, 1.5, 6), (rows, 4, 2.5, 6)]);
    let plan = plan(&req(rows, &c, Some(&p))).unwrap();
    assert_eq!(plan.workers, 2, "{plan:?}");
    assert!(plan.reason.contains("fastest"));
    assert_eq!(plan.profile_entries.len(), 3);
    let two = plan.candidates.iter().find(|c| c.workers == 2).unwrap();
    assert!((two.predicted_ms.unwrap() - 1.5 * rows as f64 / 1e6).abs() < 1e-9);
}

#[test]
fn exploration_happens_only_on_a_low_draw_and_is_reproducible() {
    let c = cpu(4);
    let rows = 1 << 20;
    let p = profile_with(&[(rows, 1, 4.0, 6)]);
    let mut r = req(rows, &c, Some(&p));
    r.draw = 0.5;
    assert!(!plan(&r).unwrap().explored);
    r.draw = 0.01;
    let a = plan(&r).unwrap();
    let b = plan(&r).unwrap();
    assert!(a.explored && a == b);
    assert_eq!(a.workers, 2, "fewest samples first, then fewest workers");
    let full = profile_with(&[(rows, 1, 4.0, 6), (rows, 2, 1.0, 9), (rows, 4, 3.0, 5)]);
    let mut r = req(rows, &c, Some(&full));
    r.draw = 0.01;
    let again = plan(&r).unwrap();
    assert!(
        again.explored && again.workers == 4,
        "re-measures the least-sampled other: {again:?}"
    );
    r.draw = 0.04;
    assert_eq!(plan(&r).unwrap().workers, 2);
}

#[test]
fn the_small_input_threshold_is_learned() {
    let p = profile_with(&[
        (3_000, 1, 5.0, 5),
        (3_000, 2, 4.0, 5),
        (600, 1, 5.0, 5),
        (600, 2, 9.0, 5),
    ]);
    assert_eq!(small_input_threshold("sma", Some(&p)), 2048);
    assert_eq!(small_input_threshold("ema", Some(&p)), DEFAULT_SMALL_ROWS);
}

#[test]
fn an_unmeasured_bucket_borrows_a_near_one() {
    let c = cpu(2);
    let p = profile_with(&[(1 << 20, 1, 4.0, 4), (1 << 20, 2, 1.0, 4)]);
    let near = plan(&req(1 << 21, &c, Some(&p))).unwrap();
    assert_eq!(near.workers, 2);
    assert!(
        near.profile_entries.iter().all(|e| e.contains("2^20")),
        "{near:?}"
    );
    let far = plan(&req(1 << 24, &c, Some(&p))).unwrap();
    assert!(far.reason.contains("too few samples"), "{far:?}");
}

#[test]
fn worker_cap_leaves_headroom_on_big_machines() {
    assert_eq!(worker_cap(&cpu(2)), 2);
    assert_eq!(worker_cap(&cpu(16)), 15);
}

/// Python builds `Explanation(**data)` from this JSON: the field names, their order and the text
/// of placements and members must not change.
#[test]
fn plans_serialize_in_the_shape_python_reads() {
    let c = cpu(4);
    let gpus = [gpu(0, None), gpu(1, None)];
    let mut r = req(1000, &c, None);
    r.gpus = &gpus;
    r.device = &Device::Gpus;
    let json = serde_json::to_string(&plan(&r).unwrap()).unwrap();
    assert_eq!(
        json,
        r#"{"indicator":"sma","rows":1000,"size_bucket":"2^9","backend":"gpus","workers":4,"reason":"forced by device='gpus': split gpu:0 50.0%, gpu:1 50.0% (equal shares (no ratios or measurements yet))","explored":false,"gpu":null,"split":[{"device":"gpu:0","key":"gpu:uuid-0","share":0.5},{"device":"gpu:1","key":"gpu:uuid-1","share":0.5}],"candidates":[],"profile_entries":[]}"#
    );
    let one = Device::Gpu(Some(vec![1]));
    r.device = &one;
    let json = serde_json::to_string(&plan(&r).unwrap()).unwrap();
    assert!(
        json.contains(r#""backend":"gpu:1","workers":1,"#)
            && json.contains(r#""gpu":1,"split":[],"candidates":[{"backend":"gpu:1","workers":1,"predicted_ms":null,"samples":0}]"#),
        "{json}"
    );
    let auto = serde_json::to_value(plan(&req(1 << 20, &c, None)).unwrap()).unwrap();
    assert_eq!(auto["backend"], "cpu:4");
    let names: Vec<&str> = auto["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["backend"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cpu:1", "cpu:2", "cpu:4"]);
}
