// Kernel-family primitives (src/kernels/comoments.rs, varscan.rs, elementwise.rs), with the exact
// operation sequences of those modules' specs; tx_elementwise runs the price transforms, TRANGE and
// the math operators, the others no indicator launches yet. Same conventions as
// window.cu and scan.cu: one thread per block of the grid for windowed kernels, per scan block for
// local scans, per row for maps; `base` is the global row of element 0 of every array of a launch.
//
// tx_comoments, per block b of the grid that starts at `origin` (rows o = 0..w of the block):
//   references rx = x[block start], ry = y[block start] (each 0.0 if not finite); dx = x - rx,
//   dy = y - ry; summands v = (dx, dy, dx*dx, dy*dy, dx*dy).
//   Pass 1, right to left over the previous block from offset w-1 down to o_lo+1: A = v + A (from
//   0.0, references of block b), stored at the row of block b that needs it (scratch s0..s4).
//   Pass 2, left to right over block b: B = B + v (from 0.0). Row at offset o:
//   S = B(o) if o == w-1 else A(o+1) + B(o). Outputs by mode:
//     TX_CO_SUMS     out0..out4 = sx, sy, sxx, syy, sxy
//     TX_CO_CENTRED  out0 = rx + sx*inv_w, out1 = ry + sy*inv_w, out2 = sxx - sx*(sx*inv_w),
//                    out3 = syy - sy*(sy*inv_w) (both 0.0 if negative), out4 = sxy - sx*(sy*inv_w)
//     TX_CO_CORREL   out0 = m_xy / sqrt(m_xx*m_yy), or 0.0 when m_xx*m_yy == 0.0
//     TX_CO_LINREG_* and TX_CO_BETA: see their #defines below (x, y derived from the row index
//                    or the inputs' one-row returns, read where the sums need them)
// tx_varscan_local: one thread per scan block of [max(lo, seed_row+1), hi): A_s = a_s, L_s = b_s,
//   then A_t = A_{t-1}*a_t, L_t = a_t*L_{t-1} + b_t (mul, then add), written to pa and l; the
//   block's last (A, L) goes to ends. The host chains C_{k+1} = L_end + A_end*C_k
//   (varscan::chain_carries).
// tx_varscan_finish: one thread per row: y = seed at the seed row, else y = L_t + A_t*C_k.
// tx_elementwise: one thread per row, y_t = op(t) (elementwise.rs, `Op`; inputs a, b, c, d).
// tx_comoments_seg and tx_elementwise_seg run those bodies on every segment of a batch at once
// (TxSeg in common.cuh).
// tx_machine_seg: the sequential state machines (sequential.rs): one thread per segment of a
//   batch walks that segment's rows in order from `first_row` rows after its start, its state in
//   registers, exactly as `run_machine` on the segment alone (a machine cannot be cut: row t needs
//   the state left by row t - 1). `machine` picks the step (TX_MACHINE_*).

#define TX_CO_SUMS 0
#define TX_CO_CENTRED 1
#define TX_CO_CORREL 2
// LINEARREG family (x = the row index itself; y the price): out0 = one fitted quantity
// (comoments.rs linreg). slope = m_xy / m_xx, intercept = mean_y - slope*h with
// h = (double)(w-1) * 0.5; value = intercept + slope*(double)(w-1); tsf = intercept + slope*(double)w.
#define TX_CO_LINREG_VALUE 30
#define TX_CO_LINREG_SLOPE 31
#define TX_CO_LINREG_INTERCEPT 32
#define TX_CO_LINREG_TSF 33
// BETA: x, y are the one-row returns of the two inputs, recomputed where read (row 0: 0.0;
// a zero previous value: 0.0); out0 = m_xy / m_xx, 0.0 when m_xx == 0.0. Reads row t - 1.
#define TX_CO_BETA 40

#define TX_OP_ADD 0
#define TX_OP_SUB 1
#define TX_OP_MUL 2
#define TX_OP_DIV 3
#define TX_OP_TRUE_RANGE 4
#define TX_OP_TYPICAL_PRICE 5
#define TX_OP_AVG_PRICE 6
#define TX_OP_MED_PRICE 7
#define TX_OP_WCL_PRICE 8
// The math transforms with device-independent bits (the others have no CUDA twin: Op::has_cuda).
#define TX_OP_CEIL 12
#define TX_OP_FLOOR 16
#define TX_OP_SQRT 21

// ResettingMax (sequential.rs): inputs (x, reset), outputs (max, age). At the first row run, or
// where reset != 0.0 (NaN counts as a reset): max = x, since = t; else max = tx_nan_max(max, x).
// age = (double)(t - since).
#define TX_MACHINE_RESETTING_MAX 0

struct MachineArgs {
    const double* in0;
    const double* in1;
    double* out0;
    double* out1;
    const tx_i64* starts;  // nseg + 1 row bounds of the segments, laid end to end
    tx_i64 nseg;
    tx_i64 first_row;      // the first row each segment runs, counted from its start
    tx_i64 machine;
};

struct CoMomentsArgs {
    const double* x;
    const double* y;
    double* out0;
    double* out1;
    double* out2;
    double* out3;
    double* out4;
    double* s0;  // scratch: suffix sums of the previous block, row-indexed like the outputs
    double* s1;
    double* s2;
    double* s3;
    double* s4;
    tx_i64 base;
    tx_i64 lo;      // first output row (>= origin + w - 1)
    tx_i64 hi;      // one past the last output row
    tx_i64 origin;  // row where the series (and its block grid) starts
    tx_i64 w;
    tx_i64 mode;
    double inv_w;   // 1.0 / w, computed on the host
};

struct VarScanArgs {
    const double* a;        // coefficients a_t, row-indexed
    const double* b;        // b_t
    double* pa;             // running products A_t (local)
    double* l;              // local scans L_t
    double* ends;           // (A, L) at each block's last row: ends[(k - k0) * 2 + {0, 1}]
    const double* carries;  // carry into each block: carries[k - k0]
    double* out;
    tx_i64 base;
    tx_i64 lo;  // first row of this piece (the seed row or a multiple of TX_SCAN_BLOCK)
    tx_i64 hi;
    tx_i64 seed_row;
    double seed;
};

struct ElementwiseArgs {
    const double* a;
    const double* b;
    const double* c;
    const double* d;  // AvgPrice's close; unused by the other ops
    double* out;
    tx_i64 base;
    tx_i64 lo;
    tx_i64 hi;
    tx_i64 op;
};

__device__ __forceinline__ void tx_co_summands(double x, double y, double rx, double ry,
                                               double* v) {
    const double dx = x - rx;
    const double dy = y - ry;
    v[0] = dx;
    v[1] = dy;
    v[2] = dx * dx;
    v[3] = dy * dy;
    v[4] = dx * dy;
}

__device__ __forceinline__ double tx_co_centred_square(double s, double a, double md) {
    const double m = s - a * md;
    return m < 0.0 ? 0.0 : m;
}

__device__ __forceinline__ bool tx_co_linreg(tx_i64 mode) {
    return mode >= TX_CO_LINREG_VALUE && mode <= TX_CO_LINREG_TSF;
}

// comoments.rs one_row_return: (v_t - v_{t-1}) / v_{t-1}, 0.0 at row 0 or a zero v_{t-1}.
__device__ __forceinline__ double tx_co_return(const double* v, tx_i64 t, tx_i64 base) {
    if (t == 0) return 0.0;
    const double p = v[t - 1 - base];
    return p == 0.0 ? 0.0 : (v[t - base] - p) / p;
}

// The two series at global row t, as the mode defines them.
__device__ __forceinline__ double tx_co_x(const CoMomentsArgs& a, tx_i64 t) {
    if (tx_co_linreg(a.mode)) return (double)t;
    if (a.mode == TX_CO_BETA) return tx_co_return(a.x, t, a.base);
    return a.x[t - a.base];
}
__device__ __forceinline__ double tx_co_y(const CoMomentsArgs& a, tx_i64 t) {
    if (a.mode == TX_CO_BETA) return tx_co_return(a.y, t, a.base);
    return a.y[t - a.base];
}

// Block `thread` (counted from the block of `a.lo`) of tx_comoments.
__device__ void tx_comoments_at(const CoMomentsArgs& a, const tx_i64 thread) {
    const tx_i64 w = a.w;
    const tx_i64 b = (a.lo - a.origin) / w + thread;
    if (a.lo >= a.hi || b > (a.hi - 1 - a.origin) / w) return;
    const tx_i64 start = a.origin + b * w;
    const tx_i64 o_lo = tx_max(a.lo, start) - start;
    const tx_i64 o_hi = tx_min(a.hi, start + w) - start;
    const double rx = tx_reference(tx_co_x(a, start));
    const double ry = tx_reference(tx_co_y(a, start));
    double* s[5] = {a.s0, a.s1, a.s2, a.s3, a.s4};
    double v[5];

    // Pass 1: suffix sums of the previous block for rows o_lo .. min(o_hi, w-1).
    const tx_i64 mid_end = tx_min(o_hi, w - 1);
    if (o_lo < mid_end) {
        double acc[5] = {0.0, 0.0, 0.0, 0.0, 0.0};
        for (tx_i64 j = w - 1; j > o_lo; --j) {
            const tx_i64 u = start - w + j;
            tx_co_summands(tx_co_x(a, u), tx_co_y(a, u), rx, ry, v);
            for (int c = 0; c < 5; ++c) acc[c] = v[c] + acc[c];
            const tx_i64 o = j - 1;
            if (o < mid_end) {
                for (int c = 0; c < 5; ++c) s[c][start + o - a.base] = acc[c];
            }
        }
    }

    // Pass 2: prefix sums of this block and the outputs.
    double p[5] = {0.0, 0.0, 0.0, 0.0, 0.0};
    for (tx_i64 o = 0; o < o_hi; ++o) {
        const tx_i64 at = start + o - a.base;
        tx_co_summands(tx_co_x(a, start + o), tx_co_y(a, start + o), rx, ry, v);
        for (int c = 0; c < 5; ++c) p[c] = p[c] + v[c];
        if (o < o_lo) continue;
        double sm[5];
        for (int c = 0; c < 5; ++c) sm[c] = (o < w - 1) ? s[c][at] + p[c] : p[c];
        if (a.mode == TX_CO_SUMS) {
            a.out0[at] = tx_canon(sm[0]);
            a.out1[at] = tx_canon(sm[1]);
            a.out2[at] = tx_canon(sm[2]);
            a.out3[at] = tx_canon(sm[3]);
            a.out4[at] = tx_canon(sm[4]);
            continue;
        }
        const double mxx = tx_co_centred_square(sm[2], sm[0], sm[0] * a.inv_w);
        const double myy = tx_co_centred_square(sm[3], sm[1], sm[1] * a.inv_w);
        const double mxy = sm[4] - sm[0] * (sm[1] * a.inv_w);
        if (a.mode == TX_CO_CENTRED) {
            a.out0[at] = tx_canon(rx + sm[0] * a.inv_w);
            a.out1[at] = tx_canon(ry + sm[1] * a.inv_w);
            a.out2[at] = tx_canon(mxx);
            a.out3[at] = tx_canon(myy);
            a.out4[at] = tx_canon(mxy);
        } else if (a.mode == TX_CO_CORREL) {
            const double den = mxx * myy;
            a.out0[at] = tx_canon((den == 0.0) ? 0.0 : mxy / sqrt(den));
        } else if (a.mode == TX_CO_BETA) {
            a.out0[at] = tx_canon((mxx == 0.0) ? 0.0 : mxy / mxx);
        } else if (tx_co_linreg(a.mode)) {
            const double slope = mxy / mxx;
            const double intercept = (ry + sm[1] * a.inv_w) - slope * ((double)(w - 1) * 0.5);
            if (a.mode == TX_CO_LINREG_SLOPE) {
                a.out0[at] = tx_canon(slope);
            } else if (a.mode == TX_CO_LINREG_INTERCEPT) {
                a.out0[at] = tx_canon(intercept);
            } else if (a.mode == TX_CO_LINREG_VALUE) {
                a.out0[at] = tx_canon(intercept + slope * (double)(w - 1));
            } else {
                a.out0[at] = tx_canon(intercept + slope * (double)w);
            }
        }
    }
}

extern "C" __global__ void tx_comoments(const CoMomentsArgs a) {
    tx_comoments_at(a, tx_thread_index());
}
extern "C" __global__ void tx_comoments_seg(const TxSeg<CoMomentsArgs> s) {
    tx_seg_run<CoMomentsArgs, tx_comoments_at>(s);
}

__device__ __forceinline__ tx_i64 tx_varscan_first(const VarScanArgs& a) {
    return tx_max(a.lo, a.seed_row + 1);
}

extern "C" __global__ void tx_varscan_local(const VarScanArgs a) {
    const tx_i64 first = tx_varscan_first(a);
    if (first >= a.hi) return;
    const tx_i64 k0 = first / TX_SCAN_BLOCK;
    const tx_i64 kk = tx_thread_index();
    if (kk > (a.hi - 1) / TX_SCAN_BLOCK - k0) return;
    const tx_i64 k = k0 + kk;
    const tx_i64 s = tx_max(k * TX_SCAN_BLOCK, first);
    const tx_i64 e = tx_min((k + 1) * TX_SCAN_BLOCK, a.hi);
    double prod = a.a[s - a.base];
    double acc = a.b[s - a.base];
    a.pa[s - a.base] = prod;
    a.l[s - a.base] = acc;
    for (tx_i64 t = s + 1; t < e; ++t) {
        const double at = a.a[t - a.base];
        prod = prod * at;
        acc = at * acc + a.b[t - a.base];
        a.pa[t - a.base] = prod;
        a.l[t - a.base] = acc;
    }
    a.ends[kk * 2] = prod;
    a.ends[kk * 2 + 1] = acc;
}

extern "C" __global__ void tx_varscan_finish(const VarScanArgs a) {
    const tx_i64 t = a.lo + tx_thread_index();
    if (t >= a.hi || t < a.seed_row) return;
    const tx_i64 i = t - a.base;
    if (t == a.seed_row) {
        a.out[i] = tx_canon(a.seed);
        return;
    }
    const tx_i64 kk = t / TX_SCAN_BLOCK - tx_varscan_first(a) / TX_SCAN_BLOCK;
    a.out[i] = tx_canon(a.l[i] + a.pa[i] * a.carries[kk]);
}

__device__ void tx_elementwise_at(const ElementwiseArgs& a, const tx_i64 thread) {
    const tx_i64 t = a.lo + thread;
    if (t >= a.hi) return;
    const tx_i64 i = t - a.base;
    double r;
    switch (a.op) {
        case TX_OP_ADD:
            r = a.a[i] + a.b[i];
            break;
        case TX_OP_SUB:
            r = a.a[i] - a.b[i];
            break;
        case TX_OP_MUL:
            r = a.a[i] * a.b[i];
            break;
        case TX_OP_DIV:
            r = a.a[i] / a.b[i];
            break;
        case TX_OP_TRUE_RANGE: {  // a = high, b = low, c = close
            const double prev = a.c[i - 1];
            const double h = a.a[i], lo = a.b[i];
            r = tx_nan_max(tx_nan_max(h - lo, fabs(prev - h)), fabs(prev - lo));
            break;
        }
        case TX_OP_TYPICAL_PRICE:
            r = ((a.a[i] + a.b[i]) + a.c[i]) / 3.0;
            break;
        case TX_OP_AVG_PRICE:  // a = open, b = high, c = low, d = close; TA-Lib adds open last
            r = (((a.b[i] + a.c[i]) + a.d[i]) + a.a[i]) / 4.0;
            break;
        case TX_OP_MED_PRICE:  // a = high, b = low
            r = (a.a[i] + a.b[i]) / 2.0;
            break;
        case TX_OP_WCL_PRICE:  // a = high, b = low, c = close
            r = ((a.a[i] + a.b[i]) + a.c[i] * 2.0) / 4.0;
            break;
        case TX_OP_CEIL:
            r = ceil(a.a[i]);
            break;
        case TX_OP_FLOOR:
            r = floor(a.a[i]);
            break;
        case TX_OP_SQRT:  // correctly rounded (NVRTC runs with --prec-sqrt=true)
            r = sqrt(a.a[i]);
            break;
        default:
            r = tx_nan();
            break;
    }
    a.out[i] = tx_canon(r);
}

extern "C" __global__ void tx_elementwise(const ElementwiseArgs a) {
    tx_elementwise_at(a, tx_thread_index());
}
extern "C" __global__ void tx_elementwise_seg(const TxSeg<ElementwiseArgs> s) {
    tx_seg_run<ElementwiseArgs, tx_elementwise_at>(s);
}

__device__ void tx_resetting_max(const MachineArgs& a, const tx_i64 lo, const tx_i64 hi) {
    double mx = tx_nan();
    tx_i64 since = -1;  // no row seen yet
    for (tx_i64 t = lo; t < hi; ++t) {
        const double x = a.in0[t];
        if (since >= 0 && a.in1[t] == 0.0) {
            mx = tx_nan_max(mx, x);
        } else {
            mx = x;
            since = t;
        }
        a.out0[t] = tx_canon(mx);
        a.out1[t] = (double)(t - since);
    }
}

extern "C" __global__ void tx_machine_seg(const MachineArgs a) {
    const tx_i64 k = tx_thread_index();
    if (k >= a.nseg) return;
    const tx_i64 lo = a.starts[k] + a.first_row;
    const tx_i64 hi = a.starts[k + 1];
    if (lo >= hi) return;
    switch (a.machine) {
        case TX_MACHINE_RESETTING_MAX:
            tx_resetting_max(a, lo, hi);
            break;
        default:
            for (tx_i64 t = lo; t < hi; ++t) {
                a.out0[t] = tx_nan();
                a.out1[t] = tx_nan();
            }
            break;
    }
}
