"""The GPU backend: what was found, compiling the kernels, and measuring the link.

Nothing here starts CUDA at import. :func:`status`, :func:`devices` and :func:`is_available` run
discovery on first use (it initialises the CUDA driver when one is installed); indicator calls do
the same on their first ``device="gpu"`` call, or their first ``device="auto"`` call of at least
2**20 rows. Every kernel returns the same bits as the CPU path (NaN payloads aside).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from threadx import _internal


def _register_wheel_dirs() -> None:
    # The nvidia-cuda-nvrtc-cu12 wheel installs libnvrtc under site-packages; tell the Rust side
    # where to look. Plain path strings: nothing is opened or loaded here.
    dirs = [os.path.join(p, "nvidia", "cuda_nvrtc", "lib") for p in sys.path if p]
    _internal.gpu_add_nvrtc_dirs(dirs)


_register_wheel_dirs()


def status() -> dict[str, Any]:
    """What GPU discovery found.

    Keys: ``available`` (bool), ``reason`` (why no GPU is usable, else ``None``), ``devices`` (as
    :func:`devices`), ``driver_version``, ``nvrtc_version`` and ``nvrtc_library`` (``None`` when
    not found).
    """
    st = json.loads(_internal.gpu_status())
    for d in st["devices"]:
        d["compute_capability"] = tuple(d["compute_capability"])
    return st


def devices() -> list[dict[str, Any]]:
    """The usable GPUs: ``index``, ``name``, ``uuid``, ``compute_capability`` (major, minor),
    ``arch`` (``"sm_90"``) and ``memory_bytes``. Empty when there is none; :func:`status` says
    why."""
    return status()["devices"]


def is_available() -> bool:
    """True when at least one GPU can run the kernels."""
    return bool(status()["available"])


def compile_kernels(arch: str = "sm_90") -> dict[str, Any]:
    """Compiles every kernel with NVRTC into a CUBIN for ``arch`` (no GPU needed).

    Returns ``arch``, ``nvrtc_version``, ``cubin_bytes`` and ``kernels``. Raises ``ValueError``
    for a malformed ``arch`` and ``RuntimeError`` when NVRTC is missing or rejects the sources.
    """
    if not isinstance(arch, str) or not arch.startswith("sm_"):
        raise ValueError(f"threadx.gpu.compile_kernels: arch must look like 'sm_90', got {arch!r}")
    size, version = _internal.gpu_compile(arch)
    return {
        "arch": arch,
        "nvrtc_version": version,
        "cubin_bytes": size,
        "kernels": list(_internal.gpu_kernel_names()),
    }


def measure_link(index: int = 0) -> dict[str, float]:
    """Measures GPU ``index``'s host<->device bandwidth (GB/s each way) and latency (µs), stores
    it in the profile (the planner predicts unmeasured GPU calls from it) and returns it."""
    return json.loads(_internal.gpu_measure_link(index))


__all__ = ["compile_kernels", "devices", "is_available", "measure_link", "status"]
