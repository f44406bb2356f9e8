// Lets the CUDA sources of this folder compile as C++ on the host, so the test suite can run them
// without a GPU and compare them bit-for-bit with the Rust kernels. A launch runs every thread of
// the grid one after another, in reverse order (threads must not depend on each other's order).
#pragma once
#include <cmath>
#include <cstring>

struct tx_dim3 {
    unsigned x;
};
static thread_local tx_dim3 blockIdx, threadIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline

using std::ceil;
using std::fabs;
using std::floor;
using std::sqrt;

inline double __longlong_as_double(long long bits) {
    double v;
    std::memcpy(&v, &bits, sizeof v);
    return v;
}

template <class Args>
void tx_host_run(void (*kernel)(const Args), unsigned grid, unsigned block, const void* args) {
    // An empty launch reads no arguments: a test may pass a smaller argument block for it.
    if (grid == 0 || block == 0) return;
    const Args a = *static_cast<const Args*>(args);
    gridDim.x = grid;
    blockDim.x = block;
    for (unsigned b = grid; b-- > 0;) {
        blockIdx.x = b;
        for (unsigned t = block; t-- > 0;) {
            threadIdx.x = t;
            kernel(a);
        }
    }
}
