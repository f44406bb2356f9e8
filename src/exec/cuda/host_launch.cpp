// Host build of the CUDA kernels (test only): `tx_host_launch(name, grid, block, args)` runs the
// named kernel on the CPU through host_shim.h. Returns 0, or -1 for an unknown kernel name.
#include "host_shim.h"
#include "common.cuh"
#include "window.cu"
#include "scan.cu"
#include "family.cu"

extern "C" int tx_host_launch(const char* name, unsigned grid, unsigned block, const void* args) {
#define TX_KERNEL(k)                            \
    if (std::strcmp(name, #k) == 0) {           \
        tx_host_run(k, grid, block, args);      \
        return 0;                               \
    }
    TX_KERNEL(tx_moments)
    TX_KERNEL(tx_moments_seg)
    TX_KERNEL(tx_extrema)
    TX_KERNEL(tx_wma)
    TX_KERNEL(tx_fastk)
    TX_KERNEL(tx_roc)
    TX_KERNEL(tx_scan_drive)
    TX_KERNEL(tx_scan_local)
    TX_KERNEL(tx_scan_finish)
    TX_KERNEL(tx_comoments)
    TX_KERNEL(tx_varscan_local)
    TX_KERNEL(tx_varscan_finish)
    TX_KERNEL(tx_elementwise)
    TX_KERNEL(tx_extrema_seg)
    TX_KERNEL(tx_wma_seg)
    TX_KERNEL(tx_fastk_seg)
    TX_KERNEL(tx_roc_seg)
    TX_KERNEL(tx_comoments_seg)
    TX_KERNEL(tx_elementwise_seg)
    TX_KERNEL(tx_scan_drive_seg)
    TX_KERNEL(tx_scan_local_seg)
    TX_KERNEL(tx_scan_finish_seg)
    TX_KERNEL(tx_machine_seg)
#undef TX_KERNEL
    return -1;
}
