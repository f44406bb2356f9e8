//! The seam between the math (this layer) and the executors (`exec`).
//!
//! A kernel never decides how work is divided: it hands a [`Splitter`] its output slices and a
//! function that fills any contiguous piece of rows. Because every kernel computes each row from
//! global row indices only (see the module docs of `moments`, `scan`, …), the bits written do not
//! depend on how the splitter cuts the rows, in what order it runs the pieces, or on how many
//! threads it uses. The property tests in this layer check exactly that with [`CutAt`].

/// Divides row ranges into pieces and runs them, in any order and on any thread.
pub trait Splitter: Sync {
    /// Calls `fill(piece_first_row, piece_outputs)` for disjoint pieces that together cover the
    /// rows `first_row .. first_row + outs[0].len()`. All `K` output slices have the same length and
    /// are cut at the same places.
    fn for_each_piece<const K: usize, F>(&self, first_row: usize, outs: [&mut [f64]; K], fill: F)
    where
        F: Fn(usize, [&mut [f64]; K]) + Sync + Send;

    /// Evaluates `f(i)` for `i in 0..n` (any grouping, any order) and returns the results in index order.
    fn map_indexed<T: Send, F>(&self, n: usize, f: F) -> Vec<T>
    where
        F: Fn(usize) -> T + Sync + Send;

    /// How many pieces this splitter will use at most: 1 lets kernels skip work that only matters
    /// for parallel runs (it never changes the bits, see `scan`).
    fn max_pieces(&self) -> usize;

    /// The first row of the last piece [`Self::for_each_piece`] would make of these rows: scans
    /// need carries only for blocks up to there.
    fn last_piece_start(&self, first_row: usize, len: usize) -> usize;

    /// How many workers [`Self::run_workers`] runs at most. Scans make one chained pass over the
    /// rows with them when there are more than one (`kernels::scan`); with one (the default) they
    /// cut the rows with [`Self::for_each_piece`] instead.
    fn workers(&self) -> usize {
        1
    }

    /// Runs `worker` once on each of up to [`Self::workers`] threads, at the same time or one after
    /// another, and returns when all calls have returned. Callers must not rely on the calls
    /// overlapping: each takes work from a shared counter until none is left, and never waits
    /// for another call indefinitely (see `kernels::scan`), so any schedule, even one thread
    /// running the calls in turn, completes. The default runs it once on the calling thread.
    fn run_workers<F>(&self, worker: F)
    where
        F: Fn() + Sync + Send,
    {
        worker();
    }

    /// Called once by every scan (`kernels::scan::run_scan`) with its state at the last row, the
    /// carry into a block that would follow. A device set uses it to hand the CPU's prefix of the
    /// rows on to the GPUs; the default ignores it.
    fn scan_carry_out(&self, _carry: &[f64]) {}
}

/// Runs everything as one piece on the calling thread.
pub struct Sequential;

impl Splitter for Sequential {
    fn for_each_piece<const K: usize, F>(&self, first_row: usize, outs: [&mut [f64]; K], fill: F)
    where
        F: Fn(usize, [&mut [f64]; K]) + Sync + Send,
    {
        fill(first_row, outs);
    }

    fn map_indexed<T: Send, F>(&self, n: usize, f: F) -> Vec<T>
    where
        F: Fn(usize) -> T + Sync + Send,
    {
        (0..n).map(f).collect()
    }

    fn max_pieces(&self) -> usize {
        1
    }

    fn last_piece_start(&self, first_row: usize, _len: usize) -> usize {
        first_row
    }
}

/// Cuts at fixed offsets (relative to the first row of each call), running pieces back to front.
/// Used by the split-invariance tests and by simulations that must be reproducible.
pub struct CutAt(pub Vec<usize>);

impl Splitter for CutAt {
    fn for_each_piece<const K: usize, F>(&self, first_row: usize, outs: [&mut [f64]; K], fill: F)
    where
        F: Fn(usize, [&mut [f64]; K]) + Sync + Send,
    {
        let len = outs[0].len();
        let lens = piece_lengths(len, &self.0);
        let starts = piece_starts(first_row, &lens);
        let pieces = cut_pieces(outs, &lens);
        for (start, piece) in starts.into_iter().zip(pieces).rev() {
            fill(start, piece);
        }
    }

    fn map_indexed<T: Send, F>(&self, n: usize, f: F) -> Vec<T>
    where
        F: Fn(usize) -> T + Sync + Send,
    {
        let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
        for i in (0..n).rev() {
            out[i] = Some(f(i));
        }
        out.into_iter().flatten().collect()
    }

    fn max_pieces(&self) -> usize {
        self.0.len() + 1
    }

    fn last_piece_start(&self, first_row: usize, len: usize) -> usize {
        let lens = piece_lengths(len, &self.0);
        first_row + len - lens.last().copied().unwrap_or(0)
    }
}

/// Lengths of the pieces obtained by cutting `len` rows at the (unsorted, possibly out of range)
/// relative offsets `cuts`; empty pieces are dropped.
pub fn piece_lengths(len: usize, cuts: &[usize]) -> Vec<usize> {
    let mut points: Vec<usize> = cuts.iter().map(|&c| c.min(len)).collect();
    points.push(0);
    points.push(len);
    points.sort_unstable();
    points.dedup();
    points.windows(2).map(|w| w[1] - w[0]).collect()
}

/// Cuts `K` equally long slices into consecutive pieces of the given lengths (which must add up to
/// the slices' length).
/// The first row of each piece of lengths `lens` starting at `first_row`.
pub fn piece_starts(first_row: usize, lens: &[usize]) -> Vec<usize> {
    lens.iter()
        .scan(first_row, |at, l| {
            let start = *at;
            *at += l;
            Some(start)
        })
        .collect()
}

pub fn cut_pieces<'a, const K: usize>(
    outs: [&'a mut [f64]; K],
    lens: &[usize],
) -> Vec<[&'a mut [f64]; K]> {
    let mut pieces = Vec::with_capacity(lens.len());
    let mut rest: Vec<&'a mut [f64]> = outs.into_iter().collect();
    for &len in lens {
        let mut head = Vec::with_capacity(K);
        let mut tail = Vec::with_capacity(K);
        for s in rest {
            let (h, t) = s.split_at_mut(len);
            head.push(h);
            tail.push(t);
        }
        match head.try_into() {
            Ok(arr) => pieces.push(arr),
            Err(_) => unreachable!("head has exactly K slices"),
        }
        rest = tail;
    }
    pieces
}
