//! A batch: one indicator computed for several parameter sets (a sweep) on several independent
//! series laid end to end (`by=` segments), in one call. Each (parameter set, series) pair is a
//! [`Unit`]: the indicator on that series alone, so its rows are the bits of computing it by
//! itself, whatever else is in the batch and however the batch is scheduled.
//!
//! On the CPU, units are scheduled by size. A unit longer than the batch's fair share per worker
//! (all its rows divided by the workers) could not be balanced as a whole, so it runs on every
//! worker through the usual block split (`cpu::run`); all other units (thousands of short
//! symbols, forty periods of one series) run whole, one per task, side by side on rayon's pool,
//! which packs them onto the workers. That is the whole point of a batch: one pool hand-off for
//! thousands of series instead of one plugin call each.

use rayon::prelude::*;

use super::cpu;
use crate::kernels::split::Sequential;
use crate::kernels::Spec;

/// One indicator call of a batch: a parameter set on one series.
pub struct Unit<'a> {
    pub spec: &'a Spec,
    pub inputs: Vec<&'a [f64]>,
    pub outs: Vec<&'a mut [f64]>,
}

impl Unit<'_> {
    pub fn rows(&self) -> usize {
        self.inputs.first().map_or(0, |x| x.len())
    }
}

/// The units of a batch: every call of `specs` on every series (`bounds[i]..bounds[i + 1]`),
/// each writing its own rows of `outs[call]`.
pub fn units<'a>(
    specs: &'a [Spec],
    inputs: &[&'a [f64]],
    bounds: &[usize],
    outs: Vec<Vec<&'a mut [f64]>>,
) -> Vec<Unit<'a>> {
    let mut units = Vec::with_capacity(specs.len() * bounds.len().saturating_sub(1));
    for (spec, call_outs) in specs.iter().zip(outs) {
        let mut rest = call_outs;
        for w in bounds.windows(2) {
            let len = w[1] - w[0];
            let mut outs = Vec::with_capacity(rest.len());
            let mut tails = Vec::with_capacity(rest.len());
            for o in rest {
                let (head, tail) = o.split_at_mut(len);
                outs.push(head);
                tails.push(tail);
            }
            rest = tails;
            units.push(Unit {
                spec,
                inputs: inputs.iter().map(|x| &x[w[0]..w[1]]).collect(),
                outs,
            });
        }
    }
    units
}

/// Runs `units` on `workers` CPU workers (see the module doc for the schedule).
pub fn run_on_cpu(units: Vec<Unit>, workers: usize) {
    let total: usize = units.iter().map(Unit::rows).sum();
    if workers <= 1 || units.len() == 1 {
        for mut u in units {
            cpu::run(u.spec, workers, &u.inputs, &mut u.outs);
        }
        return;
    }
    let fair_share = total.div_ceil(workers);
    let (long, short): (Vec<Unit>, Vec<Unit>) =
        units.into_iter().partition(|u| u.rows() > fair_share);
    for mut u in long {
        cpu::run(u.spec, workers, &u.inputs, &mut u.outs);
    }
    if short.is_empty() {
        return;
    }
    cpu::in_pool(|| {
        short
            .into_par_iter()
            .with_max_len(1)
            .for_each(|mut u| u.spec.run(&Sequential, &u.inputs, &mut u.outs))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::registry::build_named;
    use crate::kernels::testing::{assert_bits_eq, Lcg};

    fn series(n: usize, seed: u64) -> Vec<f64> {
        let mut rng = Lcg(seed);
        let mut x = 100.0;
        (0..n)
            .map(|_| {
                x += rng.uniform() - 0.5;
                x
            })
            .collect()
    }

    /// Every (parameter set, segment) of a batch has the bits of the indicator computed on that
    /// segment alone, for any worker count and any mix of short and long segments.
    #[test]
    fn a_batch_unit_has_the_bits_of_its_series_alone() {
        let bounds = [0, 3, 40, 41, 2_000, 2_100, 60_000, 60_050];
        let n = *bounds.last().unwrap();
        let (h, l, c) = (series(n, 1), series(n, 2), series(n, 3));
        let high: Vec<f64> = h.iter().zip(&l).map(|(a, b)| a.max(*b) + 1.0).collect();
        let low: Vec<f64> = h.iter().zip(&l).map(|(a, b)| a.min(*b)).collect();
        for (name, params) in [
            ("sma", vec![("period", 5.0)]),
            ("ema", vec![("period", 30.0)]),
            ("atr", vec![("period", 14.0)]),
            ("bollinger", vec![("period", 20.0), ("std_dev", 2.0)]),
        ] {
            // Two parameter sets: the declared periods and three more.
            let longer = params
                .iter()
                .map(|&(k, v)| (k, if k == "period" { v + 3.0 } else { v }));
            let specs = [
                build_named(name, params.iter().copied()).unwrap(),
                build_named(name, longer).unwrap(),
            ];
            let inputs: Vec<&[f64]> = match name {
                "atr" => vec![&high, &low, &c],
                _ => vec![&c],
            };
            let k = specs[0].outputs().len();
            for workers in [1, 2, 3, 8] {
                let mut got = vec![vec![vec![0.0; n]; k]; specs.len()];
                let outs = got
                    .iter_mut()
                    .map(|o| o.iter_mut().map(|v| v.as_mut_slice()).collect())
                    .collect();
                run_on_cpu(units(&specs, &inputs, &bounds, outs), workers);
                for (spec, call) in specs.iter().zip(&got) {
                    for w in bounds.windows(2) {
                        let seg: Vec<&[f64]> = inputs.iter().map(|x| &x[w[0]..w[1]]).collect();
                        let mut alone = vec![vec![0.0; w[1] - w[0]]; k];
                        let mut views: Vec<&mut [f64]> =
                            alone.iter_mut().map(|v| v.as_mut_slice()).collect();
                        spec.run(&Sequential, &seg, &mut views);
                        let lb = spec.lookback().min(w[1] - w[0]);
                        for (o, a) in call.iter().zip(&alone) {
                            assert_bits_eq(&o[w[0] + lb..w[1]], &a[lb..], name);
                        }
                    }
                }
            }
        }
    }
}
