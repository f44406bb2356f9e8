"""Reproducers of the hardening issue (#10), one per item this file covers, named after it.

Each was written to fail before its fix. Anything that could hang or abort the interpreter runs in
a child process with a timeout.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import polars as pl
import pytest
import threadx
from helpers import (
    CATALOG,
    FIELD_DTYPES,
    INPUTS,
    NAMES,
    PARAMS,
    assert_bits_equal,
    fields,
    indicator_expr,
    ohlcv,
    run,
    scatter_back,
)

#: The indicators that are homogeneous functions of the prices (scaling every price by s scales
#: the output by s^d). The math transforms are not (sin(256 x) is no power of 256 times sin(x));
#: their overflow behaviour is the C library's, checked bit for bit against TA-Lib instead.
HOMOGENEOUS = [r["name"] for r in CATALOG.iter_rows(named=True) if r["group"] != "Math Transform"]


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
# item 14: a Null-dtype column gives all-null Float64 (Int32 for row outputs), as Polars' rolling
# functions do
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_item14_null_dtype_column_gives_all_null_float64(name: str) -> None:
    n = 7
    df = pl.DataFrame({c: pl.Series([None] * n) for c in set(INPUTS[name])})
    assert all(dt == pl.Null for dt in df.dtypes)
    out = run(df, indicator_expr(name, PARAMS[name]))
    assert len(out) == n
    for k, f in fields(out).items():
        assert f.dtype == FIELD_DTYPES[name][k]
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
    """Drop the rows where any input is null, compute on one null-free chunk, scatter back (row
    outputs renumbered to rows of the input, `helpers.scatter_back`)."""
    cols = list(dict.fromkeys(INPUTS[name]))
    present = df.select(pl.all_horizontal([pl.col(c).is_not_null() for c in cols])).to_series()
    dense = run(df.filter(present).rechunk(), indicator_expr(name, PARAMS[name]))
    return fields(scatter_back(dense, present.to_numpy(), name))


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
        assert f.dtype == FIELD_DTYPES[name][k] and len(f) == n
        assert_bits_equal(f.rename(k), want[k].rename(k), f"{name}.{k} {pattern}")


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
            want = scatter_back(dense, present.to_numpy(), name).alias(got.name)
            assert_bits_equal(got, want, f"{name} workers={workers}")
    finally:
        threadx.set_threads(previous)


# --------------------------------------------------------------------------------------------
# item 10: RSI keeps the exact limit when both Wilder averages underflow together
# --------------------------------------------------------------------------------------------


def _bump_then_flat(n: int, up: float, down: float) -> np.ndarray:
    c = np.full(n, 10.0)
    c[10] = 10.0 + up
    c[11:] = c[10] - down
    return c


@pytest.mark.parametrize(("period", "up", "down"), [(14, 1.0, 1.0), (2, 1.0, 1.0), (14, 3.0, 1.0),
                                                   (5, 1.0, 4.0), (30, 2.0, 5.0)])  # fmt: skip
def test_item10_rsi_holds_the_ratio_of_the_decays(period: int, up: float, down: float) -> None:
    """After ~708/ln(n/(n-1)) flat rows both averages sink into the subnormals; the ratio of their
    common decay is constant, so every later row is the settled value. Exact: both moves (rows 10
    and 11) inside the seed window (rows 1..=n) give up/(up+down); otherwise the gain has decayed
    once, by a = (n-1)/n, when the loss comes."""
    a = (period - 1) / period
    exact = 100 * (up / (up + down) if period >= 11 else a * up / (a * up + down))
    c = _bump_then_flat(14_000, up, down)
    got = run(pl.DataFrame({"close": c}), threadx.rsi("close", period)).to_numpy()
    settled = got[max(period, 12) :]
    assert np.all(np.abs(settled - exact) < 1e-9), (settled.min(), settled.max())
    # The same bits whatever the split: threads, chunks and .over() groups.
    df = pl.DataFrame({"close": np.concatenate([c, c]), "g": [0] * len(c) + [1] * len(c)})
    one = run(df.head(len(c)), threadx.rsi("close", period))
    chunked = pl.concat([df.head(len(c)).slice(0, 10_017), df.head(len(c)).slice(10_017)],
                        rechunk=False)  # fmt: skip
    assert_bits_equal(run(chunked, threadx.rsi("close", period)), one, "chunked")
    over = run(df, threadx.rsi("close", period).over("g"))
    assert_bits_equal(over.head(len(c)), one, "over 0")
    assert_bits_equal(over.tail(len(c)), one, "over 1")


def test_item10_rsi_agrees_with_talib_where_talib_keeps_the_limit() -> None:
    talib = pytest.importorskip("talib")
    c = _bump_then_flat(12_000, 1.0, 1.0)  # the issue's series: TA-Lib gives 50 throughout
    got = run(pl.DataFrame({"close": c}), threadx.rsi("close", 14)).to_numpy()
    np.testing.assert_allclose(got[14:], talib.RSI(c, 14)[14:], rtol=0, atol=1e-9)
    flat = np.full(100, 3.0)  # flat from the start: no earlier value to hold, 0 as TA-Lib
    got = run(pl.DataFrame({"close": flat}), threadx.rsi("close", 14)).to_numpy()
    np.testing.assert_array_equal(got[14:], talib.RSI(flat, 14)[14:])


# --------------------------------------------------------------------------------------------
# item 11: finite inputs whose intermediates overflow (the rule is in the README)
# --------------------------------------------------------------------------------------------


def test_item11_the_issue_cases() -> None:
    one = lambda e, xs: run(pl.DataFrame({"close": xs}), e).to_list()
    # Shifted sums: finite while w × the window's range is; the documented price is the
    # opposite-sign case, which is non-finite, never a finite wrong value.
    assert one(threadx.sma("close", 2), [1e308, 1e308]) == [None, 1e308]
    assert one(threadx.bollinger("close", 2).struct.field("middle"), [1e308, 1e308]) == [
        None,
        1e308,
    ]
    assert one(threadx.sma("close", 2), [1e308, -1e308]) == [None, -math.inf]
    # Seeds: finite terms whose sum overflows are averaged scaled down, then scaled back.
    assert one(threadx.ema("close", 2), [1e308, 1e308]) == [None, 1e308]
    assert one(threadx.ema("close", 3), [1.5e308, 1.5e308, 1.5e308, 1.5e308])[2] == 1.5e308
    # Quotients of finite parts that overflow are taken on halves, never a wrong 0.
    hl = {"high": [1.5e308] * 3, "low": [-1.5e308] * 3, "close": [0.0] * 3}
    k = run(pl.DataFrame(hl), threadx.stoch("high", "low", "close", 1, 1, 1)).struct.field("slowk")
    assert k.to_list() == [50.0] * 3
    big = [0.0, 1.2e308, 0.0] * 3  # gains and losses near 1e308: their sum overflows
    rsi = one(threadx.rsi("close", 2), big)
    assert all(v is not None and 0.0 < v < 100.0 for v in rsi[2:]), rsi


def _scaled(df: pl.DataFrame, e: int) -> pl.DataFrame:
    return df.with_columns(pl.all() * 2.0**e)


def _signed(df: pl.DataFrame, seed: int) -> pl.DataFrame:
    """Runs of rows mirrored to negative prices (high and low swapped), so windows hold values of
    both signs and differences reach twice the magnitude."""
    rng = np.random.default_rng(seed)
    flip = np.repeat(rng.random(len(df) // 7 + 1) < 0.5, 7)[: len(df)]
    f = pl.Series(np.where(flip, -1.0, 1.0))
    return df.with_columns(
        pl.col("open") * f,
        pl.col("close") * f,
        pl.when(pl.Series(flip)).then(-pl.col("low")).otherwise(pl.col("high")).alias("high"),
        pl.when(pl.Series(flip)).then(-pl.col("high")).otherwise(pl.col("low")).alias("low"),
    )


#: Outputs that are not a power of the price scale times a scale-free value: LINEARREG_ANGLE is
#: atan of the slope (checked against the slope below).
NOT_HOMOGENEOUS = {"linearreg_angle"}


@pytest.mark.parametrize("top", [1e306, 1.5e308])
@pytest.mark.parametrize("shape", ["walk", "signed"])
def test_item11_angle_is_the_atan_of_the_slope_under_overflow(top: float, shape: str) -> None:
    """LINEARREG_ANGLE on scaled prices is atan(LINEARREG_SLOPE) in degrees, row for row: the
    slope's own overflow behaviour is checked by the homogeneous test."""
    base = ohlcv(600, seed=11)
    if shape == "signed":
        base = _signed(base, 11)
    factor = top / float(base.select(pl.all().abs().max()).max_horizontal().item())
    df = base.with_columns(pl.all() * factor)
    p = PARAMS["linearreg_angle"]
    angle = run(df, indicator_expr("linearreg_angle", p)).to_numpy()
    slope = run(df, indicator_expr("linearreg_slope", p)).to_numpy()
    with np.errstate(invalid="ignore"):
        want = np.degrees(np.arctan(slope))
    np.testing.assert_array_equal(np.isnan(angle), np.isnan(want))
    ok = ~np.isnan(want)
    np.testing.assert_allclose(angle[ok], want[ok], rtol=1e-14, atol=1e-12)


@pytest.mark.parametrize("name", [n for n in HOMOGENEOUS if n not in NOT_HOMOGENEOUS])
@pytest.mark.parametrize("top", [1e306, 1.5e308])
@pytest.mark.parametrize("shape", ["walk", "signed"])
def test_item11_overflow_gives_non_finite_never_a_wrong_finite_value(
    name: str, top: float, shape: str
) -> None:
    """Every catalog indicator on prices scaled so the largest magnitude is `top`: a finite output
    is the value the same call gives on the unscaled data, times the scale to the indicator's degree
    of homogeneity (found by scaling by 2^8), to 1e-9 of the result's scale; an overflowing
    intermediate (or result) may only show as ±inf or NaN."""
    # Volumes brought to the prices' magnitude, so one factor puts every column near `top`.
    base = ohlcv(600, seed=11).with_columns(pl.col("volume") / 8192.0)
    if shape == "signed":
        base = _signed(base, 11)
    factor = top / float(base.select(pl.all().abs().max()).max_horizontal().item())
    expr = indicator_expr(name, PARAMS[name])
    if name == "mavp":  # its periods input is not a price: keep it out of the scaling
        expr = threadx.mavp("close", pl.int_range(pl.len()) % 40, **PARAMS[name])
    small = fields(run(base, expr))
    up8 = fields(run(base.with_columns(pl.all() * 256.0), expr))
    big = fields(run(base.with_columns(pl.all() * factor), expr))
    checked = 0
    for k, s in small.items():
        sv, uv, bv = s.to_numpy(), up8[k].to_numpy(), big[k].to_numpy()
        ok = np.isfinite(sv) & np.isfinite(uv) & (sv != 0)
        ratio = float(np.median(np.abs(uv[ok] / sv[ok])))
        degree = round(np.log2(ratio) / 8)
        # Degree 2: MULT, the product of two prices.
        assert degree in (0, 1, 2) and abs(ratio - 2.0 ** (8 * degree)) < 1e-6, (name, k, ratio)
        want = sv
        with np.errstate(over="ignore"):
            for _ in range(degree):  # factor**2 alone may overflow where the product does not
                want = want * factor
        if not np.isfinite(want).any():
            # The result itself overflows on every row (ADD of two prices near 1.5e308, MULT):
            # IEEE gives ±inf, and nothing may come back finite.
            assert not np.isfinite(big[k].to_numpy()).any(), (name, k)
            continue
        scale = float(np.nanmax(np.abs(want[np.isfinite(want)])))
        finite = np.isfinite(bv)
        checked += int(finite.sum())
        err = np.abs(bv[finite] - want[finite])
        bad = np.flatnonzero(~(err <= 1e-9 * scale))
        assert bad.size == 0, (name, k, bad[:5], bv[finite][bad[:3]], want[finite][bad[:3]])
