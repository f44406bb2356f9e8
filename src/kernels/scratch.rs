//! Reusable per-thread scratch memory for kernels.
//!
//! `.over()` calls a kernel once per group, thousands of times; allocating and zeroing fresh
//! scratch each time costs as much as the arithmetic on a 1,000-row group. Each thread keeps one
//! buffer and lends it out. Its contents are stale values from earlier calls: every user writes an
//! element before reading it (which the kernels' own tests would catch, since stale values differ
//! from run to run and the split-invariance tests compare bits).

use std::cell::Cell;

thread_local! {
    static POOL: Cell<Vec<f64>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` with `len` elements of scratch (unspecified contents).
pub fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f64]) -> R) -> R {
    let mut buf = POOL.take();
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let result = f(&mut buf[..len]);
    POOL.set(buf);
    result
}

/// Cuts `buf` into consecutive slices of the given lengths.
pub fn carve<'a, const N: usize>(mut buf: &'a mut [f64], lens: [usize; N]) -> [&'a mut [f64]; N] {
    let mut parts: [&'a mut [f64]; N] = std::array::from_fn(|_| <&mut [f64]>::default());
    for (part, len) in parts.iter_mut().zip(lens) {
        let (head, tail) = std::mem::take(&mut buf).split_at_mut(len);
        *part = head;
        buf = tail;
    }
    parts
}
