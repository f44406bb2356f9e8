//! Writing final outputs straight to memory (non-temporal stores).
//!
//! A kernel's last write of a large output is never read back by the kernel, and an output of
//! millions of rows does not fit in any cache anyway. A plain store first reads the line it writes
//! into the cache (write-allocate, "RFO"): a third of the memory traffic of a kernel that reads
//! two columns and writes one. Non-temporal stores (`movntpd`) skip that read and the cache.
//! Small outputs keep plain stores ([`Store::for_rows`]): `.over()` groups and series that fit in
//! the cache are read again soon by whoever called the kernel.
//!
//! This changes where values go, never which values: [`store_rows`] writes exactly `f(j)` to
//! `out[j]`, bit for bit, either way (tested below and by the golden tests).

/// How [`store_rows`] writes. [`Store::Streaming`] borrows a [`Fence`], which only [`with_store`]
/// makes, so every streaming store happens inside a `with_store` call and is fenced when it ends.
#[derive(Clone, Copy, Debug)]
pub enum Store<'f> {
    /// Plain stores, through the cache.
    Cached,
    /// Non-temporal stores where the target has them (x86_64), plain stores elsewhere.
    Streaming(&'f Fence),
}

/// Issues `sfence` when dropped (x86_64; nothing elsewhere): the end of a [`with_store`] call,
/// normal or unwinding.
#[derive(Debug)]
pub struct Fence {
    _private: (),
}

impl Drop for Fence {
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `sfence` has no memory-safety preconditions (SSE, x86_64 baseline). It orders
        // the streaming stores made through this fence's `Store`s before every later store of
        // this thread (in particular before it signals other threads that its rows are done),
        // as Rust's documentation of `_mm_stream_pd` requires before that memory is accessed
        // again. A `Store` borrows its fence, so none is used after this drop.
        unsafe {
            std::arch::x86_64::_mm_sfence()
        };
    }
}

/// Runs `f` with the stores for writing rows of an output `rows` long ([`streams`]) and fences
/// streaming stores before returning. Call it once per thread's share of the work, not per row
/// block: the fence waits for the stores in flight.
#[inline(always)]
pub fn with_store<R>(rows: usize, f: impl FnOnce(Store<'_>) -> R) -> R {
    if !streams(rows) {
        return f(Store::Cached);
    }
    let fence = Fence { _private: () };
    f(Store::Streaming(&fence))
}

/// Outputs of at least this many bytes are streamed: past the last-level cache's worth of a
/// large machine's share, keeping them cached only evicts the inputs.
pub const STREAM_MIN_BYTES: usize = 4 << 20;

/// Whether an output of `rows` doubles is streamed: at least [`STREAM_MIN_BYTES`].
pub fn streams(rows: usize) -> bool {
    rows.saturating_mul(std::mem::size_of::<f64>()) >= STREAM_MIN_BYTES
}

/// `out[j] = f(j, &src[j])` for every `j` (`src` is as long as `out`), with the stores `store`
/// asks for (streaming stores are fenced when the [`with_store`] call that made `store` ends).
#[inline(always)]
pub fn store_rows<T>(out: &mut [f64], src: &[T], store: Store, f: impl Fn(usize, &T) -> f64) {
    assert_eq!(out.len(), src.len(), "store_rows: one source per row");
    #[cfg(target_arch = "x86_64")]
    if let Store::Streaming(_) = store {
        stream_rows(out, src, f);
        return;
    }
    let _ = store;
    plain_rows(out, src, 0, &f);
}

#[inline(always)]
fn plain_rows<T>(out: &mut [f64], src: &[T], at: usize, f: &impl Fn(usize, &T) -> f64) {
    for (j, (o, v)) in out.iter_mut().zip(src).enumerate() {
        *o = f(at + j, v);
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn stream_rows<T>(out: &mut [f64], src: &[T], f: impl Fn(usize, &T) -> f64) {
    use std::arch::x86_64::{_mm_set_pd, _mm_stream_pd};
    // `movntpd` needs 16-byte alignment: a plain store for an odd leading element, pairs, then a
    // plain store for an odd trailing one. (f64 slices are 8-byte aligned, so the offset to the
    // next 16-byte boundary is 0 or 1; anything else means plain stores throughout.)
    let head = out.as_ptr().align_offset(16);
    if head > 1 || head > out.len() {
        plain_rows(out, src, 0, &f);
        return;
    }
    let (first, rest) = out.split_at_mut(head);
    let (src_first, src_rest) = src.split_at(head);
    plain_rows(first, src_first, 0, &f);
    let (pairs, tail) = rest.as_chunks_mut::<2>();
    let (src_pairs, src_tail) = src_rest.as_chunks::<2>();
    for (i, (pair, [a, b])) in pairs.iter_mut().zip(src_pairs).enumerate() {
        let j = head + 2 * i;
        let (lo, hi) = (f(j, a), f(j + 1, b));
        // SAFETY: `pair` is an exclusively borrowed, in-bounds `[f64; 2]` whose address is
        // 16-byte aligned (`first` took the elements before the first 16-byte boundary), which is
        // all `movntpd` requires; SSE2 is part of the x86_64 baseline. The store is weakly ordered
        // only until the caller's `with_store` ends and drops the `Fence` its `Store` borrows.
        unsafe { _mm_stream_pd(pair.as_mut_ptr(), _mm_set_pd(hi, lo)) };
    }
    plain_rows(tail, src_tail, head + 2 * pairs.len(), &f);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Streaming writes exactly the plain stores' bits, at every alignment and length (NaN
    /// payloads, signed zeros and subnormals included), and touches nothing outside the slice.
    #[test]
    fn streaming_writes_the_same_bits_as_plain_stores() {
        let specials = [
            f64::NAN,
            -0.0,
            0.0,
            f64::MIN_POSITIVE / 3.0,
            f64::INFINITY,
            -1.5,
        ];
        let value = |j: usize| {
            if j % 7 == 3 {
                f64::from_bits(0x7ff8_0000_0000_0000 | j as u64)
            } else {
                specials[j % specials.len()] + (j as f64) * 0.1
            }
        };
        for offset in 0..4 {
            for len in [0, 1, 2, 3, 4, 5, 17, 64, 1023, 1024, 1025] {
                let fill = f64::from_bits(0x7ff8_dead_beef_0001);
                let mut plain = vec![fill; len + 8];
                let mut streamed = vec![fill; len + 8];
                let src: Vec<usize> = (0..len).map(|j| j * 3).collect();
                let f = |j: usize, v: &usize| value(j + v);
                store_rows(&mut plain[offset..offset + len], &src, Store::Cached, f);
                with_store(usize::MAX, |store| {
                    assert!(matches!(store, Store::Streaming(_)));
                    store_rows(&mut streamed[offset..offset + len], &src, store, f)
                });
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&plain), bits(&streamed), "offset {offset} len {len}");
            }
        }
    }

    #[test]
    fn only_large_outputs_stream() {
        assert!(!streams(1000));
        assert!(streams(10_000_000));
        assert!(streams(usize::MAX));
        with_store(1000, |store| assert!(matches!(store, Store::Cached)));
    }
}
