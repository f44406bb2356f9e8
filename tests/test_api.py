"""The public API of threadx: both call forms, output types, input dtypes, parameter validation
(Python and Rust side), device handling, argument types, empty/short series, version."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import threadx
from helpers import (
    INPUTS,
    NAMES,
    NS_INPUTS,
    PARAMS,
    RECEIVER,
    STRUCT_FIELDS,
    assert_bits_equal,
    fields,
    indicator_expr,
    lookback,
    ohlcv,
    run,
)
from polars.exceptions import ComputeError
from polars.plugins import register_plugin_function

STRUCTS = [n for n in NAMES if STRUCT_FIELDS[n] is not None]


def func_expr(name: str, **override) -> pl.Expr:
    return indicator_expr(name, PARAMS[name], **override)


def ns_expr(name: str, **override) -> pl.Expr:
    method = getattr(pl.col(RECEIVER[name]).threadx, name)
    return method(**NS_INPUTS[name], **{**PARAMS[name], **override})


@pytest.fixture(scope="module")
def data() -> pl.DataFrame:
    return ohlcv(400, seed=1234)


# --------------------------------------------------------------------------------------------
# call forms, output types
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_namespace_and_function_forms_are_identical(name: str, data: pl.DataFrame) -> None:
    want = run(data, func_expr(name))
    assert_bits_equal(run(data, ns_expr(name)), want, name)
    # expressions instead of column names
    inputs, params = INPUTS[name], PARAMS[name]
    as_exprs = getattr(threadx, name)(*(pl.col(c) for c in inputs), **params)
    assert_bits_equal(run(data, as_exprs), want, f"{name} (Expr inputs)")
    # derived expressions are used as is
    doubled = getattr(threadx, name)(*(pl.col(c) * 2 for c in inputs), **params)
    twice = data.select(pl.col(c) * 2 for c in inputs)
    assert_bits_equal(run(data, doubled), run(twice, func_expr(name)), f"{name} (derived)")
    # the namespace with expressions for the other inputs
    ns_inputs = {k: pl.col(v) for k, v in NS_INPUTS[name].items()}
    ns = getattr(pl.col(RECEIVER[name]).threadx, name)(**ns_inputs, **params)
    assert_bits_equal(run(data, ns), want, f"{name} (namespace, Expr inputs)")


@pytest.mark.parametrize("name", NAMES)
def test_output_dtype_and_length(name: str, data: pl.DataFrame) -> None:
    fields_ = STRUCT_FIELDS[name]
    for expr in (func_expr(name), ns_expr(name)):
        out = run(data, expr)
        assert len(out) == data.height
        schema = data.lazy().select(expr.alias("out")).collect_schema()
        if fields_ is None:
            assert out.dtype == pl.Float64
            assert schema["out"] == pl.Float64
        else:
            want = pl.Struct([pl.Field(f, pl.Float64) for f in fields_])
            assert out.dtype == want
            assert schema["out"] == want  # the planned type is the actual one
            assert out.struct.fields == list(fields_)
            assert out.null_count() == 0  # struct rows are never null, their fields are


@pytest.mark.parametrize("name", STRUCTS)
def test_struct_fields_are_consistent(name: str, data: pl.DataFrame) -> None:
    out = fields(run(data, func_expr(name)))
    lb = lookback(name, PARAMS[name])
    for f, s in out.items():
        assert s.null_count() == lb, f
    if name == "bollinger":
        m, u, lo = (out[k].to_numpy()[lb:] for k in ("middle", "upper", "lower"))
        assert (u >= m).all() and (m >= lo).all()
        np.testing.assert_allclose(u - m, m - lo, rtol=1e-9, atol=1e-12)
        # the middle band is the SMA of the same period, bit for bit
        sma = run(data, threadx.sma("close", PARAMS[name]["period"]))
        assert_bits_equal(out["middle"], sma, "middle vs sma")
    if name == "macd":
        m, s, h = (out[k].to_numpy()[lb:] for k in ("macd", "signal", "hist"))
        np.testing.assert_allclose(h, m - s, rtol=0, atol=1e-12)
    if name == "stoch":
        for s in out.values():
            v = s.to_numpy()[lb:]
            assert ((v >= -1e-9) & (v <= 100 + 1e-9)).all()


def test_std_dev_zero_collapses_the_bands(data: pl.DataFrame) -> None:
    out = fields(run(data, threadx.bollinger("close", 10, std_dev=0)))
    assert_bits_equal(out["upper"], out["middle"])
    assert_bits_equal(out["lower"], out["middle"])
    as_int = run(data, threadx.bollinger("close", 10, std_dev=2))
    assert_bits_equal(as_int, run(data, threadx.bollinger("close", 10, std_dev=2.0)))


def test_output_name_follows_first_input(data: pl.DataFrame) -> None:
    assert data.select(threadx.sma("close", 5)).columns == ["close"]
    assert data.select(pl.col("close").threadx.rsi(5)).columns == ["close"]
    assert data.select(threadx.obv("close", "volume")).columns == ["close"]


@pytest.mark.parametrize("name", ["atr", "natr", "stoch"])
def test_namespace_output_keeps_the_receiver_name(name: str, data: pl.DataFrame) -> None:
    """`pl.col("close").threadx.atr(...)` is an expression on close: like every other namespace
    method it must be named "close", so `with_columns` does not overwrite the `high` column."""
    out = data.with_columns(ns_expr(name))
    assert_bits_equal(out["high"], data["high"], f"{name} overwrote high")
    assert data.select(ns_expr(name)).columns == ["close"]


# --------------------------------------------------------------------------------------------
# input dtypes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [pl.Int64, pl.Int32, pl.UInt32, pl.UInt64, pl.Float32])
def test_integer_and_float32_inputs_equal_the_f64_result(name, dtype) -> None:
    _check_dtype(name, dtype)


@pytest.mark.parametrize("dtype", [pl.Int8, pl.Int16, pl.UInt8, pl.UInt16])
def test_small_integer_inputs_are_accepted(dtype) -> None:
    """Every integer dtype is numeric input (computed in f64), the 8- and 16-bit ones too."""
    for name in NAMES:
        _check_dtype(name, dtype)


def _check_dtype(name, dtype) -> None:
    rng = np.random.default_rng(42)
    n = 300
    close = rng.integers(20, 100, n)
    high = close + rng.integers(0, 5, n)
    low = close - rng.integers(0, 5, n)
    volume = rng.integers(1, 100, n)
    open_ = close + rng.integers(-2, 3, n)  # avgprice's open, the math operators' real1
    base = pl.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume})
    if dtype == pl.Float32:
        base = base.with_columns(pl.all().cast(pl.Float32) + 0.1)  # non-integral f32 values
    typed = base.with_columns(pl.all().cast(dtype))
    as_f64 = typed.with_columns(pl.all().cast(pl.Float64))
    got = run(typed, func_expr(name))
    want = run(as_f64, func_expr(name))
    assert_bits_equal(got, want, f"{name} {dtype}")
    assert all(s.dtype == pl.Float64 for s in fields(got).values())


@pytest.mark.parametrize("name", ["atr", "obv"])
def test_mixed_input_dtypes(name: str, data: pl.DataFrame) -> None:
    mixed = data.with_columns(pl.col("volume").cast(pl.Int64), pl.col("low").cast(pl.Float32))
    want = run(mixed.with_columns(pl.all().cast(pl.Float64)), func_expr(name))
    assert_bits_equal(run(mixed, func_expr(name)), want, name)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "values, dtype_pattern",
    [
        (["a", "b", "c"], r"str|String"),
        ([True, False, True], r"bool|Boolean"),
    ],
)
def test_non_numeric_input_is_a_compute_error(name, values, dtype_pattern) -> None:
    inputs = INPUTS[name]
    df = pl.DataFrame({c: [1.0, 2.0, 3.0] for c in ("open", "high", "low", "close", "volume")})
    for col in inputs:  # every input position is checked, not only the first
        bad = df.with_columns(pl.Series(col, values))
        with pytest.raises(ComputeError) as exc:
            run(bad, func_expr(name))
        msg = str(exc.value)
        assert f"threadx.{name}" in msg, msg
        assert re.search(dtype_pattern, msg), msg


_DTYPE_SCRIPT = """
import polars as pl, threadx
from decimal import Decimal
try:
    df = pl.DataFrame({{"x": {series}}})
except AttributeError:  # a dtype this Polars version does not have
    print("SKIP")
    raise SystemExit(0)
try:
    out = df.select(threadx.sma("x", 2))["x"]
except pl.exceptions.ComputeError as e:
    print("ComputeError", str(e).splitlines()[0])
else:
    want = df.select(pl.col("x").cast(pl.Float64)).select(threadx.sma("x", 2))["x"]
    print("OK", out.dtype == pl.Float64 and out.to_list() == want.to_list())
"""

# (series, what the contract allows): every dtype gives a result or a ComputeError, never a crash
_OTHER_DTYPES = {
    "Int128": ("pl.Series([1, 5, 2, 8], dtype=pl.Int128)", "accept"),
    "UInt128": ("pl.Series([1, 5, 2, 8], dtype=pl.UInt128)", "accept"),
    "Float16": ("pl.Series([1.5, 5.0, 2.0, 8.0], dtype=pl.Float16)", "either"),
    "Decimal": ("pl.Series([Decimal('1.5'), Decimal('5'), Decimal('2'), Decimal('8')])", "either"),
    "Categorical": ("pl.Series(['a', 'b', 'a', 'c'], dtype=pl.Categorical)", "reject"),
    "Enum": ("pl.Series(['a', 'b', 'a', 'b'], dtype=pl.Enum(['a', 'b']))", "reject"),
}


@pytest.mark.parametrize("dtype", list(_OTHER_DTYPES))
def test_other_dtypes_never_crash_the_process(dtype: str) -> None:
    """Run in a child process: a panic that cannot unwind aborts the interpreter."""
    series, allowed = _OTHER_DTYPES[dtype]
    proc = subprocess.run(
        [sys.executable, "-c", _DTYPE_SCRIPT.format(series=series)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"{dtype}: process died ({proc.returncode}): {proc.stderr[-500:]}"
    out = proc.stdout.strip()
    if out == "SKIP":
        pytest.skip(f"this Polars has no {dtype}")
    if allowed == "accept":
        assert out == "OK True", out
    elif allowed == "reject":
        assert out.startswith("ComputeError") and "threadx.sma" in out, out
    else:
        assert out == "OK True" or "threadx.sma" in out, out


def test_date_input_is_a_compute_error() -> None:
    from datetime import date

    df = pl.DataFrame({"d": [date(2024, 1, i) for i in range(1, 6)]})
    with pytest.raises(ComputeError, match=r"threadx\.sma"):
        df.select(threadx.sma("d", 2))


# --------------------------------------------------------------------------------------------
# parameter validation (Python)
# --------------------------------------------------------------------------------------------

# (indicator, parameter, minimum) for every integer period parameter
PERIODS = [
    ("sma", "period", 2),
    ("ema", "period", 2),
    ("wma", "period", 2),
    ("rolling_std", "period", 2),
    ("zscore", "period", 2),
    ("bollinger", "period", 2),
    ("rsi", "period", 2),
    ("roc", "period", 1),
    ("macd", "fast", 2),
    ("macd", "slow", 2),
    ("macd", "signal", 1),
    ("atr", "period", 1),
    ("natr", "period", 1),
    ("stoch", "fastk_period", 1),
    ("stoch", "slowk_period", 1),
    ("stoch", "slowd_period", 1),
]


def _fit(name: str, param: str, value) -> dict:
    """Other parameters chosen so that only `param` can be the problem."""
    if name == "macd":
        return {"fast": 2, "slow": 100_000, "signal": 1, param: value}
    if name == "rolling_std":
        return {"period": value, "ddof": 0}
    return {param: value}


@pytest.mark.parametrize("name, param, minimum", PERIODS, ids=[f"{n}.{p}" for n, p, _ in PERIODS])
@pytest.mark.parametrize(
    "value",
    ["below", 0, -3, 100_001, 10**30, True, False, 5.0, 2.5, "5", None, float("nan")],
)
def test_bad_period_raises_value_error(name, param, minimum, value) -> None:
    if value == "below":
        value = minimum - 1
    kwargs = _fit(name, param, value)
    expected = f"threadx.{name}: {param} must be an integer in [{minimum}, 100000], got {value!r}"
    for build in (func_expr, ns_expr):
        with pytest.raises(ValueError) as exc:
            build(name, **kwargs)
        assert str(exc.value) == expected


@pytest.mark.parametrize("name, param, minimum", PERIODS, ids=[f"{n}.{p}" for n, p, _ in PERIODS])
def test_period_bounds_are_inclusive(name, param, minimum, data: pl.DataFrame) -> None:
    short = data.head(30)
    values = [minimum, minimum + 1, np.int64(minimum + 2), 100_000]
    if (name, param) == ("macd", "slow"):
        values[0] = 3  # slow = 2 leaves no valid fast (fast >= 2 and fast < slow)
    if (name, param) == ("macd", "fast"):
        values[-1] = 99_999  # fast = 100000 leaves no valid slow
    for value in values:
        out = fields(run(short, func_expr(name, **_fit(name, param, value))))
        for s in out.values():
            assert len(s) == 30 and s.dtype == pl.Float64
            if value >= 30:
                assert s.null_count() == 30  # shorter than the warm-up


def test_minimum_periods_compute(data: pl.DataFrame) -> None:
    close = data["close"].to_numpy()
    roc1 = run(data, threadx.roc("close", 1)).to_numpy()[1:]
    np.testing.assert_allclose(roc1, (close[1:] / close[:-1] - 1) * 100, rtol=1e-12)
    sma2 = run(data, threadx.sma("close", 2)).to_numpy()[1:]
    np.testing.assert_allclose(sma2, (close[1:] + close[:-1]) / 2, rtol=1e-14)
    k = fields(run(data, threadx.stoch("high", "low", "close", 1, 1, 1)))["slowk"].to_numpy()
    h, lo = data["high"].to_numpy(), data["low"].to_numpy()
    np.testing.assert_allclose(k, (close - lo) / ((h - lo) / 100), rtol=1e-12)
    atr1 = run(data, threadx.atr("high", "low", "close", 1)).to_numpy()[1:]
    prev = close[:-1]
    tr = np.maximum.reduce([h[1:] - lo[1:], np.abs(prev - h[1:]), np.abs(prev - lo[1:])])
    np.testing.assert_allclose(atr1, tr, rtol=1e-12)


@pytest.mark.parametrize("fast, slow", [(26, 26), (27, 26), (100, 3)])
def test_macd_fast_must_be_below_slow(fast, slow) -> None:
    expected = f"threadx.macd: fast must be less than slow ({slow}), got {fast}"
    with pytest.raises(ValueError) as exc:
        threadx.macd("close", fast=fast, slow=slow, signal=9)
    assert str(exc.value) == expected
    with pytest.raises(ValueError):
        pl.col("close").threadx.macd(fast, slow, 9)


@pytest.mark.parametrize("ddof", [5, 6, -1, True, 1.0, "1", None])
def test_bad_ddof(ddof) -> None:
    expected = (
        f"threadx.rolling_std: ddof must be an integer in [0, 4] (below period), got {ddof!r}"
    )
    for build in (
        lambda: threadx.rolling_std("close", 5, ddof),
        lambda: pl.col("close").threadx.rolling_std(period=5, ddof=ddof),
    ):
        with pytest.raises(ValueError) as exc:
            build()
        assert str(exc.value) == expected


def test_ddof_values(data: pl.DataFrame) -> None:
    x = data["close"].to_numpy()
    win = np.lib.stride_tricks.sliding_window_view(x, 5)
    for ddof in (0, 1, 4):
        got = run(data, threadx.rolling_std("close", 5, ddof)).to_numpy()[4:]
        np.testing.assert_allclose(got, win.std(axis=1, ddof=ddof), rtol=1e-8)


@pytest.mark.parametrize(
    "std_dev", [-0.5, -1, float("nan"), float("inf"), -float("inf"), True, "2", None]
)
def test_bad_std_dev(std_dev) -> None:
    expected = f"threadx.bollinger: std_dev must be a finite number >= 0, got {std_dev!r}"
    for build in (
        lambda: threadx.bollinger("close", 20, std_dev),
        lambda: pl.col("close").threadx.bollinger(20, std_dev=std_dev),
    ):
        with pytest.raises(ValueError) as exc:
            build()
        assert str(exc.value) == expected


def test_validation_happens_before_any_data() -> None:
    # no frame, no column: the error comes when the expression is built
    with pytest.raises(ValueError, match=r"threadx\.sma: period"):
        threadx.sma("does_not_exist", 1)


# --------------------------------------------------------------------------------------------
# parameter validation (Rust side, reached directly)
# --------------------------------------------------------------------------------------------

PLUGIN = Path(threadx.__file__).parent


def _direct(indicator: str, args, kwargs) -> pl.Expr:
    """The plugin's one entry point, called without the Python validation."""
    params = {k: float(v) for k, v in kwargs.items() if k != "device"}
    return register_plugin_function(
        plugin_path=PLUGIN,
        function_name="indicator",
        args=args,
        kwargs={"indicator": indicator, "params": params, "device": kwargs["device"]},
        is_elementwise=False,
    )


X = [pl.col("close")]
HLC_COLS = [pl.col("high"), pl.col("low"), pl.col("close")]
RUST_CASES = [
    ("sma", X, {"period": 1}, "threadx.sma: period must be an integer in [2, 100000], got 1"),
    ("ema", X, {"period": 100_001}, "threadx.ema: period must be an integer in [2, 100000]"),
    ("wma", X, {"period": -5}, "threadx.wma: period must be an integer in [2, 100000], got -5"),
    ("zscore", X, {"period": 0}, "threadx.zscore: period must be an integer in [2, 100000]"),
    ("rsi", X, {"period": 1}, "threadx.rsi: period must be an integer in [2, 100000], got 1"),
    ("roc", X, {"period": 0}, "threadx.roc: period must be an integer in [1, 100000], got 0"),
    ("rolling_std", X, {"period": 5, "ddof": 5}, "threadx.rolling_std: ddof"),
    ("rolling_std", X, {"period": 5, "ddof": -1}, "threadx.rolling_std: ddof"),
    ("bollinger", X, {"period": 5, "std_dev": -1.0}, "threadx.bollinger: std_dev"),
    ("bollinger", X, {"period": 5, "std_dev": float("nan")}, "threadx.bollinger: std_dev"),
    ("macd", X, {"fast": 26, "slow": 12, "signal": 9}, "threadx.macd: fast must be less than"),
    ("macd", X, {"fast": 12, "slow": 26, "signal": 0}, "threadx.macd: signal must be"),
    ("atr", HLC_COLS, {"period": 0}, "threadx.atr: period must be an integer in [1, 100000]"),
    ("natr", HLC_COLS, {"period": 0}, "threadx.natr: period must be an integer in [1, 100000]"),
    (
        "stoch",
        HLC_COLS,
        {"fastk_period": 5, "slowk_period": 0, "slowd_period": 3},
        "threadx.stoch: slowk_period must be an integer in [1, 100000], got 0",
    ),
]


@pytest.mark.parametrize(
    "fn, args, kwargs, message", RUST_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(RUST_CASES)]
)
def test_rust_side_validation(fn, args, kwargs, message, data: pl.DataFrame) -> None:
    expr = _direct(fn, args, {**kwargs, "device": "auto"})
    with pytest.raises(ComputeError) as exc:
        data.select(expr)
    assert message in str(exc.value)


def test_rust_side_accepts_what_python_accepts(data: pl.DataFrame) -> None:
    direct = _direct("sma", X, {"period": 2, "device": "auto"})
    assert_bits_equal(run(data, direct), run(data, threadx.sma("close", 2)))
    with pytest.raises(ComputeError, match=r"threadx\.sma: device must be"):
        data.select(_direct("sma", X, {"period": 2, "device": "tpu"}))
    with pytest.raises(ComputeError, match=r"threadx\.atr: expected 3 input"):
        data.select(_direct("atr", X, {"period": 2, "device": "auto"}))


# --------------------------------------------------------------------------------------------
# device
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_cpu_and_auto_devices_give_identical_results(name: str, data: pl.DataFrame) -> None:
    want = run(data, func_expr(name))
    for device in ("auto", "cpu", "CPU", " cpu ", "Auto"):
        assert_bits_equal(run(data, func_expr(name, device=device)), want, f"{name} {device}")
        assert_bits_equal(run(data, ns_expr(name, device=device)), want, f"{name} {device} ns")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("device", ["gpu", "gpu:0", "gpu:0,1", "GPU:3"])
def test_gpu_device_fails_at_collect(name: str, device: str, data: pl.DataFrame) -> None:
    for build in (func_expr, ns_expr):
        expr = build(name, device=device)  # building the expression is fine
        lazy = data.lazy().select(expr)
        with pytest.raises(ComputeError) as exc:
            lazy.collect()
        msg = str(exc.value)
        if "cuda" in threadx._registry.BY_NAME[name].devices:
            assert "no usable GPU" in msg, msg
        else:  # declared CPU-only: refused with the declared reason, GPU or not
            assert f"{name} cannot run on a GPU" in msg, msg
        assert f"threadx.{name}" in msg, msg


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "device", ["tpu", "", "gpu:", "gpu:a", "gpu:0,", "cuda", "gpu:-1", "cpu:0", 0, None, b"cpu"]
)
def test_malformed_device_is_a_value_error(name: str, device) -> None:
    for build in (func_expr, ns_expr):
        with pytest.raises(ValueError) as exc:
            build(name, device=device)
        msg = str(exc.value)
        assert f"threadx.{name}: device must be" in msg and repr(device) in msg, msg


# --------------------------------------------------------------------------------------------
# argument types
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [5, 1.5, None, pl.Series("close", [1.0]), ["close"], b"close"])
def test_non_str_non_expr_column_is_a_type_error(bad) -> None:
    calls = {
        "sma": lambda: threadx.sma(bad, 5),
        "bollinger": lambda: threadx.bollinger(bad),
        "macd": lambda: threadx.macd(bad),
        "atr.high": lambda: threadx.atr(bad, "low", "close"),
        "atr.low": lambda: threadx.atr("high", bad, "close"),
        "natr.close": lambda: threadx.natr("high", "low", bad),
        "stoch.low": lambda: threadx.stoch("high", bad, "close"),
        "obv.close": lambda: threadx.obv(bad, "volume"),
        "obv.volume": lambda: threadx.obv("close", bad),
        "ns.atr.high": lambda: pl.col("close").threadx.atr(high=bad, low="low"),
        "ns.stoch.low": lambda: pl.col("close").threadx.stoch(high="high", low=bad),
        "ns.obv.volume": lambda: pl.col("close").threadx.obv(volume=bad),
    }
    for what, call in calls.items():
        with pytest.raises(TypeError) as exc:
            call()
        msg = str(exc.value)
        name, _, param = what.removeprefix("ns.").partition(".")
        assert f"threadx.{name}" in msg, (what, msg)
        if param:
            assert param in msg, (what, msg)


# --------------------------------------------------------------------------------------------
# empty and short series
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_empty_series(name: str) -> None:
    empty = ohlcv(10, seed=1).clear()
    for build in (func_expr, ns_expr):
        out = run(empty, build(name))
        assert len(out) == 0
        fields_ = STRUCT_FIELDS[name]
        if fields_ is None:
            assert out.dtype == pl.Float64
        else:
            assert out.dtype == pl.Struct([pl.Field(f, pl.Float64) for f in fields_])


@pytest.mark.parametrize("name", NAMES)
def test_short_series_are_all_null(name: str, data: pl.DataFrame) -> None:
    lb = lookback(name, PARAMS[name])
    for n in sorted({1, 2, lb - 1, lb, lb + 1, lb + 2}):
        if n < 1:
            continue
        out = fields(run(data.head(n), func_expr(name)))
        for f, s in out.items():
            assert len(s) == n, (name, f, n)
            assert s.dtype == pl.Float64
            expected_nulls = min(lb, n)
            assert s.null_count() == expected_nulls, (name, f, n)
            assert s.head(expected_nulls).null_count() == expected_nulls


def test_short_series_values_start_right_after_the_warm_up() -> None:
    x = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0]
    df = pl.DataFrame({"x": x})
    assert run(df, threadx.sma("x", 6)).to_list() == [None] * 5 + [pytest.approx(sum(x) / 6)]
    assert run(df, threadx.sma("x", 7)).to_list() == [None] * 6
    # the EMA seed is the left-to-right sum divided by n, exactly
    assert run(df, threadx.ema("x", 6)).to_list() == [None] * 5 + [sum(x) / 6]
    assert run(df, threadx.roc("x", 5)).to_list() == [None] * 5 + [200.0]


# --------------------------------------------------------------------------------------------
# module
# --------------------------------------------------------------------------------------------


def test_version() -> None:
    assert isinstance(threadx.__version__, str)
    assert re.fullmatch(r"\d+\.\d+\.\d+([.\-+].*)?", threadx.__version__)
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    declared = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.MULTILINE)
    assert declared and threadx.__version__ == declared.group(1)
    try:  # installed (not only on PYTHONPATH): the metadata agrees
        assert threadx.__version__ == metadata.version("threadx")
    except metadata.PackageNotFoundError:
        pass


def test_public_names() -> None:
    for name in NAMES + ["set_threads", "get_threads", "__version__"]:
        assert name in threadx.__all__
        assert hasattr(threadx, name)
    for name in NAMES:
        assert callable(getattr(pl.col("x").threadx, name))


def test_hand_values_sanity() -> None:
    df = pl.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 5.0]})
    assert run(df, threadx.sma("x", 2)).to_list() == [None, 1.5, 2.5, 3.5, 4.5]
    std = run(df, threadx.rolling_std("x", 2)).to_list()
    assert std[0] is None and all(math.isclose(v, 0.5) for v in std[1:])
    z = run(df, threadx.zscore("x", 2)).to_list()
    assert z[0] is None and all(math.isclose(v, 1.0) for v in z[1:])
