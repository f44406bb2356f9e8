//! A batch (`by=` segments, sweep combinations) on a device set: whole units to each member.
//!
//! A unit (one parameter set on one series, [`batch::Unit`]) is independent of the others, so a
//! set does not need to cut it: the units go to the members in proportion to the members' balance
//! shares, in batch order, and every member runs its own units side by side with the others (the
//! CPU packs them onto its workers, a simulated GPU runs them on its thread, a real GPU takes each
//! of its runs of consecutive segments as one upload and one launch per kernel). Each member's
//! rows and busy time then refine the workload's ratios, as a split call's do. A unit longer than
//! one member's equal share of the batch could not be balanced whole; it goes through the set's
//! usual row split ([`run_split`](super::run)), like a single call.
//!
//! Which member computes a unit changes no bit: each unit's rows are those of the indicator on
//! that series alone, on any member (the host members run the same kernels, and the CUDA kernels
//! are bit-checked against them).

use std::time::{Duration, Instant};

use super::batch::{self, Unit};
use super::cuda::{self, GpuError, GpuStatus};
use super::devset::partition::Partition;
use super::devset::split::usable_shares;
use super::devset::{simulated, Member};
use super::placement::Placement;
use super::plan_call::workload_tag;
use super::planner::Plan;
use super::{fallback, profile};
use crate::kernels::split::Sequential;
use crate::kernels::Spec;

/// The member of each unit (`rows[u]` rows), in batch order: unit `u` goes to the member whose
/// part of the cumulative rows (`shares`, normalised) holds the unit's middle row, so each member
/// gets a run of consecutive units about its share of the rows. `None` marks a unit longer than
/// an equal share of the batch per member with a share: it is split across the set instead.
pub fn assign(rows: &[usize], shares: &[f64]) -> Vec<Option<usize>> {
    let clean = usable_shares(shares);
    let members = clean.iter().filter(|s| **s > 0.0).count();
    let total_share: f64 = clean.iter().sum();
    let total: usize = rows.iter().sum();
    if members == 0 || total == 0 {
        return vec![None; rows.len()];
    }
    // Cumulative row position where each member's part ends.
    let mut ends = Vec::with_capacity(clean.len());
    let mut acc = 0.0;
    for s in &clean {
        acc += s / total_share;
        ends.push(acc * total as f64);
    }
    let last = clean.iter().rposition(|s| *s > 0.0).unwrap_or(0);
    let mut at = 0usize;
    rows.iter()
        .map(|&r| {
            let middle = at as f64 + r as f64 / 2.0;
            at += r;
            if r.saturating_mul(members) > total {
                return None;
            }
            let m = ends
                .iter()
                .zip(&clean)
                .position(|(end, s)| *s > 0.0 && middle < *end)
                .unwrap_or(last);
            Some(m)
        })
        .collect()
}

/// A run of consecutive segments of one call of a batch, with that call's output rows.
struct Piece<'a> {
    spec: &'a Spec,
    segs: (usize, usize),
    outs: Vec<&'a mut [f64]>,
}

impl<'a> Piece<'a> {
    /// The piece's inputs and its segments' bounds, rebased to its first row.
    fn inputs(&self, inputs: &[&'a [f64]], bounds: &[usize]) -> (Vec<&'a [f64]>, Vec<usize>) {
        let (lo, hi) = (bounds[self.segs.0], bounds[self.segs.1]);
        let bounds = bounds[self.segs.0..=self.segs.1]
            .iter()
            .map(|b| b - lo)
            .collect();
        (inputs.iter().map(|x| &x[lo..hi]).collect(), bounds)
    }

    fn into_units(self, inputs: &[&'a [f64]], bounds: &[usize]) -> Vec<Unit<'a>> {
        let (inputs, bounds) = self.inputs(inputs, bounds);
        batch::units(
            std::slice::from_ref(self.spec),
            &inputs,
            &bounds,
            vec![self.outs],
        )
    }
}

/// What a member did: its profile key, rows, busy time and, for a GPU, how it failed.
struct MemberRun {
    key: String,
    rows: usize,
    busy: Duration,
    failure: Option<(usize, GpuError)>,
}

/// Runs the batch (every call of `specs` on every segment `bounds[i]..bounds[i + 1]` of
/// `inputs`, into `outs[call]`) on the set `plan` names (see the module doc). Returns the key its
/// time is recorded under, `None` after a GPU failure (its units were computed on the CPU, and
/// `plan` says so).
#[allow(clippy::too_many_arguments)]
pub fn run(
    plan: &mut Plan,
    gpus: &GpuStatus,
    workload: &str,
    tag: Option<&str>,
    specs: &[Spec],
    inputs: &[&[f64]],
    bounds: &[usize],
    outs: Vec<Vec<&mut [f64]>>,
) -> Option<String> {
    let parts = Partition::new(&plan.split, gpus, plan.workers);
    let shares: Vec<f64> = parts
        .host_shares
        .iter()
        .chain(&parts.gpu_shares)
        .copied()
        .collect();
    let seg_rows: Vec<usize> = bounds.windows(2).map(|w| w[1] - w[0]).collect();
    let unit_rows: Vec<usize> = specs
        .iter()
        .flat_map(|_| seg_rows.iter().copied())
        .collect();
    let members = assign(&unit_rows, &shares);

    // Cut each call's outputs into runs of segments with one member (or none: long units).
    let segments = seg_rows.len();
    let mut pieces: Vec<(Option<usize>, Piece)> = Vec::new();
    for (c, (spec, call_outs)) in specs.iter().zip(outs).enumerate() {
        let mine = &members[c * segments..(c + 1) * segments];
        let mut rest = call_outs;
        let mut g0 = 0;
        while g0 < segments {
            let g1 = (g0..segments)
                .find(|&g| mine[g] != mine[g0])
                .unwrap_or(segments);
            let len = bounds[g1] - bounds[g0];
            let (head, tail): (Vec<_>, Vec<_>) =
                rest.into_iter().map(|o| o.split_at_mut(len)).unzip();
            rest = tail;
            let piece = Piece {
                spec,
                segs: (g0, g1),
                outs: head,
            };
            pieces.push((mine[g0], piece));
            g0 = g1;
        }
    }

    let balance_tag = profile::balance_tag_in_use(workload_tag(specs[0].name(), tag));
    let mut per_member: Vec<Vec<Piece>> = (0..shares.len()).map(|_| Vec::new()).collect();
    let mut long: Vec<Unit> = Vec::new();
    for (member, piece) in pieces {
        match member {
            Some(m) => per_member[m].push(piece),
            None => long.extend(piece.into_units(inputs, bounds)),
        }
    }
    let mut record_as = Some(plan.backend.to_string());
    for unit in long.iter_mut() {
        let key = super::run::run_planned(plan, gpus, workload, tag, unit);
        if key.is_none() {
            record_as = None;
        }
    }

    let hosts = parts.host.len();
    let runs: Vec<MemberRun> = std::thread::scope(|scope| {
        let handles: Vec<_> = per_member
            .into_iter()
            .enumerate()
            .filter(|(_, pieces)| !pieces.is_empty())
            .map(|(m, pieces)| {
                let parts = &parts;
                scope.spawn(move || {
                    let started = Instant::now();
                    let (key, rows, failure) = if m < hosts {
                        let units: Vec<Unit> = pieces
                            .into_iter()
                            .flat_map(|p| p.into_units(inputs, bounds))
                            .collect();
                        let rows = units.iter().map(Unit::rows).sum();
                        run_on_host(&parts.host[m], units, started);
                        (parts.host_keys[m].clone(), rows, None)
                    } else {
                        let index = parts.gpus[m - hosts];
                        let (rows, failure) = run_on_gpu(gpus, index, pieces, inputs, bounds);
                        (parts.gpu_keys[m - hosts].clone(), rows, failure)
                    };
                    MemberRun {
                        key,
                        rows,
                        busy: started.elapsed(),
                        failure,
                    }
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });

    let total: usize = runs.iter().map(|r| r.rows).sum();
    let mut measured = Vec::new();
    for r in &runs {
        match &r.failure {
            Some((index, e)) => {
                fallback::penalise_gpu(&r.key, workload, r.rows);
                plan.reason = format!(
                    "{}; GPU {index} failed ({e}), its segments computed on the CPU",
                    plan.reason
                );
                record_as = None;
            }
            None if r.rows > 0 && !r.busy.is_zero() => {
                measured.push((r.key.clone(), r.rows as f64 / r.busy.as_secs_f64()));
            }
            None => {}
        }
    }
    if record_as.is_some() && measured.len() > 1 && total >= profile::MIN_REFINE_ROWS {
        profile::refine_balance(&balance_tag, &measured);
    }
    record_as
}

/// A host member's units: the CPU packs them onto its workers; a simulated GPU runs them on its
/// thread, then idles for its speed (`simulated::pace`).
fn run_on_host(member: &Member, units: Vec<Unit>, started: Instant) {
    match *member {
        Member::Cpu { workers } => batch::run_on_cpu(units, workers),
        Member::Simulated { speed } => {
            let rows = units.iter().map(Unit::rows).sum();
            for mut u in units {
                u.spec.run(&Sequential, &u.inputs, &mut u.outs);
            }
            simulated::pace(speed, started, rows);
        }
    }
}

/// GPU `index`'s pieces, each uploaded once ([`cuda::run_batch`]), or segment by segment when it
/// does not fit. After a failure the rest of its units are computed on the CPU. Returns the rows
/// and the failure.
fn run_on_gpu(
    gpus: &GpuStatus,
    index: usize,
    pieces: Vec<Piece>,
    inputs: &[&[f64]],
    bounds: &[usize],
) -> (usize, Option<(usize, GpuError)>) {
    let mut rows = 0;
    let mut failure: Option<GpuError> = None;
    for mut piece in pieces {
        let (piece_inputs, piece_bounds) = piece.inputs(inputs, bounds);
        rows += piece_bounds.last().copied().unwrap_or(0);
        if failure.is_none() {
            let spec = std::slice::from_ref(piece.spec);
            let mut outs = vec![std::mem::take(&mut piece.outs)];
            match cuda::run_batch(spec, gpus, index, &piece_inputs, &piece_bounds, &mut outs) {
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => failure = Some(e),
            }
            piece.outs = outs.pop().unwrap_or_default();
        }
        for mut u in piece.into_units(inputs, bounds) {
            if failure.is_none() {
                match cuda::run(u.spec, gpus, index, &u.inputs, &mut u.outs) {
                    Ok(_) => continue,
                    Err(e) => failure = Some(e),
                }
            }
            if let Some(e) = &failure {
                fallback::compute_on_cpu(u.spec, index, e, &u.inputs, &mut u.outs);
            }
        }
    }
    (rows, failure.map(|e| (index, e)))
}

/// Whether `plan` runs a batch of `units` units through [`run`]: a device set and more than one
/// unit (a single series goes through the set's row split).
pub fn applies(plan: &Plan, units: usize) -> bool {
    matches!(plan.backend, Placement::Set(_)) && units > 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_go_to_members_in_proportion_to_their_shares() {
        let rows = vec![100; 10];
        let got = assign(&rows, &[0.3, 0.7]);
        let first = got.iter().filter(|m| **m == Some(0)).count();
        assert_eq!(first, 3, "{got:?}");
        assert!(got[..3].iter().all(|m| *m == Some(0)) && got[3..].iter().all(|m| *m == Some(1)));
        // A member without a share gets nothing; the shares need not be normalised.
        let got = assign(&rows, &[2.0, 0.0, f64::NAN, 2.0]);
        assert!(
            got.iter().all(|m| matches!(m, Some(0) | Some(3))),
            "{got:?}"
        );
        assert_eq!(got.iter().filter(|m| **m == Some(0)).count(), 5);
    }

    #[test]
    fn a_unit_longer_than_an_equal_share_is_split_instead() {
        let got = assign(&[10, 1_000, 10, 10], &[0.5, 0.5]);
        assert_eq!(got[1], None);
        assert!(got.iter().enumerate().all(|(i, m)| i == 1 || m.is_some()));
        assert_eq!(assign(&[5], &[1.0, 1.0]), vec![None]);
        assert_eq!(assign(&[5, 5], &[0.0, 0.0]), vec![None, None]);
        assert_eq!(assign(&[], &[1.0]), Vec::<Option<usize>>::new());
    }
}
