//! Moving a `by=` call's rows between frame order and group order (`order`: the frame row of
//! each laid-out row, a permutation), on several workers for large calls. Interleaved keys make
//! both moves random accesses over the whole column, the largest cost of such a call after
//! grouping, and each laid-out row is independent of the others.

use rayon::prelude::*;

use super::cpu;

/// Rows per task: enough that a task's cache misses overlap, few enough to balance.
const CHUNK: usize = 1 << 14;

/// `src` laid out group by group: `out[i] = src[order[i]]` (`out` as long as `order`).
pub fn gather(src: &[f64], order: &[u32], out: &mut [f64], workers: usize) {
    assert_eq!(out.len(), order.len(), "gather: one laid-out row per index");
    let fill = |(dst, idx): (&mut [f64], &[u32])| {
        for (d, &row) in dst.iter_mut().zip(idx) {
            *d = src[row as usize];
        }
    };
    if workers <= 1 {
        fill((out, order));
    } else {
        cpu::in_pool(|| {
            out.par_chunks_mut(CHUNK)
                .zip(order.par_chunks(CHUNK))
                .for_each(fill)
        });
    }
}

/// A raw pointer to the output that tasks write disjoint rows of.
#[derive(Clone, Copy)]
struct Rows(*mut f64);
// SAFETY: the tasks of `scatter` write distinct rows (see there), so sharing the pointer
// between threads races on nothing.
unsafe impl Send for Rows {}
unsafe impl Sync for Rows {}

impl Rows {
    /// Row `row`'s slot (a method, so closures capture the whole `Rows`, not its raw pointer).
    fn at(self, row: usize) -> *mut f64 {
        self.0.wrapping_add(row)
    }
}

/// Values laid out group by group put back in frame order: `out[order[i]] = values[i]`.
/// `order` must be a permutation of `0..values.len()`, as grouping lays rows out: every row of
/// `out` is then written exactly once. A frame row out of range panics (an invariant, never a
/// user's input) instead of writing outside `out`.
pub fn scatter(values: &[f64], order: &[u32], out: &mut [f64], workers: usize) {
    let n = values.len();
    assert!(
        order.len() == n && out.len() == n,
        "scatter: one frame row per value"
    );
    if workers <= 1 {
        for (&v, &row) in values.iter().zip(order) {
            out[row as usize] = v;
        }
        return;
    }
    let rows = Rows(out.as_mut_ptr());
    cpu::in_pool(|| {
        values
            .par_chunks(CHUNK)
            .zip(order.par_chunks(CHUNK))
            .for_each(|(vals, idx)| {
                for (&v, &row) in vals.iter().zip(idx) {
                    let row = row as usize;
                    assert!(row < n, "scatter: frame row out of range");
                    // SAFETY: `row < n`, inside `out`'s allocation; `order` is a permutation
                    // (grouping lays out every frame row exactly once), so no two writes, in
                    // this task or any other, touch the same row, and `out` is not read until
                    // every task has finished.
                    unsafe { rows.at(row).write(v) };
                }
            })
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_and_scatter_are_inverse_moves() {
        let n = 3 * CHUNK + 17;
        // A permutation with no structure a chunked loop could get right by accident.
        let order: Vec<u32> = (0..n as u64)
            .map(|i| ((i * 7919) % n as u64) as u32)
            .collect();
        let src: Vec<f64> = (0..n).map(|i| i as f64 * 0.5).collect();
        for workers in [1, 2, 3] {
            let mut laid = vec![f64::NAN; n];
            gather(&src, &order, &mut laid, workers);
            assert!(laid.iter().zip(&order).all(|(v, &r)| *v == src[r as usize]));
            let mut back = vec![f64::NAN; n];
            scatter(&laid, &order, &mut back, workers);
            assert_eq!(back, src);
        }
    }
}
