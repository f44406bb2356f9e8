"""``by=`` (many series in one call) and parameter sweeps (list-valued parameters), for every
indicator in the catalog.

- ``by=`` must return exactly what ``.over()`` returns, bit for bit: sorted keys (the fast path
  without gather or scatter), interleaved keys, null keys (a group of their own), groups shorter
  than the warm-up, several key columns or expressions, multi-chunk input, lazy and streaming
  execution, simulated GPU device sets.
- Every field of a sweep must be bit-identical to the single call with its parameters, alone and
  combined with ``by=``.
- Bad input gets a clear error.

The references are Polars' own ``.over()`` and single calls, which the other suites check against
TA-Lib and the exact references.
"""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest
import threadx
from helpers import (
    COLUMN,
    GPU_NAMES,
    MA_CODES,
    NAMES,
    PARAMS,
    RECEIVER,
    assert_bits_equal,
    indicator_expr,
    nan_at,
    null_where,
    ohlcv_arrays,
    profile_at,
)
from polars.exceptions import ColumnNotFoundError, ComputeError

CATALOG = {r["name"]: r for r in threadx.catalog().iter_rows(named=True)}
MA_NAMES = {code: name for name, code in MA_CODES.items()}

# Group sizes: long, medium, shorter than most warm-ups, 1 row; plus rows whose key is null.
GROUP_SIZES = {"AAA": 500, "BBB": 130, "CCC": 17, "DDD": 5, "EEE": 1}
NULL_KEY_ROWS = 60


def _panel(seed: int) -> pl.DataFrame:
    """Several symbols (and null-keyed rows), with random nulls in every input and a NaN close, in
    frame order (unsorted)."""
    rng = np.random.default_rng(seed)
    parts = [
        pl.DataFrame({"symbol": [sym] * n, **ohlcv_arrays(n, rng)}, schema_overrides={})
        for sym, n in {**GROUP_SIZES, None: NULL_KEY_ROWS}.items()
    ]
    df = pl.concat(parts)
    for j, col in enumerate(("high", "low", "close", "volume")):
        df = null_where(df, col, rng.random(df.height) < 0.03 + 0.01 * j)
    df = nan_at(df, "close", 300)
    df = df.with_columns(session=(pl.int_range(pl.len()) % 3).cast(pl.Int64))
    return df[rng.permutation(df.height)]


@pytest.fixture(scope="module")
def interleaved() -> pl.DataFrame:
    return _panel(5)


@pytest.fixture(scope="module")
def sorted_panel(interleaved: pl.DataFrame) -> pl.DataFrame:
    return interleaved.sort("symbol", nulls_last=False, maintain_order=True)


def chunked(df: pl.DataFrame, cuts: tuple[int, ...] = (97, 411)) -> pl.DataFrame:
    """``df`` as a frame of several chunks (boundaries at the row numbers in ``cuts``)."""
    bounds = [0, *cuts, df.height]
    out = pl.concat([df[a:b] for a, b in itertools.pairwise(bounds)], rechunk=False)
    assert out.n_chunks() == len(bounds) - 1
    return out


def by_expr(name: str, params: dict | None = None, **kw) -> pl.Expr:
    return indicator_expr(name, PARAMS[name] if params is None else params, **kw).alias("out")


def over_expr(name: str, keys, params: dict | None = None) -> pl.Expr:
    return indicator_expr(name, PARAMS[name] if params is None else params).over(keys).alias("out")


def ns_expr(name: str, **kw) -> pl.Expr:
    row = CATALOG[name]
    receiver = row["receiver"]
    others = {i: RECEIVER[name] if i == receiver else _column(i) for i in row["inputs"]}
    del others[receiver]
    method = getattr(pl.col(RECEIVER[name]).threadx, name)
    return method(**others, **PARAMS[name], **kw).alias("out")


def _column(inp: str) -> str:
    return COLUMN[inp]


# --------------------------------------------------------------------------------------------
# by= against .over()
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_by_equals_over(name: str, interleaved: pl.DataFrame, sorted_panel: pl.DataFrame) -> None:
    for label, df in (("interleaved", interleaved), ("sorted", sorted_panel)):
        want = df.select(over_expr(name, "symbol"))["out"]
        e = by_expr(name, by="symbol")
        assert_bits_equal(df.select(e)["out"], want, f"{name} by= {label}")
        assert_bits_equal(df.select(ns_expr(name, by="symbol"))["out"], want, f"{name} ns {label}")
        lazy = df.lazy().select(e)
        assert_bits_equal(lazy.collect()["out"], want, f"{name} by= {label} lazy")
        streaming = lazy.collect(engine="streaming")["out"]
        assert_bits_equal(streaming, want, f"{name} by= {label} streaming")
        assert_bits_equal(chunked(df).select(e)["out"], want, f"{name} by= {label} chunked")


@pytest.mark.parametrize("name", NAMES)
def test_by_several_keys_and_expressions(name: str, interleaved: pl.DataFrame) -> None:
    keys = ["symbol", "session"]
    want = interleaved.select(over_expr(name, keys))["out"]
    got = interleaved.select(by_expr(name, by=keys))["out"]
    assert_bits_equal(got, want, f"{name} by two columns")
    # an expression key (the symbol's first letter, lowercased: every symbol its own group)
    key = pl.col("symbol").str.to_lowercase()
    want = interleaved.select(over_expr(name, key))["out"]
    assert_bits_equal(interleaved.select(by_expr(name, by=key))["out"], want, f"{name} by expr")


def test_by_short_groups_are_warm_up(interleaved: pl.DataFrame) -> None:
    """A group shorter than the warm-up is all null; the next group's rows are unaffected."""
    out = interleaved.with_columns(by_expr("sma", {"period": 20}, by="symbol"))
    for sym in ("CCC", "DDD", "EEE"):
        assert out.filter(pl.col("symbol") == sym)["out"].null_count() == GROUP_SIZES[sym]
    aaa = out.filter(pl.col("symbol") == "AAA")
    assert aaa["out"].is_not_null().sum() > 0


@pytest.mark.parametrize("null_keys", [True, False])
def test_by_keys_of_every_dtype(interleaved: pl.DataFrame, null_keys: bool) -> None:
    """Integer, float, boolean, string, categorical, enum and date keys group like ``.over()``,
    with null keys (compared column by column) and without (one column read in place)."""
    if not null_keys:
        interleaved = interleaved.with_columns(pl.col("symbol").fill_null("AAA"))
    df = interleaved.with_columns(
        k_int=pl.col("symbol").rank("dense").cast(pl.Int32),
        k_float=pl.col("symbol").rank("dense").cast(pl.Float64) / 2,
        k_bool=pl.col("symbol") < "CCC",
        k_cat=pl.col("symbol").cast(pl.Categorical),
        k_enum=pl.col("symbol").cast(pl.Enum(list(GROUP_SIZES))),
        k_date=pl.date(2020, 1, 1) + pl.duration(days=pl.col("symbol").rank("dense")),
        k_bin=pl.col("symbol").cast(pl.Binary),
        k_u64=pl.col("symbol").rank("dense").cast(pl.UInt64),
    )
    for key in ("k_int", "k_float", "k_bool", "k_cat", "k_enum", "k_date", "k_bin", "k_u64"):
        want = df.select(over_expr("ema", key))["out"]
        assert_bits_equal(df.select(by_expr("ema", by=key))["out"], want, f"by {key}")


@pytest.mark.parametrize("layout", ["interleaved", "sorted"])
def test_by_integer_keys_without_nulls(interleaved: pl.DataFrame, layout: str) -> None:
    """Integer keys without nulls: a small range (grouped through a table indexed by the key), a
    range wider than the rows and negative keys (through the hash table) group like ``.over()``."""
    df = interleaved.with_columns(rank=pl.col("symbol").fill_null("~").rank("dense").cast(pl.Int64))
    if layout == "sorted":
        df = df.sort("rank", maintain_order=True)
    df = df.with_columns(
        k_dense=pl.col("rank"),
        k_wide=pl.col("rank") * 10**12,
        k_negative=-pl.col("rank"),
        k_u8=pl.col("rank").cast(pl.UInt8),
    )
    for key in ("k_dense", "k_wide", "k_negative", "k_u8"):
        for name in ("ema", "atr"):
            want = df.select(over_expr(name, key))["out"]
            assert_bits_equal(df.select(by_expr(name, by=key))["out"], want, f"{name} by {key}")


@pytest.mark.parametrize("null_keys", [True, False])
def test_by_float_keys_group_like_over(null_keys: bool) -> None:
    """-0.0 and 0.0 are one group, every NaN is one group (as in ``.over()``)."""
    keys = [0.0, -0.0, float("nan"), 1.5, float("nan"), 0.0, None, 1.5, -0.0, None] * 8
    if not null_keys:
        keys = [2.5 if k is None else k for k in keys]
    df = pl.DataFrame({"k": keys, "close": np.linspace(1.0, 2.0, len(keys)) ** 2})
    want = df.select(pl.col("close").threadx.sma(3).over("k").alias("out"))["out"]
    got = df.select(pl.col("close").threadx.sma(3, by="k").alias("out"))["out"]
    assert_bits_equal(got, want, "float keys")


def test_by_empty_frame_and_all_null_keys() -> None:
    empty = pl.DataFrame({"k": [], "close": []}, schema={"k": pl.String, "close": pl.Float64})
    out = empty.select(threadx.sma("close", 3, by="k"))
    assert out.height == 0 and out.dtypes == [pl.Float64]
    nulls = pl.DataFrame(
        {"k": [None] * 10, "close": np.arange(10.0)}, schema_overrides={"k": pl.String}
    )
    want = nulls.select(pl.col("close").threadx.sma(3).over("k"))
    assert_bits_equal(nulls.select(threadx.sma("close", 3, by="k")).to_series(), want.to_series())


@pytest.mark.parametrize("name", GPU_NAMES)
def test_by_on_simulated_device_sets(
    name: str, interleaved: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Segments spread over device sets of simulated GPUs (with and without the CPU) give the
    CPU's bits."""
    want = interleaved.select(by_expr(name, by="symbol", device="cpu"))["out"]
    monkeypatch.setenv("THREADX_SIMULATED_GPUS", "1.0,0.5")
    for device in ("gpus", "all", "gpu:1"):
        got = interleaved.select(by_expr(name, by="symbol", device=device))["out"]
        assert_bits_equal(got, want, f"{name} by= on {device}", nan_payloads=False)


def same_bits_at_any_threads(df: pl.DataFrame, exprs: list[pl.Expr]) -> pl.DataFrame:
    """``df.select(exprs)`` at 1 thread, after checking that 2 and 7 threads give its bits."""
    try:
        threadx.set_threads(1)
        want = df.select(exprs)
        for t in (2, 7):
            threadx.set_threads(t)
            got = df.select(exprs)
            for c in want.columns:
                assert_bits_equal(got[c], want[c], f"{c} at {t} threads")
    finally:
        threadx.set_threads(None)
    return want


def test_by_large_interleaved_keys_move_rows_in_parallel() -> None:
    """Interleaved keys over 2**20 rows move their rows to group order and back on several
    workers: the bits of one worker and of ``.over()``, nulls in the input included."""
    rng = np.random.default_rng(12)
    n = (1 << 20) + 4321
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    df = pl.DataFrame({"k": rng.integers(0, 700, n), "close": close}).with_columns(
        close_nulls=pl.when(pl.int_range(pl.len()) % 97 == 5).then(None).otherwise("close")
    )
    exprs = [
        threadx.sma("close", 10, by="k").alias("s"),
        threadx.rsi("close_nulls", 14, by="k").alias("r"),
    ]
    want = same_bits_at_any_threads(df, exprs)
    over = df.select(
        threadx.sma("close", 10).over("k").alias("s"),
        threadx.rsi("close_nulls", 14).over("k").alias("r"),
    )
    for c in ("s", "r"):
        assert_bits_equal(want[c], over[c], f"{c} by= vs over")


def test_by_with_many_threads_and_segments() -> None:
    """Many short segments packed per worker and one long segment split into blocks give the bits
    of one worker."""
    rng = np.random.default_rng(11)
    n_long, n_short, short = 200_000, 3_000, 40
    df = pl.DataFrame(
        {
            "k": np.concatenate(
                [np.zeros(n_long, np.int64), 1 + np.arange(n_short * short) // short]
            ),
            "close": 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n_long + n_short * short))),
        }
    )
    exprs = [
        threadx.ema("close", 10, by="k").alias("e"),
        threadx.bollinger("close", 9, by="k").alias("b"),
    ]
    want = same_bits_at_any_threads(df, exprs)
    over = df.select(threadx.ema("close", 10).over("k").alias("e"))
    assert_bits_equal(want["e"], over["e"], "ema by= vs over")


def test_by_row_outputs_count_rows_of_the_group(interleaved: pl.DataFrame) -> None:
    """MAXINDEX under ``by=`` returns rows as ``.over()`` does (rows of the group's series)."""
    for name in ("maxindex", "minmaxindex"):
        want = interleaved.select(over_expr(name, "symbol"))["out"]
        assert_bits_equal(interleaved.select(by_expr(name, by="symbol"))["out"], want, name)


# --------------------------------------------------------------------------------------------
# sweeps against single calls
# --------------------------------------------------------------------------------------------


def numeric_params(name: str) -> list[dict]:
    """The declared parameters that a sweep may vary and that PARAMS sets."""
    return [p for p in CATALOG[name]["params"] if p["name"] in PARAMS[name]]


def alternative(name: str, p: dict, base) -> object:
    """A second valid value of parameter ``p`` (the call with it must be accepted)."""
    if p["kind"] == "matype":
        candidates = [1, 0, 2]
    elif p["kind"] == "int":
        candidates = [base + 1, base - 1, base + 2]
    else:
        candidates = [base * 0.5 if base else 0.5, base + 0.5, base * 1.5]
    for c in candidates:
        if c == base or c < p["min"] or (p["max"] is not None and c > p["max"]):
            continue
        try:
            indicator_expr(name, {**PARAMS[name], p["name"]: c})
        except ValueError:
            continue
        return c
    raise AssertionError(f"no second value for {name}.{p['name']}")


def field_part(p: dict, v) -> str:
    if p["kind"] == "matype":
        return MA_NAMES[int(v)]
    return repr(float(v)) if p["kind"] == "float" else str(int(v))


SWEPT = [n for n in NAMES if numeric_params(n)]


def test_every_indicator_with_a_parameter_is_swept() -> None:
    """Only the parameterless indicators (price transforms, math) are left out of the sweeps."""
    without = sorted(set(NAMES) - set(SWEPT))
    assert all(not numeric_params(n) for n in without)
    assert len(SWEPT) >= 40, SWEPT


def sweep_spec(name: str, limit: int = 3) -> tuple[dict, list[dict], list[tuple]]:
    """Two values for (up to ``limit``) parameters: the sweep's arguments, the swept declarations
    and their combinations (valid ones only: a combination that breaks a rule between parameters
    makes the whole sweep an error, tested separately)."""
    swept = numeric_params(name)[:limit]
    values = {p["name"]: [PARAMS[name][p["name"]], None] for p in swept}
    for p in swept:
        values[p["name"]][1] = alternative(name, p, PARAMS[name][p["name"]])
    combos = list(itertools.product(*values.values()))
    for combo in combos:
        try:
            indicator_expr(name, {**PARAMS[name], **dict(zip(values, combo))})
        except ValueError:
            # keep the first parameter only (its two values are each valid on their own)
            first = swept[0]["name"]
            return (
                {first: values[first]},
                swept[:1],
                [(v,) for v in values[first]],
            )
    return values, swept, combos


@pytest.mark.parametrize("name", SWEPT)
def test_sweep_fields_equal_single_calls(name: str, interleaved: pl.DataFrame) -> None:
    values, swept, combos = sweep_spec(name)
    df = chunked(interleaved)
    out = df.select(by_expr(name, {**PARAMS[name], **values}))["out"]
    names = [name + "".join("_" + field_part(p, v) for p, v in zip(swept, c)) for c in combos]
    assert out.dtype == pl.Struct and out.struct.fields == names, (out.dtype, names)
    for field, combo in zip(names, combos):
        single = df.select(by_expr(name, {**PARAMS[name], **dict(zip(values, combo))}))["out"]
        assert_bits_equal(out.struct.field(field), single, f"{name} sweep field {field}")
    # streaming gives the same fields
    lazy = df.lazy().select(by_expr(name, {**PARAMS[name], **values}))
    streaming = lazy.collect(engine="streaming")["out"]
    for field in names:
        got = streaming.struct.field(field)
        assert_bits_equal(got, out.struct.field(field), f"{name} sweep streaming {field}")


@pytest.mark.parametrize("name", SWEPT)
def test_sweep_with_by_equals_single_calls_over(name: str, interleaved: pl.DataFrame) -> None:
    values, _, combos = sweep_spec(name, limit=1)
    out = interleaved.select(by_expr(name, {**PARAMS[name], **values}, by="symbol"))["out"]
    for i, combo in enumerate(combos):
        single = interleaved.select(
            over_expr(name, "symbol", {**PARAMS[name], **dict(zip(values, combo))})
        )
        assert_bits_equal(out.struct[i], single["out"], f"{name} sweep by= {combo}")


def test_sweep_ranges_arrays_and_names() -> None:
    df = pl.DataFrame({"close": 100 + np.sin(np.arange(500) / 7.0)})
    out = df.select(threadx.sma("close", period=range(5, 30, 5))).to_series()
    assert out.struct.fields == ["sma_5", "sma_10", "sma_15", "sma_20", "sma_25"]
    arr = df.select(pl.col("close").threadx.sma(np.array([5, 10]))).to_series()
    assert arr.struct.fields == ["sma_5", "sma_10"]
    b = df.select(threadx.bollinger("close", period=[10, 20], std_dev=[1.5, 2.0])).to_series()
    assert b.struct.fields == [
        "bollinger_10_1.5",
        "bollinger_10_2.0",
        "bollinger_20_1.5",
        "bollinger_20_2.0",
    ]
    inner = b.struct.field("bollinger_20_2.0")
    assert inner.dtype == pl.Struct and inner.struct.fields == ["middle", "upper", "lower"]
    want = df.select(threadx.bollinger("close", period=20, std_dev=2.0)).to_series()
    assert_bits_equal(inner, want, "bollinger_20_2.0")
    m = df.select(threadx.bollinger("close", matype=["sma", "ema", 3])).to_series()
    assert m.struct.fields == ["bollinger_sma", "bollinger_ema", "bollinger_dema"]
    # one value in a list is a sweep of one field
    one = df.select(threadx.sma("close", period=[7])).to_series()
    assert one.struct.fields == ["sma_7"]


def test_sweep_of_a_row_output_keeps_int32(interleaved: pl.DataFrame) -> None:
    out = interleaved.select(threadx.maxindex("close", period=[5, 9], by="symbol")).to_series()
    assert out.dtype == pl.Struct(
        [pl.Field("maxindex_5", pl.Int32), pl.Field("maxindex_9", pl.Int32)]
    )


def test_sweep_on_simulated_device_sets(
    interleaved: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    cpu = interleaved.select(threadx.rsi("close", period=[5, 9, 14], by="symbol", device="cpu"))
    monkeypatch.setenv("THREADX_SIMULATED_GPUS", "1.0,0.5")
    for device in ("gpus", "all"):
        got = interleaved.select(
            threadx.rsi("close", period=[5, 9, 14], by="symbol", device=device)
        )
        assert_bits_equal(
            got.to_series(), cpu.to_series(), f"sweep on {device}", nan_payloads=False
        )


def test_sweep_and_by_workloads_are_profiled_under_their_own_names(tmp_path) -> None:
    """The profile learns ``by=`` and sweep workloads apart from the plain indicator's, keyed by
    the powers of two of their segment and combination counts."""
    df = pl.DataFrame({"k": np.arange(4000) // 100, "close": np.linspace(1, 2, 4000)})
    with profile_at(tmp_path / "p.json"):
        df.select(threadx.sma("close", period=[5, 6, 7, 8], by="k"))  # 40 segments, 4 sets
        df.select(threadx.sma("close", 5, by="k"))
        df.select(threadx.sma("close", [5, 6]))
        df.select(threadx.sma("close", 5))
        names = set(threadx.profile.machine()["timings"])
    want = {"sma[by 2^5][sweep 2^2]", "sma[by 2^5]", "sma[sweep 2^1]", "sma"}
    assert want <= names, names


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


def test_sweep_errors_name_the_function_and_parameter() -> None:
    with pytest.raises(ValueError, match=r"threadx\.sma: period was given an empty list"):
        threadx.sma("close", period=[])
    with pytest.raises(ValueError, match=r"threadx\.sma: period"):
        threadx.sma("close", period=[5, "ten"])
    with pytest.raises(ValueError, match=r"threadx\.sma: period"):
        threadx.sma("close", period=[5, 1])  # 1 is below the minimum
    with pytest.raises(ValueError, match=r"threadx\.bollinger: std_dev"):
        threadx.bollinger("close", std_dev=[2.0, float("nan")])
    with pytest.raises(ValueError, match=r"threadx\.macd"):
        threadx.macd("close", fast=[5, 30], slow=26)  # fast >= slow in one combination


def test_sweep_over_the_memory_budget_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    df = pl.DataFrame({"close": np.linspace(1, 2, 10_000)})
    monkeypatch.setenv("THREADX_SWEEP_BUDGET_BYTES", str(10_000 * 8 * 3))
    ok = df.select(threadx.sma("close", period=[5, 6, 7])).to_series()
    assert ok.struct.fields == ["sma_5", "sma_6", "sma_7"]
    with pytest.raises(
        ComputeError, match=r"threadx\.sma: this sweep's output would take 320000 bytes"
    ):
        df.select(threadx.sma("close", period=[5, 6, 7, 8]))
    with pytest.raises(ComputeError, match=r"10000 rows x 2 parameter sets x 3 output"):
        df.select(threadx.bollinger("close", period=[5, 6]))


def test_by_errors() -> None:
    df = pl.DataFrame({"k": [1, 1, 2], "close": [1.0, 2.0, 3.0]})
    with pytest.raises(ColumnNotFoundError, match="nope"):
        df.select(threadx.sma("close", 2, by="nope"))
    with pytest.raises(ColumnNotFoundError, match="nope"):
        df.lazy().select(pl.col("close").threadx.sma(2, by=["k", "nope"])).collect()
    with pytest.raises(TypeError, match=r"threadx\.sma: by must be"):
        threadx.sma("close", 2, by=[])
    with pytest.raises(TypeError, match=r"threadx\.sma: by must be"):
        threadx.sma("close", 2, by=3)
