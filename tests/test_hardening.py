"""Reproducers of the hardening issue (#10), one per item this file covers, named after it.

Each was written to fail before its fix. Anything that could hang or abort the interpreter runs in
a child process with a timeout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import polars as pl
import pytest
import threadx
from helpers import INPUTS, NAMES, PARAMS, assert_bits_equal, fields, indicator_expr, ohlcv, run


def _python(script: str, env: dict[str, str] | None = None, timeout: float = 120):
    base = {k: v for k, v in os.environ.items() if not k.startswith("THREADX_")}
    base["THREADX_PROFILE"] = os.environ.get("THREADX_PROFILE", "")
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# --------------------------------------------------------------------------------------------
# item 8: a forked child never hangs
# --------------------------------------------------------------------------------------------

_FORK = """
import multiprocessing as mp, sys
import numpy as np, polars as pl, threadx

threadx.set_threads(4)
df = pl.DataFrame({"x": np.random.default_rng(1).normal(size=400_000).cumsum()})
exprs = [threadx.sma("x", 20).alias("sma"), threadx.ema("x", 30).alias("ema")]
parent = [df.select(e).to_series().to_list() for e in exprs]  # rayon's pool is now running

def child(q):
    q.put([df.select(e).to_series().to_list() == p for e, p in zip(exprs, parent)])

ctx = mp.get_context("fork")
q = ctx.Queue()
p = ctx.Process(target=child, args=(q,))
p.start()
p.join(40)
if p.is_alive():
    p.kill()
    print("HANG")
    sys.exit(3)
print("OK", q.get(timeout=5), p.exitcode)
"""


def test_item8_forked_child_does_not_hang() -> None:
    proc = _python(_FORK, timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert proc.stdout.strip() == "OK [True, True] 0", proc.stdout + proc.stderr[-2000:]


# --------------------------------------------------------------------------------------------
# item 9: an invalid THREADX_* value warns once, naming the value and what is used instead
# --------------------------------------------------------------------------------------------

_CALLS = """
import polars as pl, threadx
df = pl.DataFrame({"x": [float(i) for i in range(3000)]})
for _ in range(3):
    df.select(threadx.sma("x", 5))
    threadx.gpu.status()
print("OK", threadx.get_threads())
"""

_INVALID_ENV = [
    ("THREADX_NUM_THREADS", "0", "planner"),
    ("THREADX_NUM_THREADS", "-1", "planner"),
    ("THREADX_NUM_THREADS", "abc", "planner"),
    ("THREADX_NUM_THREADS", "100000", "planner"),
    ("THREADX_SEED", "-5", "default seed"),
    ("THREADX_LOG", "verbose", "logging is on"),
    ("THREADX_GPU", "maybe", "GPUs are used"),
    ("THREADX_NVRTC", "/nonexistent/libnvrtc.so", "usual locations"),
    ("THREADX_GPU_PIECE_ROWS", "0", "free device memory"),
    ("THREADX_GPU_INJECT_FAILURE", "everything", "no failure"),
    ("THREADX_SIMULATED_GPUS", "1,fast", "no simulated GPU"),
]


@pytest.mark.parametrize(("var", "value", "instead"), _INVALID_ENV)
def test_item9_invalid_env_values_warn_once(var: str, value: str, instead: str) -> None:
    proc = _python(_CALLS, {var: value})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("OK"), proc.stdout
    if var == "THREADX_NUM_THREADS":
        assert proc.stdout.strip() == "OK None"
    warnings = [line for line in proc.stderr.splitlines() if var in line and "warning" in line]
    assert len(warnings) == 1, proc.stderr[-2000:]
    assert f'"{value}"' in warnings[0] and instead in warnings[0], warnings[0]


def test_item9_valid_env_values_do_not_warn() -> None:
    env = {"THREADX_NUM_THREADS": "2", "THREADX_SEED": "7", "THREADX_LOG": "0", "THREADX_GPU": "on"}
    proc = _python(_CALLS, env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "OK 2"
    assert "warning" not in proc.stderr, proc.stderr[-2000:]


# --------------------------------------------------------------------------------------------
# item 13: every public entry point raises ValueError naming the parameter
# --------------------------------------------------------------------------------------------

_BAD_CALLS = {
    "set_threads(-1)": (lambda: threadx.set_threads(-1), "n"),
    "set_threads(0)": (lambda: threadx.set_threads(0), "n"),
    "set_threads(2**64)": (lambda: threadx.set_threads(2**64), "n"),
    "optimal_workers(2**64)": (lambda: threadx.optimal_workers(2**64), "n_rows"),
    "optimal_workers(-1)": (lambda: threadx.optimal_workers(-1), "n_rows"),
    "explain('sma', 2**70)": (lambda: threadx.explain("sma", 2**70), "n"),
    "profile.record(rows=-1)": (lambda: threadx.profile.record("sma", -1, "cpu:1", 1e-3), "rows"),
    "profile.record(rows=2**64)": (
        lambda: threadx.profile.record("sma", 2**64, "cpu:1", 1e-3),
        "rows",
    ),
    "profile.record(backend=1)": (lambda: threadx.profile.record("sma", 10, 1, 1e-3), "backend"),
    "bollinger(std_dev=10**400)": (lambda: threadx.bollinger("close", std_dev=10**400), "std_dev"),
    "device='gpu:00,0'": (lambda: threadx.sma("close", device="gpu:00,0"), "device"),
    "device='gpu:9999...'": (lambda: threadx.sma("close", device="gpu:" + "9" * 23), "device"),
    "explain(device='gpu:0,00')": (lambda: threadx.explain("sma", 10, device="gpu:0,00"), "device"),
    "gpu.measure_link(2**64)": (lambda: threadx.gpu.measure_link(2**64), "index"),
    "autotune(sizes=[2**70])": (lambda: threadx.autotune(sizes=[2**70]), "sizes"),
}


@pytest.mark.parametrize("case", list(_BAD_CALLS))
def test_item13_bad_arguments_raise_value_error_naming_the_parameter(case: str) -> None:
    call, param = _BAD_CALLS[case]
    with pytest.raises(ValueError, match=rf"\b{param}\b"):
        call()


def test_item13_cli_huge_size_is_an_argparse_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "threadx", "autotune", "--sizes", "99999999999999999999"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "sizes" in proc.stderr, proc.stderr[-2000:]


# --------------------------------------------------------------------------------------------
# item 14: a Null-dtype column gives all-null Float64, as Polars' rolling functions do
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_item14_null_dtype_column_gives_all_null_float64(name: str) -> None:
    n = 7
    df = pl.DataFrame({c: pl.Series([None] * n) for c in set(INPUTS[name])})
    assert all(dt == pl.Null for dt in df.dtypes)
    out = run(df, indicator_expr(name, PARAMS[name]))
    assert len(out) == n
    for f in fields(out).values():
        assert f.dtype == pl.Float64
        assert f.null_count() == n
    assert pl.Series([None] * n).rolling_mean(3).dtype == pl.Float64  # Polars' own behaviour


# --------------------------------------------------------------------------------------------
# item 15: simulated GPU speeds are bounded, with a clear error; no panic, no endless sleep
# --------------------------------------------------------------------------------------------

_SIMULATED = """
import numpy as np, polars as pl, threadx
df = pl.DataFrame({"x": np.arange(50_000, dtype=float)})
st = threadx.gpu.status()
print("DEVICES", len(st["devices"]))
print("REASON", st["reason"])
try:
    df.select(threadx.sma("x", 5, device="gpu"))
    print("RAN")
except Exception as e:
    print("ERROR", type(e).__name__, e)
"""


@pytest.mark.parametrize("speeds", ["1e-300", "1e-20", "0.001", "0", "-2", "1e9", "nan", "1,inf"])
def test_item15_simulated_gpu_speeds_are_bounded(speeds: str) -> None:
    proc = _python(_SIMULATED, {"THREADX_SIMULATED_GPUS": speeds, "THREADX_GPU": "off"}, 60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "DEVICES 0" in out, out
    assert "THREADX_SIMULATED_GPUS" in out and "(0.001, 1000]" in out, out
    assert "ERROR ComputeError" in out, out


def test_item15_valid_simulated_speeds_still_run() -> None:
    env = {"THREADX_SIMULATED_GPUS": "0.5,1000", "THREADX_GPU": "off"}
    proc = _python(_SIMULATED, env, 60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "DEVICES 2" in proc.stdout and "RAN" in proc.stdout, proc.stdout


# --------------------------------------------------------------------------------------------
# item 16: the fast null path computes exactly what the per-row definition does
# --------------------------------------------------------------------------------------------


def _by_definition(df: pl.DataFrame, name: str) -> dict[str, pl.Series]:
    """Drop the rows where any input is null, compute on one null-free chunk, scatter back."""
    cols = list(dict.fromkeys(INPUTS[name]))
    present = df.select(pl.all_horizontal([pl.col(c).is_not_null() for c in cols])).to_series()
    rows = [i for i, p in enumerate(present.to_list()) if p]
    dense = run(df.filter(present).rechunk(), indicator_expr(name, PARAMS[name]))
    out = {}
    for k, f in fields(dense).items():
        full: list[float | None] = [None] * len(df)
        for i, v in zip(rows, f.to_list()):
            full[i] = v
        out[k] = pl.Series(k, full, dtype=pl.Float64)
    return out


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("pattern", ["sparse", "runs", "chunked", "all_but_one"])
def test_item16_null_compaction_and_scatter_are_exact(name: str, pattern: str) -> None:
    n = 1000 + 37  # not a multiple of 64: the bitmap's remainder word is used
    df = ohlcv(n, seed=16)
    rng = np.random.default_rng(16)
    cols = list(dict.fromkeys(INPUTS[name]))
    for i, c in enumerate(cols):
        if pattern == "sparse":
            nulls = rng.random(n) < 0.05
        elif pattern == "runs":
            nulls = np.zeros(n, bool)
            nulls[64 * (i + 1) : 64 * (i + 1) + 130] = True  # whole words, spanning boundaries
            nulls[-3:] = True
        elif pattern == "all_but_one":
            nulls = np.ones(n, bool)
            nulls[500] = False
        else:
            nulls = rng.random(n) < 0.3
        df = df.with_columns(pl.when(pl.Series(nulls)).then(None).otherwise(pl.col(c)).alias(c))
    if pattern == "chunked":
        df = pl.concat([df.slice(0, 333), df.slice(333, 100), df.slice(433)], rechunk=False)
        assert df.n_chunks() > 1
    got = fields(run(df, indicator_expr(name, PARAMS[name])))
    want = _by_definition(df, name)
    for k, f in got.items():
        assert f.dtype == pl.Float64 and len(f) == n
        assert_bits_equal(f.rename(k), want[k], f"{name}.{k} {pattern}")


@pytest.mark.parametrize("name", NAMES)
def test_item16_parallel_null_passes_are_exact(name: str) -> None:
    """From 2^20 rows the compaction and the scatter run on the planned workers."""
    n = (1 << 20) + 37
    df = ohlcv(n, seed=61)
    rng = np.random.default_rng(61)
    cols = list(dict.fromkeys(INPUTS[name]))
    for c in cols:
        nulls = rng.random(n) < 0.02
        nulls[1000:1200] = True  # a long run across word boundaries
        df = df.with_columns(pl.when(pl.Series(nulls)).then(None).otherwise(pl.col(c)).alias(c))
    present = df.select(pl.all_horizontal([pl.col(c).is_not_null() for c in cols])).to_series()
    expr = indicator_expr(name, PARAMS[name])
    dense = run(df.filter(present).rechunk(), expr)
    previous = threadx.get_threads()
    try:
        for workers in (1, 3):
            threadx.set_threads(workers)
            got = run(df, expr)
            assert len(got) == n
            for k, f in fields(got).items():
                assert f.filter(~present).null_count() == int((~present).sum()), (name, k)
            assert_bits_equal(got.filter(present), dense, f"{name} workers={workers}")
    finally:
        threadx.set_threads(previous)
