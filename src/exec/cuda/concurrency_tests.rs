//! Device sets under concurrency and failure, on host-built GPUs (each member on its own thread,
//! as GPUs are) locked through the production locking ([`DeviceSlots`]): many multi-GPU calls at
//! once, a member that panics, a host part that panics. Every run is under a [`deadline`], so a
//! deadlock fails the test instead of hanging it.

use std::sync::Arc;

use super::error::{catch, GpuError};
use super::host::{deadline, HostBackend};
use super::locks::DeviceSlots;
use super::pipeline::{run, run_multi, Backend};
use crate::kernels::split::{Sequential, Splitter};
use crate::kernels::testing::{series_zoo, Lcg};
use crate::kernels::Spec;

/// A host-built GPU's state behind its lock: how many calls used it.
#[derive(Default)]
struct HostGpu {
    calls: usize,
}

/// How a member's backend is made and whether its panics are caught (production catches them
/// per member; an uncaught one unwinds the member thread).
#[derive(Clone, Copy)]
struct Members {
    panic_at: Option<(usize, usize)>,
    caught: bool,
}

/// Runs `spec` on the GPUs `indices` of `slots`, locked as production locks them.
fn run_on_set(
    slots: &DeviceSlots<HostGpu>,
    indices: &[usize],
    shares: &[f64],
    spec: &Spec,
    ins: &[&[f64]],
    members: Members,
) -> Result<Vec<Vec<f64>>, GpuError> {
    let n = ins[0].len();
    let mut got = vec![vec![f64::NAN; n]; spec.outputs().len()];
    let mut o: Vec<&mut [f64]> = got.iter_mut().map(|v| v.as_mut_slice()).collect();
    slots.with_set(indices, |set| {
        let with_backend = |d: usize,
                            body: &mut dyn FnMut(&HostBackend) -> Result<(), GpuError>|
         -> Result<(), GpuError> {
            let mut go = || {
                set.with(d, |gpu| {
                    gpu.calls += 1;
                    let mut be = HostBackend::new();
                    be.panic_at_launch = members.panic_at.filter(|p| p.0 == d).map(|p| p.1);
                    body(&be)
                })?
            };
            if members.caught {
                catch("host GPU", go)
            } else {
                go()
            }
        };
        let rows = vec![1500; indices.len()];
        run_multi(&with_backend, spec, ins, &mut o, shares, &rows, None)
    })??;
    Ok(got)
}

fn single_device(spec: &Spec, ins: &[&[f64]]) -> Vec<Vec<f64>> {
    let mut want = vec![vec![f64::NAN; ins[0].len()]; spec.outputs().len()];
    let mut o: Vec<&mut [f64]> = want.iter_mut().map(|v| v.as_mut_slice()).collect();
    run(&HostBackend::new(), spec, ins, &mut o, usize::MAX).unwrap();
    want
}

fn same_bits(spec: &Spec, got: &[Vec<f64>], want: &[Vec<f64>]) -> bool {
    got.iter().zip(want).all(|(g, w)| {
        g[spec.lookback()..]
            .iter()
            .zip(&w[spec.lookback()..])
            .all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()))
    })
}

/// 8 threads, each running several multi-GPU scans on overlapping sets of 4 host-built GPUs in
/// different orders and shares. Members meet at barriers while holding their GPUs: with each
/// member locking its own GPU on its own thread, two calls end up each holding a GPU of the
/// other's set and wait forever. Every call must finish, with the single-device bits.
#[test]
fn concurrent_multi_gpu_scans_do_not_deadlock() {
    const GPUS: usize = 4;
    let slots = Arc::new(DeviceSlots::new(GPUS, HostGpu::default));
    let orders: [&[usize]; 7] = [
        &[0, 1],
        &[1, 0],
        &[2, 1, 0],
        &[3, 0, 2, 1],
        &[1, 3],
        &[0, 1, 2, 3],
        &[3, 2, 1, 0],
    ];
    let calls = {
        let slots = Arc::clone(&slots);
        deadline(60, "8 threads of multi-GPU scans", move || {
            std::thread::scope(|scope| {
                let workers: Vec<_> = (0..8u64)
                    .map(|t| {
                        let slots = &slots;
                        scope.spawn(move || {
                            let mut rng = Lcg(100 + t);
                            let x = series_zoo(6_000, t)[0].clone();
                            let mut done = 0;
                            let specs = [
                                Spec::ema(20).unwrap(),
                                Spec::macd(12, 26, 9).unwrap(),
                                Spec::rsi(14).unwrap(),
                            ];
                            for call in 0..6 {
                                let spec = &specs[call % 3];
                                let indices = orders[rng.below(orders.len())];
                                let shares: Vec<f64> =
                                    indices.iter().map(|_| 0.2 + rng.uniform()).collect();
                                let members = Members {
                                    panic_at: None,
                                    caught: true,
                                };
                                let got = run_on_set(slots, indices, &shares, spec, &[&x], members)
                                    .unwrap();
                                let want = single_device(spec, &[&x]);
                                assert!(same_bits(spec, &got, &want), "{spec:?} on {indices:?}");
                                done += indices.len();
                            }
                            done
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .sum::<usize>()
            })
        })
    };
    let used: usize = (0..GPUS).map(|i| slots.lock_one(i).unwrap().calls).sum();
    assert_eq!(used, calls, "every member ran once on its own GPU");
}

/// A member that panics (uncaught, unwinding its thread, or caught as production catches it) at
/// any launch of a one- or two-stage scan: the call returns an error, no member is left waiting
/// at a barrier, and every GPU can be locked again afterwards.
#[test]
fn a_panicking_member_fails_the_run_and_frees_the_others() {
    deadline(60, "runs with a panicking member", || {
        let slots = DeviceSlots::new(3, HostGpu::default);
        let x = series_zoo(9_000, 4)[0].clone();
        // Launches per member: ema drive, local, finish; macd twice that.
        for (spec, launches) in [
            (Spec::ema(10).unwrap(), 3),
            (Spec::macd(12, 26, 9).unwrap(), 6),
        ] {
            for member in 0..3 {
                for at in 1..=launches {
                    for caught in [false, true] {
                        let members = Members {
                            panic_at: Some((member, at)),
                            caught,
                        };
                        let r = run_on_set(&slots, &[2, 0, 1], &[1.0; 3], &spec, &[&x], members);
                        assert!(r.is_err(), "{spec:?} member {member} launch {at} {caught}");
                    }
                }
            }
        }
        // Nothing stayed locked or poisoned: a clean run still works and gives the right bits.
        let spec = Spec::ema(10).unwrap();
        let members = Members {
            panic_at: None,
            caught: true,
        };
        let got = run_on_set(&slots, &[0, 1, 2], &[1.0; 3], &spec, &[&x], members).unwrap();
        assert!(same_bits(&spec, &got, &single_device(&spec, &[&x])));
    });
}

/// The host members' splitter of a mixed set, failing: it panics on its first piece of work,
/// after a pause that lets the GPUs reach the point where they wait for the prefix's state.
struct PanickingHost;

impl PanickingHost {
    fn fail(&self) -> ! {
        std::thread::sleep(std::time::Duration::from_millis(50));
        panic!("injected panic in the host part")
    }
}

impl Splitter for PanickingHost {
    fn for_each_piece<const K: usize, F>(&self, _first: usize, _outs: [&mut [f64]; K], _fill: F)
    where
        F: Fn(usize, [&mut [f64]; K]) + Sync + Send,
    {
        self.fail()
    }

    fn map_indexed<T: Send, F>(&self, _n: usize, _f: F) -> Vec<T>
    where
        F: Fn(usize) -> T + Sync + Send,
    {
        self.fail()
    }

    fn max_pieces(&self) -> usize {
        1
    }

    fn last_piece_start(&self, first_row: usize, len: usize) -> usize {
        Sequential.last_piece_start(first_row, len)
    }
}

/// A panic in the host (CPU) part of a mixed set: GPU member 0, waiting for the prefix's scan
/// state, is released (the hand-off closes as the host thread unwinds), and the call returns the
/// host part's error instead of hanging.
#[test]
fn a_panicking_host_part_releases_the_gpus() {
    use super::host::run_mixed_on_host_gpus;
    use crate::kernels::scan::SCAN_BLOCK;
    deadline(60, "a mixed set whose host part panics", || {
        let x = series_zoo(8_000, 6)[0].clone();
        for spec in [Spec::ema(20).unwrap(), Spec::macd(12, 26, 9).unwrap()] {
            let ins: [&[f64]; 1] = [&x];
            let mut got = vec![vec![0.0; x.len()]; spec.outputs().len()];
            let mut o: Vec<&mut [f64]> = got.iter_mut().map(|v| v.as_mut_slice()).collect();
            let r = run_mixed_on_host_gpus(
                &spec,
                &PanickingHost,
                2 * SCAN_BLOCK,
                &ins,
                &mut o,
                &[1.0, 1.0],
            );
            assert_eq!(
                r,
                Err(GpuError::DeviceSet(
                    "the host part of the device set panicked"
                )),
                "{spec:?}"
            );
        }
    });
}

/// The host-built backend reports launches and panics where it is told to (the tests above rely
/// on it).
#[test]
fn the_panic_injection_fires_at_the_chosen_launch() {
    use super::args::{Kernel, RowArgs};
    let mut be = HostBackend::new();
    be.panic_at_launch = Some(2);
    let args = RowArgs::default();
    assert!(be.launch(Kernel::Roc, 0, &args).is_ok());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        be.launch(Kernel::Roc, 0, &args)
    }));
    assert!(r.is_err());
}
