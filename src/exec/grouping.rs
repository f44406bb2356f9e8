//! Which rows of a call form one series (`by=`): rows with equal keys, in frame order, laid end
//! to end. The keys themselves are the caller's (the plugin reads them from Arrow); this module
//! sees only "are rows `i` and `j` equal" and "a hash of row `i`".
//!
//! Sorted or clustered keys (each group one run of rows: the usual layout of market data) need
//! no gather: rows are compared with their neighbours once, and only the first row of each run is
//! hashed. Interleaved keys are grouped the same way (one hash per run; a hash match is confirmed
//! by comparing the keys, so two different keys are never merged), then laid out with a counting
//! sort that keeps frame order inside each group.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// The groups of a call's rows, laid end to end.
#[derive(Debug, PartialEq)]
pub struct Grouping {
    /// Group `i` is rows `bounds[i]..bounds[i + 1]` of the laid-out rows (`[0, 0]` for no rows).
    pub bounds: Vec<usize>,
    /// The frame row of each laid-out row, when the groups are not already contiguous runs.
    pub order: Option<Vec<u32>>,
}

/// The hash table's keys are hashes already.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, h: u64) {
        self.0 = h;
    }
}

/// Groups rows `0..n` by key: `same(i, j)` says whether rows `i` and `j` have equal keys, and
/// `hash(i)` must be equal for equal keys. Groups are numbered by first appearance.
pub fn group_rows(
    n: usize,
    same: impl Fn(usize, usize) -> bool,
    hash: impl Fn(usize) -> u64,
) -> Grouping {
    let run_starts = (0..n).filter(|&t| t == 0 || !same(t - 1, t)).collect();
    group_runs(n, run_starts, same, hash)
}

/// [`group_rows`] given the runs of equal keys already (`run_starts`: the first row of each run,
/// ascending, starting at 0 when `n > 0`; rows of one run have equal keys, neighbouring runs may
/// too): a caller that can compare whole key columns at once finds them faster than row pairs.
pub fn group_runs(
    n: usize,
    run_starts: Vec<usize>,
    same: impl Fn(usize, usize) -> bool,
    hash: impl Fn(usize) -> u64,
) -> Grouping {
    // Only the first row of each run is hashed.
    // Each run's group: the earlier group with equal keys, found through its hash and confirmed
    // by the keys; groups whose keys share a hash are chained through `next`.
    let mut index: HashMap<u64, u32, BuildHasherDefault<PassThrough>> = HashMap::default();
    let mut first_row: Vec<usize> = Vec::new();
    let mut next: Vec<Option<u32>> = Vec::new();
    let mut run_group: Vec<u32> = Vec::with_capacity(run_starts.len());
    for &row in &run_starts {
        let h = hash(row);
        let head = index.get(&h).copied();
        let mut found = head;
        while let Some(g) = found {
            if same(first_row[g as usize], row) {
                break;
            }
            found = next[g as usize];
        }
        let id = found.unwrap_or_else(|| {
            let id = first_row.len() as u32;
            first_row.push(row);
            next.push(head);
            index.insert(h, id);
            id
        });
        run_group.push(id);
    }
    lay_out(n, run_starts, &run_group, first_row.len())
}

/// The grouping of rows `0..n` whose runs (`run_starts`, as in [`group_runs`]) belong to groups
/// `run_group` (numbered `0..groups` by first appearance).
pub fn lay_out(n: usize, run_starts: Vec<usize>, run_group: &[u32], groups: usize) -> Grouping {
    if groups == run_starts.len() {
        let mut bounds = run_starts;
        bounds.push(n);
        if n == 0 {
            bounds.insert(0, 0);
        }
        return Grouping {
            bounds,
            order: None,
        };
    }
    // Each run as (first row, end row, group).
    let ends = run_starts.iter().skip(1).copied().chain(std::iter::once(n));
    let runs = || run_starts.iter().copied().zip(ends.clone()).zip(run_group);
    // A counting sort of the runs by group, stable: each group's rows in frame order.
    let mut bounds = vec![0usize; groups + 1];
    for ((s, e), &g) in runs() {
        bounds[g as usize + 1] += e - s;
    }
    for g in 0..groups {
        bounds[g + 1] += bounds[g];
    }
    let mut at = bounds.clone();
    let mut order = vec![0u32; n];
    for ((s, e), &g) in runs() {
        let at = &mut at[g as usize];
        for t in s..e {
            order[*at] = t as u32;
            *at += 1;
        }
    }
    Grouping {
        bounds,
        order: Some(order),
    }
}

/// A 64-bit finaliser (splitmix64's): equal words, equal hashes; nearby words, scattered ones.
pub fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Each run's group (numbered by first appearance) and the number of groups, given each run's
/// word (`run_words`), when the words span a range no longer than the `n` rows (symbol ids,
/// category slots, the days of a few years): a table indexed by the word then replaces the hash
/// table.
fn dense_groups(run_words: &[u64], n: usize) -> Option<(Vec<u32>, usize)> {
    let lo = run_words.iter().copied().min()?;
    let hi = run_words.iter().copied().max()?;
    let span = usize::try_from(hi - lo).ok()?;
    if span >= n.max(1 << 16) {
        return None;
    }
    let mut id_of = vec![u32::MAX; span + 1];
    let mut groups = 0u32;
    let run_group = run_words
        .iter()
        .map(|&w| {
            let id = &mut id_of[(w - lo) as usize];
            if *id == u32::MAX {
                *id = groups;
                groups += 1;
            }
            *id
        })
        .collect();
    Some((run_group, groups as usize))
}

/// The first row of each run of equal words (`word` of each value), ascending from 0. Rows are
/// compared with their neighbour 64 at a time into a bit mask, which the compiler vectorises;
/// only the set bits (the run starts) are visited one by one, so sorted keys cost one compare
/// per row.
fn run_starts_of<T: Copy>(v: &[T], word: impl Fn(T) -> u64) -> Vec<usize> {
    let n = v.len();
    let mut starts = Vec::new();
    if n == 0 {
        return starts;
    }
    starts.push(0);
    let mut base = 1;
    while base < n {
        let end = (base + 64).min(n);
        let mut mask = 0u64;
        for (k, p) in v[base - 1..end].windows(2).enumerate() {
            mask |= u64::from(word(p[0]) != word(p[1])) << k;
        }
        while mask != 0 {
            starts.push(base + mask.trailing_zeros() as usize);
            mask &= mask - 1;
        }
        base = end;
    }
    starts
}

/// Groups the rows of one key column without nulls, compared as `word` of each value (an
/// integer's bits, a float's canonical bits, a category's slot): no per-row dispatch, no copy of
/// the column, and the dense table or hash sees only each run's first row.
pub fn group_words<T: Copy>(v: &[T], word: impl Fn(T) -> u64 + Copy) -> Grouping {
    let n = v.len();
    let run_starts = run_starts_of(v, word);
    let run_words: Vec<u64> = run_starts.iter().map(|&r| word(v[r])).collect();
    if let Some((run_group, groups)) = dense_groups(&run_words, n) {
        return lay_out(n, run_starts, &run_group, groups);
    }
    group_runs(
        n,
        run_starts,
        |i, j| word(v[i]) == word(v[j]),
        |i| mix(word(v[i])),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::Lcg;

    /// The naive grouping: groups in order of first appearance, rows in frame order.
    fn naive(keys: &[u64]) -> Vec<Vec<usize>> {
        let mut groups: Vec<(u64, Vec<usize>)> = Vec::new();
        for (t, &k) in keys.iter().enumerate() {
            match groups.iter_mut().find(|(g, _)| *g == k) {
                Some((_, rows)) => rows.push(t),
                None => groups.push((k, vec![t])),
            }
        }
        groups.into_iter().map(|(_, r)| r).collect()
    }

    fn laid_out(g: &Grouping, n: usize) -> Vec<Vec<usize>> {
        let order: Vec<usize> = match &g.order {
            Some(o) => o.iter().map(|&r| r as usize).collect(),
            None => (0..n).collect(),
        };
        g.bounds
            .windows(2)
            .map(|w| order[w[0]..w[1]].to_vec())
            .filter(|rows| !rows.is_empty())
            .collect()
    }

    /// Sorted, clustered and interleaved keys, with a good hash and with hashes that collide
    /// (every key in one of three buckets): the groups are exactly the naive ones.
    #[test]
    fn groups_are_the_naive_groups_whatever_the_hash() {
        let mut rng = Lcg(11);
        for n in [0, 1, 2, 7, 300, 5000] {
            let sorted: Vec<u64> = (0..n as u64).map(|t| t / 17).collect();
            let clustered: Vec<u64> = (0..n as u64).map(|t| (t / 13 * 7919) % 101).collect();
            let interleaved: Vec<u64> = (0..n).map(|_| rng.below(40) as u64).collect();
            for keys in [sorted, clustered, interleaved] {
                let want = naive(&keys);
                for hash in [
                    |k: u64| k.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    |k: u64| k % 3,
                ] {
                    let g = group_rows(n, |i, j| keys[i] == keys[j], |i| hash(keys[i]));
                    assert_eq!(laid_out(&g, n), want, "n = {n}");
                    assert_eq!(*g.bounds.last().unwrap(), n);
                }
            }
        }
    }

    #[test]
    fn contiguous_groups_need_no_gather() {
        let keys = [5, 5, 7, 0, 0, 9];
        let g = group_rows(6, |i, j| keys[i] == keys[j], |i| keys[i]);
        assert_eq!(
            g,
            Grouping {
                bounds: vec![0, 2, 3, 5, 6],
                order: None
            }
        );
        let keys = [5, 7, 5];
        let g = group_rows(3, |i, j| keys[i] == keys[j], |i| keys[i]);
        assert_eq!(g.bounds, vec![0, 2, 3]);
        assert_eq!(g.order, Some(vec![0, 2, 1]));
        assert_eq!(group_rows(0, |_, _| true, |_| 0).bounds, vec![0, 0]);
    }

    /// Run starts found 64 rows at a time are the rows that differ from their neighbour, for
    /// every length around the mask's width and runs of every length.
    #[test]
    fn run_starts_are_the_rows_that_differ_from_the_one_before() {
        let mut rng = Lcg(11);
        for n in [0, 1, 2, 63, 64, 65, 127, 128, 129, 1000] {
            for run in [1.0, 3.0, 64.0, 200.0] {
                let mut key = 0i64;
                let v: Vec<i64> = (0..n)
                    .map(|_| {
                        if rng.uniform() < 1.0 / run {
                            key += 1 + (rng.uniform() * 3.0) as i64;
                        }
                        key % 4
                    })
                    .collect();
                let naive: Vec<usize> = (0..n).filter(|&t| t == 0 || v[t] != v[t - 1]).collect();
                assert_eq!(run_starts_of(&v, |x| x as u64), naive, "n {n}, run {run}");
            }
        }
    }

    /// Grouping on words (one column read in place, runs found 64 rows at a time, a dense table
    /// or the hash) gives the groups of the row-by-row path.
    #[test]
    fn grouping_words_is_grouping_rows() {
        let mut rng = Lcg(5);
        for span in [3.0, 500.0, 1e12] {
            for sorted in [false, true] {
                let mut v: Vec<i64> = (0..3000)
                    .map(|_| (rng.uniform() * span) as i64 - 7)
                    .collect();
                if sorted {
                    v.sort();
                }
                let w: Vec<u64> = v.iter().map(|&x| x as u64).collect();
                let general = group_rows(v.len(), |i, j| w[i] == w[j], |i| mix(w[i]));
                assert_eq!(group_words(&v, |x| x as u64), general, "span {span}");
            }
        }
    }
}
