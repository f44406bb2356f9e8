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

from threadx import _internal, _workloads
from threadx import _validate as check
from threadx._registry import BY_NAME as INDICATORS


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
    not found), ``nvrtc_archs`` (the architectures that NVRTC compiles for, e.g. ``[80, 90]``) and
    ``nvrtc_mismatch`` (``None``, or which other NVRTC the loader would pick by name: threadx
    compiles through the library it names in ``nvrtc_library`` either way).
    """
    st = json.loads(_internal.gpu_status())
    for d in st["devices"]:
        d["compute_capability"] = tuple(d["compute_capability"])
    return st


def devices() -> list[dict[str, Any]]:
    """The usable GPUs: ``index``, ``name``, ``uuid``, ``compute_capability`` (major, minor),
    ``arch`` (``"sm_90"``), ``memory_bytes``, ``kernel_build`` (``"cubin sm_90"``, or ``"ptx
    compute_80 JIT by the driver"`` when NVRTC cannot build for the device itself) and
    ``open_state`` (``None``, or the last failed open and when it is retried). Empty when there is
    none; :func:`status` says why."""
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
    index = check.integer("gpu.measure_link", "index", index, 0, check.MAX_GPU_ORDINAL)
    return json.loads(_internal.gpu_measure_link(index))


def _key(label: str, devs: list[dict[str, Any]]) -> str:
    """A member's name in the profile: ``cpu`` or ``gpu:<uuid>``."""
    if label == "cpu":
        return "cpu"
    index = int(label.split(":", 1)[1])
    return f"gpu:{next(d['uuid'] for d in devs if d['index'] == index)}"


def _label(key: str, devs: list[dict[str, Any]]) -> str:
    """The user-facing name (``cpu``, ``gpu:<i>``) of a member's profile name."""
    for d in devs:
        if key == f"gpu:{d['uuid']}":
            return f"gpu:{d['index']}"
    return key


def _members(devices: str | list[str], devs: list[dict[str, Any]]) -> list[str]:
    gpus = [f"gpu:{d['index']}" for d in devs]
    if devices == "all":
        members = [*gpus, "cpu"]
    elif devices == "gpus":
        members = gpus
    elif isinstance(devices, (list, tuple)) and all(isinstance(d, str) for d in devices):
        members = [d.strip().lower() for d in devices]
        unknown = [m for m in members if m != "cpu" and m not in gpus]
        if unknown:
            raise ValueError(
                f"threadx.gpu.profile_auto_balance: unknown devices {unknown} (usable: "
                f"{[*gpus, 'cpu']})"
            )
    else:
        raise ValueError(
            "threadx.gpu.profile_auto_balance: devices must be 'all', 'gpus' or a list like "
            f"['gpu:0', 'cpu'], got {devices!r}"
        )
    repeated = sorted({m for m in members if members.count(m) > 1})
    if repeated:
        raise ValueError(
            f"threadx.gpu.profile_auto_balance: balancing needs at least two devices, each once; "
            f"got {members} ({', '.join(repeated)} repeated)"
        )
    if len(members) < 2:
        why = "" if devs else f" (no GPU: {status()['reason']})"
        raise ValueError(
            f"threadx.gpu.profile_auto_balance: balancing needs at least two devices, got "
            f"{members}{why}"
        )
    return members


def profile_auto_balance(
    sample_size: int = 100_000,
    runs: int = 3,
    workload_tag: str = "default",
    devices: str | list[str] = "all",
) -> dict[str, float]:
    """Measures each device's throughput on ``sample_size`` rows and stores split ratios.

    Every device of ``devices`` (``"all"``: every GPU and the CPU; ``"gpus"``; or a list such as
    ``["gpu:0", "cpu"]``) runs the workload alone, once to warm up and ``runs`` more times, on
    host-resident data, so a GPU's time includes its transfers. The ratios (each device's share of
    the total throughput, from the best times) are stored in the profile under
    ``workload_tag`` and returned as ``{"gpu:0": 0.6, "cpu": 0.4}``. The workload is the indicator
    named by the tag, or Bollinger bands (20, 2) for any other tag. Calls split rows across devices
    in these ratios (``device="gpus"`` / ``"all"`` / ``"gpu:0,1"``, or ``"auto"`` when a split is
    predicted to win), and every such call refines them.
    """
    import time

    import polars as pl

    if isinstance(sample_size, bool) or not isinstance(sample_size, int) or sample_size < 1_000:
        raise ValueError(
            f"threadx.gpu.profile_auto_balance: sample_size must be an integer >= 1000, "
            f"got {sample_size!r}"
        )
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise ValueError(
            f"threadx.gpu.profile_auto_balance: runs must be an integer >= 1, got {runs!r}"
        )
    if not isinstance(workload_tag, str) or not workload_tag.strip():
        raise ValueError(
            "threadx.gpu.profile_auto_balance: workload_tag must be a non-empty string, "
            f"got {workload_tag!r}"
        )
    tag = workload_tag.strip()
    devs = status()["devices"]
    members = _members(devices, devs)
    indicator = tag if tag in INDICATORS else "bollinger"
    df: pl.DataFrame = _workloads.frame(sample_size)
    previous = _internal.get_threads()
    throughput: dict[str, float] = {}
    try:
        for m in members:
            # The CPU as a member of a set uses every worker the planner allows.
            _internal.set_threads(_internal.optimal_workers(None, None) if m == "cpu" else previous)
            expr = _workloads.expr(indicator, m)
            times = []
            for r in range(runs + 1):
                t0 = time.perf_counter()
                df.select(expr)
                if r:
                    times.append(time.perf_counter() - t0)
            # Best of the runs: the least disturbed by whatever else the machine is doing.
            throughput[m] = sample_size / max(min(times), 1e-9)
    finally:
        _internal.set_threads(previous)
    total = sum(throughput.values())
    ratios = {m: v / total for m, v in throughput.items()}
    _internal.balance_set(tag, json.dumps({_key(m, devs): r for m, r in ratios.items()}))
    return ratios


def balance(workload_tag: str | None = None) -> dict[str, Any]:
    """The stored split ratios: of ``workload_tag`` (``{"gpu:0": 0.6, "cpu": 0.4}``, empty when
    none are stored), or of every tag (``{tag: ratios}``) when it is ``None``."""
    devs = status()["devices"]
    stored = json.loads(_internal.balance_get())
    labelled = {
        tag: {_label(k, devs): v for k, v in ratios.items()} for tag, ratios in stored.items()
    }
    if workload_tag is None:
        return labelled
    if not isinstance(workload_tag, str):
        raise TypeError(
            f"threadx.gpu.balance: workload_tag must be a string or None, got {workload_tag!r}"
        )
    return labelled.get(workload_tag.strip(), {})


__all__ = [
    "balance",
    "compile_kernels",
    "devices",
    "is_available",
    "measure_link",
    "profile_auto_balance",
    "status",
]
