//! Test helpers: a tiny deterministic RNG, a zoo of awkward series, random cut points and
//! bit-exact / tolerance comparisons, and a splitter of workers.

use std::sync::Mutex;

use super::split::Splitter;

/// 64-bit LCG (Knuth's MMIX constants); good enough to make test data, reproducible everywhere.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 11
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 42) as f64
    }
    /// Roughly standard normal (sum of 12 uniforms).
    pub fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.uniform()).sum::<f64>() - 6.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// Series that stress the kernels: a random walk, prices near 1e6 with 0.01 noise, prices near
/// 1e-7, integer prices with long flat runs, and a zero-crossing oscillation.
pub fn series_zoo(n: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = Lcg(seed);
    let mut walk = Vec::with_capacity(n);
    let mut p = 100.0;
    for _ in 0..n {
        p += rng.normal();
        walk.push(p);
    }
    let offset: Vec<f64> = (0..n).map(|_| 1e6 + 0.01 * rng.normal()).collect();
    let tiny: Vec<f64> = walk.iter().map(|v| v * 1e-9).collect();
    let mut flat = Vec::with_capacity(n);
    let mut q = 50.0f64;
    for _ in 0..n {
        if rng.below(4) == 0 {
            q += (rng.below(3) as f64) - 1.0;
        }
        flat.push(q);
    }
    let wave: Vec<f64> = (0..n)
        .map(|i| (i as f64 * 0.05).sin() * 3.0 + 0.1 * rng.normal())
        .collect();
    vec![walk, offset, tiny, flat, wave]
}

/// Values the kernels' IEEE arithmetic treats specially: NaN of both signs and with a payload
/// (users' data may hold any NaN), ±inf, ±1e308 (sums and differences of them overflow to ±inf,
/// which then meet the opposite infinity or a zero: NaN made by arithmetic) and zeros of both signs.
pub const SPECIALS: [f64; 9] = [
    f64::NAN,
    f64::from_bits(0xfff8_0000_0000_0000),
    f64::from_bits(0x7ff8_0000_0000_beef),
    f64::INFINITY,
    f64::NEG_INFINITY,
    1e308,
    -1e308,
    0.0,
    -0.0,
];

/// OHLCV columns `[open, high, low, close, volume]` of `n` rows (a random walk near 100, a
/// consistent bar around it, integer volumes), then data sets that put [`SPECIALS`] into every
/// column at rows that reach every code path of the kernels: the first rows (inside warm-ups and
/// seeds), both sides of scan block boundaries (multiples of 1024) and of the chained pass's
/// units (multiples of 8192), and random rows; each column at other rows. Named sets: `mixed`
/// (all specials everywhere), `nan`, `inf`, `huge` (±1e308 and zeros only: every NaN is made by
/// arithmetic), `late` (specials only in the last quarter, after long finite stretches), `start`
/// (only in the first 40 rows).
pub fn special_sets(n: usize, seed: u64) -> Vec<(&'static str, [Vec<f64>; 5])> {
    let mut rng = Lcg(seed);
    let mut close = Vec::with_capacity(n);
    let mut p = 100.0;
    for _ in 0..n {
        p += rng.normal();
        close.push(p);
    }
    let open: Vec<f64> = (0..n)
        .map(|t| if t == 0 { 100.0 } else { close[t - 1] })
        .collect();
    let high: Vec<f64> = (0..n)
        .map(|t| open[t].max(close[t]) + rng.uniform())
        .collect();
    let low: Vec<f64> = (0..n)
        .map(|t| open[t].min(close[t]) - rng.uniform())
        .collect();
    let volume: Vec<f64> = (0..n).map(|_| 1.0 + rng.below(10_000) as f64).collect();
    let clean = [open, high, low, close, volume];
    let kinds: [(&str, &[f64]); 6] = [
        ("mixed", &SPECIALS),
        ("nan", &SPECIALS[..3]),
        ("inf", &SPECIALS[3..5]),
        ("huge", &SPECIALS[5..]),
        ("late", &SPECIALS),
        ("start", &SPECIALS),
    ];
    kinds
        .into_iter()
        .map(|(name, values)| {
            let mut cols = clean.clone();
            for (k, col) in cols.iter_mut().enumerate() {
                let mut rows: Vec<usize> = match name {
                    "late" => (0..12).map(|_| 3 * n / 4 + rng.below(n / 4)).collect(),
                    "start" => (0..6).map(|_| rng.below(40)).collect(),
                    _ => {
                        let mut rows = vec![k, 3 + 2 * k];
                        for b in [1024, 2048, 8192, 16_384] {
                            rows.extend([b - 1 - k, b + k]);
                        }
                        rows.extend((0..6).map(|_| rng.below(n)));
                        rows
                    }
                };
                rows.retain(|&t| t < n);
                for t in rows {
                    col[t] = values[rng.below(values.len())];
                }
            }
            (name, cols)
        })
        .collect()
}

/// Up to `max_pieces - 1` random cut offsets in `0..=len`.
pub fn random_cuts(rng: &mut Lcg, len: usize, max_pieces: usize) -> Vec<usize> {
    let k = rng.below(max_pieces);
    (0..k).map(|_| rng.below(len + 1)).collect()
}

pub fn assert_bits_eq(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.to_bits() == w.to_bits(),
            "{what}: row {i}: {g:e} vs {w:e}"
        );
    }
}

/// Relative closeness with an absolute floor of `tol * max(1, scale of the data)`; NaN must match NaN.
pub fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f64, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if w.is_nan() {
            assert!(g.is_nan(), "{what}: row {i}: {g:e}, want NaN");
            continue;
        }
        let err = (g - w).abs();
        let bound = tol * w.abs().max(scale * 1e-3).max(f64::MIN_POSITIVE);
        assert!(
            err <= bound,
            "{what}: row {i}: {g:e} vs {w:e} (err {err:e})"
        );
    }
}

/// Runs workers for the chained pass: on `threads` threads at once, or (`threads == 0`)
/// `turns` calls one after another on the calling thread. Records the carry out.
pub struct Workers {
    pub threads: usize,
    pub turns: usize,
    pub carry_out: Mutex<Vec<Vec<f64>>>,
}

impl Workers {
    pub fn new(threads: usize, turns: usize) -> Self {
        Workers {
            threads,
            turns,
            carry_out: Mutex::new(Vec::new()),
        }
    }
}

impl Splitter for Workers {
    fn for_each_piece<const K: usize, F>(&self, first: usize, outs: [&mut [f64]; K], fill: F)
    where
        F: Fn(usize, [&mut [f64]; K]) + Sync + Send,
    {
        fill(first, outs);
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

    fn workers(&self) -> usize {
        self.threads.max(self.turns)
    }

    fn run_workers<F>(&self, worker: F)
    where
        F: Fn() + Sync + Send,
    {
        if self.threads == 0 {
            (0..self.turns).for_each(|_| worker());
            return;
        }
        std::thread::scope(|s| {
            for _ in 0..self.threads {
                s.spawn(&worker);
            }
        });
    }

    fn scan_carry_out(&self, carry: &[f64]) {
        self.carry_out.lock().unwrap().push(carry.to_vec());
    }
}
