"""`threadx.gpu` on any machine, with or without a GPU, CUDA driver or NVRTC: the status report,
forced GPU placement without a usable GPU (a `ComputeError` that says why), `device="auto"` falling
back to the CPU, and compiling the kernels with NVRTC alone (no GPU needed).

Where a GPU is usable the absent-GPU checks do not apply; those tests then check the device list
instead, and a child process with `CUDA_VISIBLE_DEVICES=""` still sees no GPU. The only skip: the
NVRTC compile tests where no NVRTC library can be found.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import threadx
from helpers import (
    NAMES,
    NS_INPUTS,
    PARAMS,
    RECEIVER,
    assert_bits_equal,
    indicator_expr,
    ohlcv,
    run,
)
from polars.exceptions import ComputeError

NoneType = type(None)
STATUS_TYPES = {
    "available": (bool,),
    "reason": (str, NoneType),
    "devices": (list,),
    "driver_version": (str, NoneType),
    "nvrtc_version": (str, NoneType),
    "nvrtc_library": (str, NoneType),
    "nvrtc_archs": (list,),
    "nvrtc_mismatch": (str, NoneType),
}
DEVICE_TYPES = {
    "index": (int,),
    "name": (str,),
    "uuid": (str,),
    "compute_capability": (tuple,),
    "arch": (str,),
    "memory_bytes": (int,),
    "kernel_build": (str, NoneType),
    "open_state": (str, NoneType),
}
TESTS_DIR = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def data() -> pl.DataFrame:
    return ohlcv(2_000, seed=31)


def gpu_available() -> bool:
    return threadx.gpu.is_available()


def assert_sane_devices(devices: list[dict]) -> None:
    """A non-empty device list with the documented fields."""
    assert isinstance(devices, list) and devices, devices
    indices = []
    for d in devices:
        assert isinstance(d, dict), d
        for key, types in DEVICE_TYPES.items():
            assert key in d, (key, d)
            assert isinstance(d[key], types) and not isinstance(d[key], bool), (key, d)
        cc = d["compute_capability"]
        assert len(cc) == 2 and all(isinstance(v, int) for v in cc) and cc[0] >= 3, d
        assert re.fullmatch(r"sm_\d{2,3}[a-z]?", d["arch"]), d
        assert d["arch"].startswith(f"sm_{cc[0]}{cc[1]}"), d
        assert d["name"].strip() and d["uuid"].strip(), d
        assert d["memory_bytes"] > 0 and d["index"] >= 0, d
        indices.append(d["index"])
    assert indices == sorted(set(indices)), indices


# --------------------------------------------------------------------------------------------
# status
# --------------------------------------------------------------------------------------------


def test_status_has_the_documented_keys_and_types() -> None:
    st = threadx.gpu.status()
    assert isinstance(st, dict)
    for key, types in STATUS_TYPES.items():
        assert key in st, (key, sorted(st))
        assert isinstance(st[key], types), (key, st[key])
    json.dumps(st)  # plain data


def test_status_is_consistent() -> None:
    st = threadx.gpu.status()
    devices = threadx.gpu.devices()
    assert st["devices"] == devices
    assert threadx.gpu.is_available() is st["available"]
    assert st["available"] == bool(devices)
    if st["available"]:
        assert_sane_devices(devices)
        assert st["nvrtc_version"] and st["driver_version"], st
    else:
        assert devices == []
        assert isinstance(st["reason"], str) and st["reason"].strip(), st
        assert threadx.gpu.is_available() is False


# --------------------------------------------------------------------------------------------
# forced GPU placement without a GPU
# --------------------------------------------------------------------------------------------

FEW = ["sma", "bollinger", "macd", "atr", "obv"]


def build(name: str, device: str, form: str) -> pl.Expr:
    if form == "func":
        return indicator_expr(name, PARAMS[name], device=device)
    method = getattr(pl.col(RECEIVER[name]).threadx, name)
    return method(**NS_INPUTS[name], **PARAMS[name], device=device)


@pytest.mark.parametrize("mode", ["eager", "lazy"])
@pytest.mark.parametrize("form", ["func", "ns"])
@pytest.mark.parametrize("device", ["gpu", "gpu:0", "GPU"])
@pytest.mark.parametrize("name", FEW)
def test_forced_gpu_without_a_gpu_is_a_compute_error(name, device, form, mode, data) -> None:
    if gpu_available():  # not applicable: check what the GPU machine reports instead
        assert_sane_devices(threadx.gpu.devices())
        return
    reason = threadx.gpu.status()["reason"]
    expr = build(name, device, form).alias("out")  # building the expression is fine
    with pytest.raises(ComputeError) as exc:
        if mode == "eager":
            data.select(expr)
        else:
            data.lazy().with_columns(expr).collect()
    msg = str(exc.value)
    assert "no usable GPU" in msg, msg
    assert re.search(rf"\b{name}\b", msg), msg
    assert reason in msg, (reason, msg)


@pytest.mark.parametrize("name", NAMES)
def test_auto_computes_like_cpu(name, data) -> None:
    want = run(data, indicator_expr(name, PARAMS[name], device="cpu"))
    got = run(data, indicator_expr(name, PARAMS[name], device="auto"))
    assert_bits_equal(got, want, f"{name} auto")
    got_lazy = data.lazy().select(indicator_expr(name, PARAMS[name]).alias("out")).collect()
    assert_bits_equal(got_lazy["out"], want, f"{name} auto lazy (default device)")


_HIDDEN = r"""
import json, sys
sys.path.insert(0, sys.argv[1])  # the tests folder, for helpers
import polars as pl, threadx
from helpers import PARAMS, digest, indicator_expr, ohlcv

df = ohlcv(500, seed=3)
report = {"status": threadx.gpu.status(), "devices": threadx.gpu.devices(),
          "available": threadx.gpu.is_available(), "errors": {}, "auto_equals_cpu": {}}
for name in ("sma", "stoch"):
    try:
        df.select(indicator_expr(name, PARAMS[name], device="gpu"))
        report["errors"][name] = None
    except pl.exceptions.ComputeError as e:
        report["errors"][name] = str(e)
    cpu, auto = (digest(df.select(indicator_expr(name, PARAMS[name], device=d).alias("o"))["o"])
                 for d in ("cpu", "auto"))
    report["auto_equals_cpu"][name] = cpu == auto
print(json.dumps(report))
"""


def test_hidden_gpus_in_a_child_process() -> None:
    """`CUDA_VISIBLE_DEVICES=""` hides every GPU: the absent-GPU behaviour on any machine."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    env.pop("THREADX_GPU_INJECT_FAILURE", None)
    proc = subprocess.run(
        [sys.executable, "-c", _HIDDEN, str(TESTS_DIR)],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    st = report["status"]
    assert st["available"] is False and report["available"] is False, st
    assert report["devices"] == [] and st["devices"] == [], st
    assert isinstance(st["reason"], str) and st["reason"].strip(), st
    for name, msg in report["errors"].items():
        assert msg is not None, f"{name}: device='gpu' ran with every GPU hidden"
        assert "no usable GPU" in msg and re.search(rf"\b{name}\b", msg), msg
    assert all(report["auto_equals_cpu"].values()), report["auto_equals_cpu"]


# --------------------------------------------------------------------------------------------
# NVRTC compile, no GPU needed
# --------------------------------------------------------------------------------------------


def _compile(arch: str) -> dict:
    try:
        return threadx.gpu.compile_kernels(arch)
    except RuntimeError as e:
        if "NVRTC" in str(e):
            pytest.skip(f"no NVRTC library: {e}")
        raise


@pytest.fixture(scope="module")
def compiled_default() -> dict:
    try:
        return threadx.gpu.compile_kernels()
    except RuntimeError as e:
        if "NVRTC" in str(e):
            pytest.skip(f"no NVRTC library: {e}")
        raise


def _check_compiled(out: dict, arch: str) -> None:
    assert out["arch"] == arch, out
    assert isinstance(out["nvrtc_version"], str) and out["nvrtc_version"], out
    assert isinstance(out["cubin_bytes"], int) and out["cubin_bytes"] > 1000, out
    kernels = out["kernels"]
    assert isinstance(kernels, list) and kernels and all(isinstance(k, str) for k in kernels)
    assert {"tx_moments", "tx_scan_finish"} <= set(kernels), kernels


def test_compile_kernels_default_arch(compiled_default) -> None:
    _check_compiled(compiled_default, "sm_90")


def test_compile_kernels_sm_80(compiled_default) -> None:
    out = _compile("sm_80")
    _check_compiled(out, "sm_80")
    assert out["kernels"] == compiled_default["kernels"]  # the same kernels for every arch


def test_compile_kernels_rejects_a_bad_arch() -> None:
    with pytest.raises((ValueError, RuntimeError)) as exc:
        threadx.gpu.compile_kernels("sm_1")
    msg = str(exc.value)
    # named, unless there is no NVRTC to ask at all
    assert "sm_1" in msg or "NVRTC" in msg, msg
