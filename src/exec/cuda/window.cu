// Windowed kernels on the global block grid: the exact operation sequences of
// src/kernels/moments.rs (sma, rolling_sum, rolling_std, zscore, bollinger, avgdev), extrema.rs (rolling max/min, fast
// %K), wma.rs and flow.rs (roc). One thread per block of `w` rows of the grid, or per row.
// Each kernel's body is a `_at(args, thread)` function; the kernel runs it on one series, its
// `_seg` twin on every segment of a batch at once (TxSeg, tx_seg_run in common.cuh).
//
// tx_moments, per block b of the grid that starts at `origin` (rows o = 0..w of the block):
//   reference r = x[block start] if finite else 0.0 (tx_reference); d = x - r.
//   Pass 1, right to left over the previous block from its offset w-1 down to o_lo+1: A1 = d + A1,
//   A2 = d*d + A2 (from 0.0, reference r of block b), stored at the row of block b that needs it.
//   Pass 2, left to right over block b: B1 = B1 + d, B2 = B2 + d*d (from 0.0). Row at offset o:
//   S = B(o) if o == w-1 else A(o+1) + B(o). Then md = S1*inv_w, mean = r + md,
//   m2 = S2 - S1*md (0.0 if negative; NaN passes), and the mode's output (see moments.rs).
// tx_extrema: the same layout with pick() folds: prefix acc = pick(acc, x), suffix acc = pick(x, acc).
// tx_wma: suffix A1 = x + A1, AW = AW + A1; prefix B1 = B1 + x, BW = BW + (o+1)*x;
//   sum = BW(o) if o == w-1 else AW(o+1) + (BW(o) + (w-1-o)*B1(o)); out = sum / denom.

// Block `thread` (counted from the block of `a.lo`) of tx_moments.
__device__ void tx_moments_at(const MomentsArgs& a, const tx_i64 thread) {
    const tx_i64 w = a.w;
    const tx_i64 b0 = (a.lo - a.origin) / w;
    const tx_i64 b = b0 + thread;
    if (a.lo >= a.hi || b > (a.hi - 1 - a.origin) / w) return;
    const bool var =
        a.mode != TX_MOMENTS_SMA && a.mode != TX_MOMENTS_SUM && a.mode != TX_MOMENTS_AVGDEV;
    const tx_i64 start = a.origin + b * w;
    const tx_i64 o_lo = tx_max(a.lo, start) - start;
    const tx_i64 o_hi = tx_min(a.hi, start + w) - start;
    const double r = tx_reference(a.x[start - a.base]);

    // Pass 1: suffix sums of the previous block for rows o_lo .. min(o_hi, w-1).
    const tx_i64 mid_end = tx_min(o_hi, w - 1);
    if (o_lo < mid_end) {
        double a1 = 0.0, a2 = 0.0;
        for (tx_i64 j = w - 1; j > o_lo; --j) {
            const double d = a.x[start - w + j - a.base] - r;
            a1 = d + a1;
            if (var) a2 = d * d + a2;
            const tx_i64 o = j - 1;
            if (o < mid_end) {
                a.sa1[start + o - a.base] = a1;
                if (var) a.sa2[start + o - a.base] = a2;
            }
        }
    }

    // Pass 2: prefix sums of this block and the outputs.
    double p1 = 0.0, p2 = 0.0;
    for (tx_i64 o = 0; o < o_hi; ++o) {
        const tx_i64 t = start + o;
        const double d = a.x[t - a.base] - r;
        p1 = p1 + d;
        if (var) p2 = p2 + d * d;
        if (o < o_lo) continue;
        double s1 = p1, s2 = p2;
        if (o < w - 1) {
            s1 = a.sa1[t - a.base] + p1;
            if (var) s2 = a.sa2[t - a.base] + p2;
        }
        const tx_i64 at = t - a.base;
        if (a.mode == TX_MOMENTS_SMA) {
            a.out0[at] = tx_canon(r + s1 * a.inv_w);
            continue;
        }
        if (a.mode == TX_MOMENTS_SUM) {  // moments.rs rolling_sum; k = (double)w
            a.out0[at] = tx_canon(r * a.k + s1);
            continue;
        }
        if (a.mode == TX_MOMENTS_AVGDEV) {  // moments.rs avgdev; k = (double)w
            // The mean (sma's bits), then |x - mean| over the window left to right (in the halo).
            const double mean = r + s1 * a.inv_w;
            double dev = 0.0;
            for (tx_i64 s = t + 1 - w; s <= t; ++s) dev = dev + fabs(a.x[s - a.base] - mean);
            a.out0[at] = tx_canon(dev / a.k);
            continue;
        }
        const double md = s1 * a.inv_w;
        double m2 = s2 - s1 * md;
        if (m2 < 0.0) m2 = 0.0;
        if (a.mode == TX_MOMENTS_STD) {
            a.out0[at] = tx_canon(sqrt(m2 * a.inv_denom));
        } else if (a.mode == TX_MOMENTS_ZSCORE) {
            const double z = ((a.x[t - a.base] - r) - md) / sqrt(m2 * a.inv_w);
            a.out0[at] = tx_canon((tx_is_inf(m2) && m2 > 0.0) ? tx_nan() : z);  // squares overflowed (moments.rs)
        } else if (a.mode == TX_MOMENTS_VAR) {
            a.out0[at] = tx_canon(m2 * a.inv_w);
        } else if (a.mode == TX_MOMENTS_BANDS) {
            const double s = sqrt(m2 * a.inv_w);
            const double mid = a.out0[at];
            a.out1[at] = tx_canon(mid + a.k * s);
            a.out2[at] = tx_canon(mid - a.inv_denom * s);
        } else {
            const double mean = r + md;
            const double dev = a.k * sqrt(m2 * a.inv_w);
            a.out0[at] = tx_canon(mean);
            a.out1[at] = tx_canon(mean + dev);
            a.out2[at] = tx_canon(mean - dev);
        }
    }
}

extern "C" __global__ void tx_moments(const MomentsArgs a) { tx_moments_at(a, tx_thread_index()); }

extern "C" __global__ void tx_moments_seg(const TxSeg<MomentsArgs> s) {
    tx_seg_run<MomentsArgs, tx_moments_at>(s);
}

__device__ __forceinline__ double tx_pick(bool is_max, double acc, double v) {
    return is_max ? tx_nan_max(acc, v) : tx_nan_min(acc, v);
}

// Block `thread` (counted from the block of `a.lo`) of tx_extrema.
__device__ void tx_extrema_at(const ExtremaArgs& a, const tx_i64 thread) {
    const tx_i64 w = a.w;
    const tx_i64 b = a.lo / w + thread;
    if (a.lo >= a.hi || b > (a.hi - 1) / w) return;
    const bool is_max = a.is_max != 0;
    const tx_i64 start = b * w;
    const tx_i64 o_lo = tx_max(a.lo, start) - start;
    const tx_i64 o_hi = tx_min(a.hi, start + w) - start;

    const tx_i64 mid_end = tx_min(o_hi, w - 1);
    if (o_lo < mid_end) {
        double acc = a.x[start - 1 - a.base];
        for (tx_i64 j = w - 1; j > o_lo; --j) {
            if (j < w - 1) acc = tx_pick(is_max, a.x[start - w + j - a.base], acc);
            const tx_i64 o = j - 1;
            if (o < mid_end) a.suf[start + o - a.base] = acc;
        }
    }

    double acc = a.x[start - a.base];
    for (tx_i64 o = 0; o < o_hi; ++o) {
        const tx_i64 t = start + o;
        if (o > 0) acc = tx_pick(is_max, acc, a.x[t - a.base]);
        if (o < o_lo) continue;
        a.out[t - a.base] = tx_canon((o == w - 1) ? acc : tx_pick(is_max, a.suf[t - a.base], acc));
    }
}

extern "C" __global__ void tx_extrema(const ExtremaArgs a) { tx_extrema_at(a, tx_thread_index()); }
extern "C" __global__ void tx_extrema_seg(const TxSeg<ExtremaArgs> s) {
    tx_seg_run<ExtremaArgs, tx_extrema_at>(s);
}

// Block `thread` (counted from the block of `a.lo`) of tx_wma.
__device__ void tx_wma_at(const WmaArgs& a, const tx_i64 thread) {
    const tx_i64 w = a.w;
    const tx_i64 b = a.lo / w + thread;
    if (a.lo >= a.hi || b > (a.hi - 1) / w) return;
    const tx_i64 start = b * w;
    const tx_i64 o_lo = tx_max(a.lo, start) - start;
    const tx_i64 o_hi = tx_min(a.hi, start + w) - start;

    const tx_i64 mid_end = tx_min(o_hi, w - 1);
    if (o_lo < mid_end) {
        double s1 = 0.0, sw = 0.0;
        for (tx_i64 j = w - 1; j > o_lo; --j) {
            s1 = a.x[start - w + j - a.base] + s1;
            sw = sw + s1;
            const tx_i64 o = j - 1;
            if (o < mid_end) a.aw[start + o - a.base] = sw;
        }
    }

    double b1 = 0.0, bw = 0.0;
    for (tx_i64 o = 0; o < o_hi; ++o) {
        const tx_i64 t = start + o;
        const double v = a.x[t - a.base];
        b1 = b1 + v;
        bw = bw + (double)(o + 1) * v;
        if (o < o_lo) continue;
        const double sum =
            (o == w - 1) ? bw : a.aw[t - a.base] + (bw + (double)(w - 1 - o) * b1);
        a.out[t - a.base] = tx_canon(sum / a.denom);
    }
}

extern "C" __global__ void tx_wma(const WmaArgs a) { tx_wma_at(a, tx_thread_index()); }
extern "C" __global__ void tx_wma_seg(const TxSeg<WmaArgs> s) { tx_seg_run<WmaArgs, tx_wma_at>(s); }

// Fast %K from the rolling extremes: a = highest high, b = lowest low, c = close.
__device__ void tx_fastk_at(const RowArgs& a, const tx_i64 thread) {
    const tx_i64 t = a.lo + thread;
    if (t >= a.hi) return;
    const tx_i64 i = t - a.base;
    const double ll = a.b[i];
    // Halve a range that overflows (extrema.rs fast_k); else the scale is 1 and no bit changes.
    const double range = a.a[i] - ll;
    const double h = tx_is_inf(range) ? 0.5 : 1.0;
    const double diff = (a.a[i] * h - ll * h) / 100.0;
    a.out[i] = tx_canon((diff != 0.0) ? (a.c[i] * h - ll * h) / diff : 0.0);
}

extern "C" __global__ void tx_fastk(const RowArgs a) { tx_fastk_at(a, tx_thread_index()); }
extern "C" __global__ void tx_fastk_seg(const TxSeg<RowArgs> s) { tx_seg_run<RowArgs, tx_fastk_at>(s); }

// ROC(period) of a: ((x_t / x_{t-period}) - 1) * 100, or 0.0 when x_{t-period} == 0.
__device__ void tx_roc_at(const RowArgs& a, const tx_i64 thread) {
    const tx_i64 t = a.lo + thread;
    if (t >= a.hi) return;
    const double prev = a.a[t - a.period - a.base];
    a.out[t - a.base] = tx_canon((prev != 0.0) ? ((a.a[t - a.base] / prev) - 1.0) * 100.0 : 0.0);
}

extern "C" __global__ void tx_roc(const RowArgs a) { tx_roc_at(a, tx_thread_index()); }
extern "C" __global__ void tx_roc_seg(const TxSeg<RowArgs> s) { tx_seg_run<RowArgs, tx_roc_at>(s); }
