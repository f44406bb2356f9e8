// The fixed-block linear scan of src/kernels/scan.rs, in three launches per piece of rows
// [lo, hi) (lo is the seed row or a multiple of TX_SCAN_BLOCK):
//   tx_scan_drive   one thread per row t in (seed_row, hi) ∩ [lo, hi): the indicator's drive b_t
//                   per channel (ema.rs, wilder.rs, flow.rs), written to l.
//   tx_scan_local   one thread per (block, channel): the local scan from a zero carry,
//                   L_start = b_start, L_t = a*L_{t-1} + b_t (mul, then add), in place; the value at
//                   the block's last row goes to `ends`. The host then chains the carries in block
//                   order, C_{k+1} = end_k + P[len_k]*C_k, exactly as scan.rs does.
//   tx_scan_finish  one thread per row: y = seed at the seed row, else y_c = L_c + P[t-start+1]*C_k;
//                   then the mode's output (ema, macd line, signal + hist, rsi, atr, natr, obv).
// Block k covers rows max(k*B, seed_row + 1, lo) .. min((k+1)*B, hi).
// Each launch's body is a `_at(args, thread)` function; the `_seg` twins (at the end) run it on
// every segment of a batch at once, each segment with its own seeds and block offset.

__device__ __forceinline__ tx_i64 tx_scan_first(const ScanArgs& a) {
    return tx_max(a.lo, a.seed_row + 1);
}

// KAMA's |x_{j+1}*g - x_j*g|, the path term of u index j (ma.rs kama).
__device__ __forceinline__ double tx_kama_u(const ScanArgs& a, tx_i64 j) {
    return fabs(a.in0[j + 1 - a.base] * a.coef0 - a.in0[j - a.base] * a.coef0);
}

// Periods up to this long take their path lengths as binary segment sums (ma.rs KAMA_FUSED_MAX).
#define TX_KAMA_SEGMENT_MAX 256

// The balanced tree sum of the m = 2^k values of u ending at index `end` (ma.rs path_lengths:
// T(i, 2m) = T(i - m, m) + T(i, m)), folded left to right like a binary counter: a finished
// subtree of 2^l values waits at level l until its right neighbour of the same size arrives.
__device__ __forceinline__ double tx_kama_tree(const ScanArgs& a, tx_i64 end, tx_i64 m) {
    double wait[9];
    unsigned pending = 0;
    for (tx_i64 j = end - m + 1; j <= end; ++j) {
        double carry = tx_kama_u(a, j);
        int level = 0;
        while (pending & (1u << level)) {
            carry = wait[level] + carry;
            pending &= ~(1u << level);
            ++level;
        }
        wait[level] = carry;
        pending |= 1u << level;
    }
    int top = 0;
    while ((1 << top) < m) ++top;
    return wait[top];
}

// KAMA's smoothing constant at row t from the path length S of u at indices t - p ..= t - 1
// (p = lag). Up to TX_KAMA_SEGMENT_MAX: ma.rs's binary segment sums (the set bits of p, lowest
// first, each segment the most recent values not yet covered, S = ((seg0 + seg1) + ...)).
// Longer: the window sum on the grid of p rows aligned to u's row 0, in ma.rs window_sums' order
// (right-to-left suffix of the previous block from 0.0, plus the left-to-right prefix of this
// block). Then kama_sc_scaled. Each row folds its own window (O(p) per row) and reads rows
// t - p ..= t only.
__device__ __forceinline__ double tx_kama_sc(const ScanArgs& a, tx_i64 t) {
    const tx_i64 w = a.lag;
    const tx_i64 ui = t - 1;
    double s = 0.0;
    if (w <= TX_KAMA_SEGMENT_MAX) {
        tx_i64 covered = 0;
        for (tx_i64 width = 1; width <= w; width *= 2) {
            if (!(w & width)) continue;
            const double seg = tx_kama_tree(a, ui - covered, width);
            s = covered == 0 ? seg : s + seg;
            covered += width;
        }
    } else {
        const tx_i64 bs = ui / w * w;
        const tx_i64 o = ui - bs;
        double pre = 0.0;
        for (tx_i64 j = bs; j <= ui; ++j) pre = pre + tx_kama_u(a, j);
        s = pre;
        if (o != w - 1) {
            double suf = 0.0;
            for (tx_i64 j = bs - 1; j > bs - w + o; --j) suf = tx_kama_u(a, j) + suf;
            s = suf + pre;
        }
    }
    const double g = a.coef0, zero = a.coef1;
    const double r = a.in0[t - a.base] * g - a.in0[t - w - a.base] * g;
    const double er = (s <= r || (-zero < s && s < zero)) ? 1.0 : fabs(r / s);
    const double sc = er * a.mix1 + a.mix0;
    return sc * sc;
}

__device__ void tx_scan_drive_at(const ScanArgs& a, const tx_i64 thread) {
    const tx_i64 t = tx_scan_first(a) + thread;
    if (t >= a.hi) return;
    const tx_i64 i = t - a.base;
    double* l0 = a.l;
    double* l1 = a.l + a.stride;
    switch (a.mode) {
        case TX_SCAN_EMA:
        case TX_SCAN_SIGNAL:
            l0[i] = a.coef0 * a.in0[i];
            break;
        case TX_SCAN_MACD:
            l0[i] = a.coef0 * a.in0[i];
            l1[i] = a.coef1 * a.in0[i];
            break;
        case TX_SCAN_RSI: {
            const double diff = a.in0[i] - a.in0[i - 1];
            const bool falling = diff < 0.0;
            l0[i] = (falling ? 0.0 : diff) * a.coef0;
            l1[i] = (falling ? -diff : 0.0) * a.coef0;
            break;
        }
        case TX_SCAN_ATR:
        case TX_SCAN_NATR: {
            // in0 = close, in1 = high, in2 = low
            const double prev = a.in0[i - 1];
            const double h = a.in1[i], lo = a.in2[i];
            const double tr = tx_nan_max(tx_nan_max(h - lo, fabs(prev - h)), fabs(prev - lo));
            l0[i] = tr * a.coef0;
            break;
        }
        case TX_SCAN_CUMSUM:  // flow.rs cumsum: in0 = the series
            l0[i] = a.in0[i];
            break;
        case TX_SCAN_OBV: {
            // in0 = close, in1 = volume
            const double now = a.in0[i], before = a.in0[i - 1], v = a.in1[i];
            const double step = now < before ? -v : (now > before ? v : 0.0);
            l0[i] = (tx_is_nan(now) || tx_is_nan(before)) ? tx_nan() : step;
            break;
        }
        case TX_SCAN_DEMA:
        case TX_SCAN_TEMA:
        case TX_SCAN_T3:
            l0[i] = a.coef0 * a.in0[i];
            break;
        case TX_SCAN_ZLEMA:  // ma.rs zlema_value
            l0[i] = a.coef0 * (2.0 * a.in0[i] - a.in0[i - a.lag]);
            break;
        case TX_SCAN_KC: {  // in0 = close, in1 = high, in2 = low
            const double prev = a.in0[i - 1];
            const double h = a.in1[i], lo = a.in2[i];
            const double tr = tx_nan_max(tx_nan_max(h - lo, fabs(prev - h)), fabs(prev - lo));
            l0[i] = a.coef0 * (((h + lo) + a.in0[i]) / 3.0);
            l1[i] = tr * a.coef1;
            break;
        }
        case TX_SCAN_KAMA: {
            const double sc = tx_kama_sc(a, t);
            l0[i] = 1.0 - sc;
            l1[i] = sc * a.in0[i];
            break;
        }
        default:
            break;
    }
}

// The time-varying local scan of rows [s, e) (varscan.rs local_in_place): l0 = a becomes
// A_t = A_{t-1}*a_t, l1 = b becomes L_t = a_t*L_{t-1} + b_t; the block's (A, L) goes to ends.
__device__ __forceinline__ void tx_varscan_block(const ScanArgs& a, tx_i64 kk, tx_i64 s, tx_i64 e) {
    double* pa = a.l;
    double* pl = a.l + a.stride;
    double prod = pa[s - a.base];
    double acc = pl[s - a.base];
    for (tx_i64 t = s + 1; t < e; ++t) {
        const double at = pa[t - a.base];
        prod = prod * at;
        acc = at * acc + pl[t - a.base];
        pa[t - a.base] = prod;
        pl[t - a.base] = acc;
    }
    a.ends[kk * 2] = prod;
    a.ends[kk * 2 + 1] = acc;
}

__device__ void tx_scan_local_at(const ScanArgs& a, const tx_i64 id) {
    const tx_i64 first = tx_scan_first(a);
    if (first >= a.hi) return;
    const tx_i64 k0 = first / TX_SCAN_BLOCK;
    const tx_i64 blocks = (a.hi - 1) / TX_SCAN_BLOCK - k0 + 1;
    if (id >= blocks * a.channels) return;
    const tx_i64 kk = id / a.channels, c = id % a.channels;
    const tx_i64 k = k0 + kk;
    const tx_i64 s = tx_max(k * TX_SCAN_BLOCK, first);
    const tx_i64 e = tx_min((k + 1) * TX_SCAN_BLOCK, a.hi);
    if (a.mode == TX_SCAN_KAMA) {  // varscan.rs local_in_place, one thread per block
        if (c == 0) tx_varscan_block(a, kk, s, e);
        return;
    }
    const double decay = c == 0 ? a.decay0 : a.decay1;
    double* l = a.l + c * a.stride;
    double acc = l[s - a.base];
    for (tx_i64 t = s + 1; t < e; ++t) {
        acc = decay * acc + l[t - a.base];
        l[t - a.base] = acc;
    }
    a.ends[kk * a.channels + c] = acc;
}

__device__ void tx_scan_finish_at(const ScanArgs& a, const tx_i64 thread) {
    const tx_i64 t = a.lo + thread;
    if (t >= a.hi || t < a.seed_row) return;
    const tx_i64 i = t - a.base;
    double y0 = a.seed0, y1 = a.seed1;
    if (t > a.seed_row) {
        const tx_i64 first = tx_scan_first(a);
        const tx_i64 k = t / TX_SCAN_BLOCK;
        const tx_i64 kk = k - first / TX_SCAN_BLOCK;
        const tx_i64 s = tx_max(k * TX_SCAN_BLOCK, first);
        const tx_i64 j = t - s + 1;
        y0 = a.l[i] + a.powers[j * a.channels] * a.carries[kk * a.channels];
        if (a.channels > 1) {
            y1 = a.l[a.stride + i] + a.powers[j * a.channels + 1] * a.carries[kk * a.channels + 1];
        }
    }
    switch (a.mode) {
        case TX_SCAN_MACD:
            a.out0[i] = tx_canon(y0 - y1);
            break;
        case TX_SCAN_SIGNAL:  // in0 = the macd line
            a.out0[i] = tx_canon(y0);
            a.out1[i] = tx_canon(a.in0[i] - y0);
            break;
        case TX_SCAN_RSI: {
            // Halve two averages whose sum overflows (wilder.rs rsi_row); else the scale is 1.
            const double h = tx_is_inf(y0 + y1) ? 0.5 : 1.0;
            y0 = y0 * h;
            y1 = y1 * h;
            const double total = y0 + y1;
            const double v = 100.0 * (y0 / total);
            // Hold below the normal range (wilder.rs rsi_row); NaN fails the test and computes.
            a.out0[i] = (total < 2.2250738585072014e-308) ? tx_rsi_hold() : (tx_is_nan(v) ? tx_nan() : v);
            break;
        }
        case TX_SCAN_NATR: {
            const double c = a.in0[i];
            a.out0[i] = tx_canon((c != 0.0) ? (y0 / c) * 100.0 : 0.0);
            break;
        }
        case TX_SCAN_DEMA:  // ma.rs dema
            a.out0[i] = tx_canon(2.0 * a.in1[i] - y0);
            break;
        case TX_SCAN_TEMA:  // ma.rs tema
            a.out0[i] = tx_canon((3.0 * a.in1[i] - 3.0 * a.in2[i]) + y0);
            break;
        case TX_SCAN_T3:  // ma.rs t3
            a.out0[i] = tx_canon(((a.mix0 * y0 + a.mix1 * a.in0[i]) + a.mix2 * a.in1[i]) + a.mix3 * a.in2[i]);
            break;
        case TX_SCAN_KC:  // volatility.rs kc
            a.out0[i] = tx_canon(y0 + y1 * a.mix0);
            a.out1[i] = tx_canon(y0);
            a.out2[i] = tx_canon(y0 - y1 * a.mix0);
            break;
        case TX_SCAN_KAMA:  // varscan.rs fix_up: y = L + A*C (the seed at the seed row)
            if (t > a.seed_row) {
                const tx_i64 kk = t / TX_SCAN_BLOCK - tx_scan_first(a) / TX_SCAN_BLOCK;
                y0 = a.l[a.stride + i] + a.l[i] * a.carries[kk * 2];
            }
            a.out0[i] = tx_canon(y0);
            break;
        default:  // ema, atr, obv, cumsum
            a.out0[i] = tx_canon(y0);
            break;
    }
}

extern "C" __global__ void tx_scan_drive(const ScanArgs a) { tx_scan_drive_at(a, tx_thread_index()); }
extern "C" __global__ void tx_scan_local(const ScanArgs a) { tx_scan_local_at(a, tx_thread_index()); }
extern "C" __global__ void tx_scan_finish(const ScanArgs a) {
    tx_scan_finish_at(a, tx_thread_index());
}

// The scans of a batch's segments, one launch per stage and kernel for all segments (TxSeg in
// common.cuh): every segment scans from its own seed row with its own seeds (seeds[2k],
// seeds[2k + 1], from the Rust builders on its rows), over its own blocks (anchored at its first
// row), whose ends and carries sit at block offset blocks[k] of the shared arrays; the host chains
// each segment's carries from its own seed.
struct TxScanSeg {
    TxSeg<ScanArgs> s;
    const double* seeds;
    const tx_i64* blocks;
};

template <void (*AT)(const ScanArgs&, tx_i64)>
__device__ __forceinline__ void tx_scan_seg_run(const TxScanSeg& g) {
    ScanArgs a = g.s.a;
    tx_i64 k = 0, thread = 0;
    if (!tx_seg_args(g.s, a, k, thread)) return;
    a.seed0 = g.seeds[2 * k];
    a.seed1 = g.seeds[2 * k + 1];
    a.ends += g.blocks[k] * a.channels;
    a.carries += g.blocks[k] * a.channels;
    AT(a, thread);
}

extern "C" __global__ void tx_scan_drive_seg(const TxScanSeg g) {
    tx_scan_seg_run<tx_scan_drive_at>(g);
}
extern "C" __global__ void tx_scan_local_seg(const TxScanSeg g) {
    tx_scan_seg_run<tx_scan_local_at>(g);
}
extern "C" __global__ void tx_scan_finish_seg(const TxScanSeg g) {
    tx_scan_seg_run<tx_scan_finish_at>(g);
}
