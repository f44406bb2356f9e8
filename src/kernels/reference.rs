//! Naive reference implementations: the textbook loops (TA-Lib's formulation where TA-Lib has the
//! indicator), O(n·w) where that is simplest. Tests compare the grid/scan kernels against these
//! with tolerances; they are never used to produce results.

pub fn rolling_mean(x: &[f64], w: usize) -> Vec<f64> {
    let mut out = vec![f64::NAN; x.len()];
    for t in w.saturating_sub(1)..x.len() {
        out[t] = x[t + 1 - w..=t].iter().sum::<f64>() / w as f64;
    }
    out
}

/// Two-pass variance per window.
pub fn rolling_std(x: &[f64], w: usize, ddof: usize) -> Vec<f64> {
    let mut out = vec![f64::NAN; x.len()];
    for t in w.saturating_sub(1)..x.len() {
        let win = &x[t + 1 - w..=t];
        let mean = win.iter().sum::<f64>() / w as f64;
        let ss: f64 = win.iter().map(|v| (v - mean) * (v - mean)).sum();
        out[t] = (ss / (w - ddof) as f64).sqrt();
    }
    out
}

pub fn wma(x: &[f64], w: usize) -> Vec<f64> {
    let mut out = vec![f64::NAN; x.len()];
    let denom = (w * (w + 1) / 2) as f64;
    for t in w.saturating_sub(1)..x.len() {
        let s: f64 = (0..w).map(|j| (j + 1) as f64 * x[t + 1 - w + j]).sum();
        out[t] = s / denom;
    }
    out
}

pub fn rolling_max(x: &[f64], w: usize) -> Vec<f64> {
    rolling_fold(x, w, |a, b| {
        if a.is_nan() || b.is_nan() {
            f64::NAN
        } else {
            a.max(b)
        }
    })
}

pub fn rolling_min(x: &[f64], w: usize) -> Vec<f64> {
    rolling_fold(x, w, |a, b| {
        if a.is_nan() || b.is_nan() {
            f64::NAN
        } else {
            a.min(b)
        }
    })
}

fn rolling_fold(x: &[f64], w: usize, f: impl Fn(f64, f64) -> f64) -> Vec<f64> {
    let mut out = vec![f64::NAN; x.len()];
    for t in w.saturating_sub(1)..x.len() {
        out[t] = x[t + 1 - w..=t]
            .iter()
            .copied()
            .reduce(&f)
            .unwrap_or(f64::NAN);
    }
    out
}

/// TA-Lib's EMA loop: SMA seed at `n - 1`, then `(x - prev) * k + prev`.
pub fn ema(x: &[f64], n: usize) -> Vec<f64> {
    let k = 2.0 / (n as f64 + 1.0);
    ema_seeded(
        x,
        n,
        k,
        n - 1,
        x[..n.min(x.len())].iter().sum::<f64>() / n as f64,
    )
}

pub fn ema_seeded(x: &[f64], _n: usize, k: f64, seed_row: usize, seed: f64) -> Vec<f64> {
    let mut out = vec![f64::NAN; x.len()];
    if seed_row >= x.len() {
        return out;
    }
    let mut prev = seed;
    out[seed_row] = prev;
    for t in seed_row + 1..x.len() {
        prev = (x[t] - prev) * k + prev;
        out[t] = prev;
    }
    out
}

/// TA-Lib's RSI loop (exact-zero test instead of TA-Lib's 1e-8 epsilon).
pub fn rsi(x: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![f64::NAN; x.len()];
    if x.len() <= n {
        return out;
    }
    let (mut gain, mut loss) = (0.0, 0.0);
    for t in 1..=n {
        let d = x[t] - x[t - 1];
        if d < 0.0 {
            loss -= d;
        } else {
            gain += d;
        }
    }
    gain /= n as f64;
    loss /= n as f64;
    let value = |g: f64, l: f64| {
        if g + l == 0.0 {
            0.0
        } else {
            100.0 * (g / (g + l))
        }
    };
    out[n] = value(gain, loss);
    for t in n + 1..x.len() {
        let d = x[t] - x[t - 1];
        gain *= (n - 1) as f64;
        loss *= (n - 1) as f64;
        if d < 0.0 {
            loss -= d;
        } else {
            gain += d;
        }
        gain /= n as f64;
        loss /= n as f64;
        out[t] = value(gain, loss);
    }
    out
}

pub fn true_range(h: &[f64], l: &[f64], c: &[f64]) -> Vec<f64> {
    let mut tr = vec![f64::NAN; h.len()];
    for t in 1..h.len() {
        tr[t] = (h[t] - l[t])
            .max((c[t - 1] - h[t]).abs())
            .max((c[t - 1] - l[t]).abs());
    }
    tr
}

/// TA-Lib's ATR loop.
pub fn atr(h: &[f64], l: &[f64], c: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![f64::NAN; h.len()];
    if h.len() <= n {
        return out;
    }
    let tr = true_range(h, l, c);
    let mut prev = tr[1..=n].iter().sum::<f64>() / n as f64;
    out[n] = prev;
    for t in n + 1..h.len() {
        prev *= (n - 1) as f64;
        prev += tr[t];
        prev /= n as f64;
        out[t] = prev;
    }
    out
}

/// TA-Lib's MACD: both EMAs seeded on bar `slow - 1`, the signal on the first `signal` MACD values.
pub fn macd(x: &[f64], fast: usize, slow: usize, signal: usize) -> [Vec<f64>; 3] {
    let n = x.len();
    let nan = vec![f64::NAN; n];
    let start = slow + signal - 2;
    if n <= start {
        return [nan.clone(), nan.clone(), nan];
    }
    let kf = 2.0 / (fast as f64 + 1.0);
    let ks = 2.0 / (slow as f64 + 1.0);
    let seed_f = x[slow - fast..slow].iter().sum::<f64>() / fast as f64;
    let seed_s = x[..slow].iter().sum::<f64>() / slow as f64;
    let ef = ema_seeded(x, fast, kf, slow - 1, seed_f);
    let es = ema_seeded(x, slow, ks, slow - 1, seed_s);
    let m: Vec<f64> = ef.iter().zip(&es).map(|(a, b)| a - b).collect();
    let kg = 2.0 / (signal as f64 + 1.0);
    let seed_g = m[slow - 1..=start].iter().sum::<f64>() / signal as f64;
    let sig = ema_seeded(&m, signal, kg, start, seed_g);
    let hist: Vec<f64> = m.iter().zip(&sig).map(|(a, b)| a - b).collect();
    [m, sig, hist]
}

/// TA-Lib's STOCH with SMA smoothing.
pub fn stoch(h: &[f64], l: &[f64], c: &[f64], fk: usize, sk: usize, sd: usize) -> [Vec<f64>; 2] {
    let n = h.len();
    let hh = rolling_max(h, fk);
    let ll = rolling_min(l, fk);
    let mut fast = vec![f64::NAN; n];
    for t in fk.saturating_sub(1)..n {
        let diff = (hh[t] - ll[t]) / 100.0;
        fast[t] = if diff != 0.0 {
            (c[t] - ll[t]) / diff
        } else {
            0.0
        };
    }
    let slowk = rolling_mean(&fast, sk);
    let slowd = rolling_mean(&slowk, sd);
    [slowk, slowd]
}

pub fn obv(c: &[f64], v: &[f64]) -> Vec<f64> {
    let mut out = vec![f64::NAN; c.len()];
    if c.is_empty() {
        return out;
    }
    let mut prev = v[0];
    out[0] = prev;
    for t in 1..c.len() {
        if c[t].is_nan() || c[t - 1].is_nan() {
            prev = f64::NAN;
        } else if c[t] > c[t - 1] {
            prev += v[t];
        } else if c[t] < c[t - 1] {
            prev -= v[t];
        }
        out[t] = prev;
    }
    out
}
