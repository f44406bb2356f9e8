// threadx CUDA kernels: shared definitions.
//
// Every .cu file in this folder is compiled twice: by NVRTC for the GPU (the sources are joined in
// the order common.cuh, window.cu, scan.cu, family.cu; see `kernel_source()` in nvrtc.rs), and as plain C++ on
// the host through host_shim.h, where the test suite compares each kernel bit-for-bit with the Rust
// kernels of src/kernels/. So: no #include, no shared memory, no __syncthreads, no intrinsics other
// than those host_shim.h provides, and no floating-point operation whose rounding could differ
// between the two compilers (NVRTC runs with --fmad=false --prec-div=true --prec-sqrt=true
// --ftz=false; the host build with -ffp-contract=off). Each thread writes only rows it owns, so the
// result does not depend on the launch shape or on the order threads run in.
//
// Argument blocks are passed by value. Every field is 8 bytes wide (pointers, long long, double), so
// the #[repr(C)] mirrors in args.rs have the same layout with no padding rules to get wrong.
//
// Row indices are global: `base` is the global row of element 0 of every array of one launch, so a
// launch can work on any piece of a long series.

typedef long long tx_i64;

#define TX_SCAN_BLOCK 1024

// Output modes of tx_moments.
#define TX_MOMENTS_SMA 0
#define TX_MOMENTS_STD 1
#define TX_MOMENTS_ZSCORE 2
#define TX_MOMENTS_BOLLINGER 3
#define TX_MOMENTS_VAR 4
#define TX_MOMENTS_SUM 10
// Bollinger bands around a middle computed before (ma.rs bollinger_ma): out0 holds the middle and
// is only read; out1 = mid + k*s, out2 = mid - inv_denom*s (inv_denom carries the lower width),
// s = sqrt(m2 * inv_w) (rolling_std with ddof 0).
#define TX_MOMENTS_BANDS 11
// AVGDEV (moments.rs avgdev): the mean, then |x - mean| over the window left to right, / k (k = w).
#define TX_MOMENTS_AVGDEV 12

// Drive / finish modes of the scan kernels.
#define TX_SCAN_EMA 0
#define TX_SCAN_MACD 1
#define TX_SCAN_SIGNAL 2
#define TX_SCAN_RSI 3
#define TX_SCAN_ATR 4
#define TX_SCAN_NATR 5
#define TX_SCAN_OBV 6
#define TX_SCAN_CUMSUM 20
// The moving averages of ma.rs, numbered apart from the others' modes. DEMA, TEMA and T3 are
// chained EMA stages (drive k*in0); their last stage's finish writes the combination with the
// earlier levels (in1, in2). ZLEMA's drive de-lags in0 by `lag` rows. (44 is unused: period 1
// is the identity, run as a plain copy by the pipeline, not as a scan.)
#define TX_SCAN_DEMA 40   // finish: 2*e1 - y (in1 = e1)
#define TX_SCAN_TEMA 41   // finish: (3*e1 - 3*e2) + y (in1 = e1, in2 = e2)
#define TX_SCAN_T3 42     // finish: ((mix0*y + mix1*e5) + mix2*e4) + mix3*e3 (in0, in1, in2)
#define TX_SCAN_ZLEMA 43  // drive: coef0 * (2*in0[t] - in0[t - lag])
// KAMA (ma.rs kama) on the time-varying scan of varscan.rs: the drive writes a_t to channel 0 and
// b_t to channel 1, the local scan turns them into (A_t, L_t) per block, ends = (A_end, L_end),
// the host chains C_{k+1} = L_end + A_end*C_k into carries[2k], and y = L_t + A_t*C_k.
// coef0 = g, coef1 = 1e-8*g, lag = p, mix0 = the slowest constant, mix1 = the span.
#define TX_SCAN_KAMA 45
// KC (volatility.rs kc): in0 = close, in1 = high, in2 = low; channel 0 the EMA of the typical
// price (drive coef0*tp), channel 1 the ATR (drive tr*coef1); out0 = y0 + y1*mix0 (upper),
// out1 = y0 (middle), out2 = y0 - y1*mix0 (lower).
#define TX_SCAN_KC 46

struct MomentsArgs {
    const double* x;
    double* out0;
    double* out1;
    double* out2;
    double* sa1;  // scratch: suffix sums of the previous block, may alias an output
    double* sa2;
    tx_i64 base;
    tx_i64 lo;      // first output row (>= origin + w - 1)
    tx_i64 hi;      // one past the last output row
    tx_i64 origin;  // row where the series (and its block grid) starts
    tx_i64 w;
    tx_i64 mode;
    double inv_w;      // 1.0 / w, computed on the host
    double inv_denom;  // 1.0 / (w - ddof) for rolling_std
    double k;          // bollinger's band width
};

struct ExtremaArgs {
    const double* x;
    double* out;
    double* suf;  // scratch: suffix folds of the previous block, may alias `out`
    tx_i64 base;
    tx_i64 lo;
    tx_i64 hi;
    tx_i64 w;
    tx_i64 is_max;
};

struct WmaArgs {
    const double* x;
    double* out;
    double* aw;  // scratch: weighted suffix sums of the previous block, may alias `out`
    tx_i64 base;
    tx_i64 lo;
    tx_i64 hi;
    tx_i64 w;
    double denom;  // (w (w + 1) / 2) as a double
};

struct RowArgs {  // tx_fastk and tx_roc: one thread per row
    const double* a;
    const double* b;
    const double* c;
    double* out;
    tx_i64 base;
    tx_i64 lo;
    tx_i64 hi;
    tx_i64 period;
};

struct ScanArgs {
    const double* in0;  // the indicator's inputs (close / value, high, low, volume or macd)
    const double* in1;
    const double* in2;
    double* l;               // drives, then local scans; channel-major: l[c * stride + (t - base)]
    double* ends;            // local scan value at each block's last row, [(k - k0) * channels + c]
    const double* carries;   // carry into each block, same layout as ends
    const double* powers;    // a^j for j = 0..=TX_SCAN_BLOCK, channel-minor: powers[j * channels + c]
    double* out0;
    double* out1;
    tx_i64 base;
    tx_i64 stride;
    tx_i64 lo;        // first row of this piece (the seed row or a multiple of TX_SCAN_BLOCK)
    tx_i64 hi;
    tx_i64 seed_row;
    tx_i64 channels;
    tx_i64 mode;
    double coef0;     // drive coefficients (k, or 1/n for Wilder smoothing)
    double coef1;
    double decay0;
    double decay1;
    double seed0;
    double seed1;
    tx_i64 lag;       // rows before t that the drive reads (ZLEMA)
    double mix0;      // the finish's combination coefficients (T3's c1..c4)
    double mix1;
    double mix2;
    double mix3;
    double* out2;     // a third output (KC's lower band)
};

__device__ __forceinline__ tx_i64 tx_thread_index() {
    return (tx_i64)blockIdx.x * (tx_i64)blockDim.x + (tx_i64)threadIdx.x;
}

__device__ __forceinline__ tx_i64 tx_max(tx_i64 a, tx_i64 b) { return a > b ? a : b; }
__device__ __forceinline__ tx_i64 tx_min(tx_i64 a, tx_i64 b) { return a < b ? a : b; }

__device__ __forceinline__ bool tx_is_nan(double v) { return v != v; }
__device__ __forceinline__ bool tx_is_finite(double v) { return v - v == 0.0; }
__device__ __forceinline__ bool tx_is_inf(double v) { return v == v && !tx_is_finite(v); }

// NaN-propagating max/min that return the second operand on ties (src/kernels/extrema.rs).
__device__ __forceinline__ double tx_nan_max(double a, double b) {
    return (a > b || tx_is_nan(a)) ? a : b;
}
__device__ __forceinline__ double tx_nan_min(double a, double b) {
    return (a < b || tx_is_nan(a)) ? a : b;
}

// A block's reference (src/kernels/moments.rs `reference`): its value when finite, else 0.
__device__ __forceinline__ double tx_reference(double v) { return tx_is_finite(v) ? v : 0.0; }
__device__ __forceinline__ double tx_nan() { return __longlong_as_double(0x7ff8000000000000LL); }
// Every value a kernel writes to an output goes through here: any NaN becomes the canonical one
// (src/kernels/mod.rs `canon`). IEEE 754 leaves the sign and payload of a NaN result unspecified
// (x86 makes 0xfff8..., NVIDIA GPUs 0x7fff..., and which of two NaN operands propagates depends on
// the operand order a compiler picks), so the spec fixes the NaN an output holds.
__device__ __forceinline__ double tx_canon(double v) { return tx_is_nan(v) ? tx_nan() : v; }
// An RSI row whose averages are both zero holds the previous value; the host resolves it after
// the whole column exists (RSI_HOLD_BITS and resolve_holds in src/kernels/wilder.rs).
__device__ __forceinline__ double tx_rsi_hold() { return __longlong_as_double(0x7ff8000052534901LL); }

// A batch's segments laid end to end (`by=`), every segment in one launch: the `_seg` twin of a
// kernel takes its argument block `a` written for one series whose arrays start at row `a.base`
// of the concatenation, with `a.hi` the concatenation's length (`starts[nseg]`); `starts` (the
// nseg + 1 row bounds) and `first` (nseg + 1: each segment's first thread, a prefix sum of the
// threads each segment's own launch would have) are int64 arrays. Thread i belongs to segment k
// with first[k] <= i < first[k + 1] and runs thread i - first[k] of the single-series kernel on
// that segment alone: rows are the segment's own (its grid, lookback and halos count from its
// first row), `base` moves back by starts[k] so every array index `t - base` lands on the
// segment's rows, and `hi` becomes the segment's end. So each segment has the bits of a launch on
// it alone, whatever the others hold.
template <class A>
struct TxSeg {
    A a;
    const tx_i64* starts;
    const tx_i64* first;
    tx_i64 nseg;
};

// The segment of thread i (the last k with first[k] <= i), or -1 past the last segment's threads.
__device__ __forceinline__ tx_i64 tx_seg_of(const tx_i64* first, tx_i64 nseg, tx_i64 i) {
    if (i >= first[nseg]) return -1;
    tx_i64 k = 0, end = nseg;
    while (end - k > 1) {
        const tx_i64 mid = k + (end - k) / 2;
        if (first[mid] <= i) {
            k = mid;
        } else {
            end = mid;
        }
    }
    return k;
}

// Thread i of the segmented launch `s`: its segment k, its thread in that segment's own launch,
// and `a` (a copy of `s.a`) moved onto the segment. False past the last segment's threads.
template <class A>
__device__ __forceinline__ bool tx_seg_args(const TxSeg<A>& s, A& a, tx_i64& k, tx_i64& thread) {
    const tx_i64 i = tx_thread_index();
    k = tx_seg_of(s.first, s.nseg, i);
    if (k < 0) return false;
    const tx_i64 at = s.starts[k];
    a.base -= at;
    a.hi -= s.starts[s.nseg] - (s.starts[k + 1] - at);
    thread = i - s.first[k];
    return true;
}

// Runs `AT(a, thread)`, a kernel's single-series body, as thread i of the segmented launch `s`.
template <class A, void (*AT)(const A&, tx_i64)>
__device__ __forceinline__ void tx_seg_run(const TxSeg<A>& s) {
    A a = s.a;
    tx_i64 k = 0, thread = 0;
    if (tx_seg_args(s, a, k, thread)) AT(a, thread);
}
