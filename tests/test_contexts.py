"""The same bits in every Polars context: eager, lazy, streaming, `.over()`, `group_by().agg()`,
and multi-chunk columns, for every indicator (struct ones included).

Per-group references are computed by running the indicator on each group's rows on their own."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import threadx
from helpers import (
    INPUTS,
    NAMES,
    PARAMS,
    assert_bits_equal,
    fields,
    indicator_expr,
    lookback,
    nan_at,
    null_where,
    ohlcv_arrays,
    present_mask,
)


def expr(name: str) -> pl.Expr:
    return indicator_expr(name, PARAMS[name]).alias("out")


# Group sizes: long, medium, exactly the longest warm-up, shorter than every warm-up, 1 row.
GROUP_SIZES = {"AAA": 700, "BBB": 130, "CCC": 17, "DDD": 5, "EEE": 1, "FFF": 60}


@pytest.fixture(scope="module")
def panel() -> pl.DataFrame:
    """Several symbols, rows interleaved in random order, some nulls, a NaN, and an all-null
    group ("FFF": its close is null everywhere)."""
    rng = np.random.default_rng(77)
    parts = []
    for sym, n in GROUP_SIZES.items():
        cols = ohlcv_arrays(n, rng)
        parts.append(pl.DataFrame({"symbol": [sym] * n, **cols}))
    df = pl.concat(parts)
    df = df.with_columns(
        pl.when(pl.col("symbol") == "FFF").then(None).otherwise(pl.col("close")).alias("close")
    )
    # random nulls in every input, one NaN close
    for j, col in enumerate(("high", "low", "close", "volume")):
        df = null_where(df, col, rng.random(df.height) < 0.03 + 0.01 * j)
    nan_row = int(np.flatnonzero(df["close"].is_not_null().to_numpy()[300:])[0]) + 300
    df = nan_at(df, "close", nan_row)
    order = rng.permutation(df.height)
    return df[order].with_row_index("row")


def per_group(df: pl.DataFrame, name: str) -> pl.Series:
    """The indicator run on each symbol's rows alone, put back on the original rows."""
    pieces = []
    for sym in df["symbol"].unique(maintain_order=True):
        g = df.filter(pl.col("symbol") == sym)
        pieces.append(g.select("row", expr(name)))
    return pl.concat(pieces).sort("row")["out"]


@pytest.mark.parametrize("name", NAMES)
def test_eager_lazy_streaming_select_agree(name: str, panel: pl.DataFrame) -> None:
    e = expr(name)
    eager = panel.with_columns(e)["out"]
    assert len(eager) == panel.height
    assert_bits_equal(panel.select(e)["out"], eager, f"{name} select")
    assert_bits_equal(panel.lazy().with_columns(e).collect()["out"], eager, f"{name} lazy")
    streaming = panel.lazy().with_columns(e).collect(engine="streaming")["out"]
    assert_bits_equal(streaming, eager, f"{name} streaming")
    # a filter/sort before the indicator, same in every engine
    lazy = panel.lazy().filter(pl.col("symbol") != "DDD").sort("row").select(e)
    want = panel.filter(pl.col("symbol") != "DDD").sort("row").select(e)["out"]
    assert_bits_equal(lazy.collect()["out"], want, f"{name} lazy filtered")
    assert_bits_equal(lazy.collect(engine="streaming")["out"], want, f"{name} streaming filtered")


@pytest.mark.parametrize("name", NAMES)
def test_over_equals_per_group(name: str, panel: pl.DataFrame) -> None:
    want = per_group(panel, name)
    e = expr(name).over("symbol")
    assert_bits_equal(panel.with_columns(e)["out"], want, f"{name} over eager")
    assert_bits_equal(panel.lazy().with_columns(e).collect()["out"], want, f"{name} over lazy")
    streaming = panel.lazy().with_columns(e).collect(engine="streaming")["out"]
    assert_bits_equal(streaming, want, f"{name} over streaming")
    # the namespace form under .over() too
    if name == "sma":
        ns = pl.col("close").threadx.sma(**PARAMS[name]).over("symbol").alias("out")
        assert_bits_equal(panel.with_columns(ns)["out"], want, "ns over")


@pytest.mark.parametrize("name", NAMES)
def test_over_short_groups_are_all_null(name: str, panel: pl.DataFrame) -> None:
    out = panel.with_columns(expr(name).over("symbol"))
    lb = lookback(name, PARAMS[name])
    for sym, n in GROUP_SIZES.items():
        g = out.filter(pl.col("symbol") == sym)
        assert g.height == n
        m = int(present_mask(g, INPUTS[name]).sum())
        for k, s in fields(g["out"]).items():
            if m <= lb:  # shorter than the warm-up (in non-null rows): all null
                assert s.null_count() == n, (name, sym, k)
            else:
                assert s.null_count() == n - (m - lb), (name, sym, k)
    # the all-null group is all null
    if "close" in INPUTS[name]:
        for s in fields(out.filter(pl.col("symbol") == "FFF")["out"]).values():
            assert s.null_count() == GROUP_SIZES["FFF"]


@pytest.mark.parametrize("name", NAMES)
def test_over_on_empty_frame(name: str, panel: pl.DataFrame) -> None:
    empty = panel.clear()
    for out in (
        empty.with_columns(expr(name).over("symbol"))["out"],
        empty.lazy().with_columns(expr(name).over("symbol")).collect(engine="streaming")["out"],
        empty.select(expr(name))["out"],
    ):
        assert len(out) == 0
        assert out.dtype == panel.head(40).select(expr(name))["out"].dtype
    agg = empty.group_by("symbol").agg(expr(name))
    assert agg.height == 0


@pytest.mark.parametrize("name", NAMES)
def test_group_by_agg_equals_per_group(name: str, panel: pl.DataFrame) -> None:
    e = expr(name)
    eager = panel.group_by("symbol", maintain_order=True).agg(e)
    lazy = panel.lazy().group_by("symbol", maintain_order=True).agg(e).collect()
    streaming = (
        panel.lazy().group_by("symbol", maintain_order=True).agg(e).collect(engine="streaming")
    )
    symbols = panel["symbol"].unique(maintain_order=True).to_list()
    for result, what in ((eager, "eager"), (lazy, "lazy"), (streaming, "streaming")):
        result = result.sort(pl.col("symbol").replace_strict(symbols, range(len(symbols))))
        assert result["symbol"].to_list() == symbols, what
        assert result.schema["out"] == pl.List(panel.head(40).select(e).schema["out"])
        for sym, lst in zip(result["symbol"], result["out"]):
            want = panel.filter(pl.col("symbol") == sym).select(e)["out"]
            assert_bits_equal(lst, want, f"{name} group_by {what} {sym}")


@pytest.mark.parametrize("name", NAMES)
def test_group_by_agg_with_empty_and_one_row_groups(name: str, panel: pl.DataFrame) -> None:
    """Inside `agg` a filter can hand the indicator 0 or 1 rows of a group."""
    inputs, params = INPUTS[name], PARAMS[name]
    fn = getattr(threadx, name)
    none = fn(*(pl.col(c).filter(pl.col("row") < 0) for c in inputs), **params).alias("none")
    first = fn(*(pl.col(c).head(1) for c in inputs), **params).alias("first")
    out = panel.group_by("symbol", maintain_order=True).agg(none, first)
    assert out.height == len(GROUP_SIZES)
    for lst in out["none"]:
        assert len(lst) == 0
    lb = lookback(name, PARAMS[name])
    for sym, lst in zip(out["symbol"], out["first"]):
        assert len(lst) == 1
        want = panel.filter(pl.col("symbol") == sym).head(1).select(expr(name))["out"]
        assert_bits_equal(lst, want, f"{name} first row of {sym}")
        if lb > 0:
            assert all(f.null_count() == 1 for f in fields(lst).values())


@pytest.mark.parametrize("name", NAMES)
def test_multi_chunk_columns(name: str, panel: pl.DataFrame) -> None:
    e = expr(name)
    single = panel.sort("row")
    want = single.select(e)["out"]
    cuts = [0, 1, 250, 251, 600, single.height]
    chunked = pl.concat([single[a:b] for a, b in zip(cuts, cuts[1:])], rechunk=False)
    assert chunked["close"].n_chunks() > 1
    assert_bits_equal(chunked.select(e)["out"], want, f"{name} chunked eager")
    assert_bits_equal(chunked.lazy().select(e).collect()["out"], want, f"{name} chunked lazy")
    streaming = chunked.lazy().select(e).collect(engine="streaming")["out"]
    assert_bits_equal(streaming, want, f"{name} chunked streaming")
    # chunked + over
    want_over = single.select(e.over("symbol"))["out"]
    assert_bits_equal(chunked.select(e.over("symbol"))["out"], want_over, f"{name} chunked over")
    # inputs chunked differently from each other
    if len(INPUTS[name]) > 1:
        other = pl.concat([single[:333], single[333:]], rechunk=False)
        mixed = chunked.with_columns(other["low"] if "low" in other.columns else other["volume"])
        assert_bits_equal(mixed.select(e)["out"], want, f"{name} mixed chunking")


def test_several_indicators_in_one_query(panel: pl.DataFrame) -> None:
    """A query with every indicator (and .over) side by side gives each one's own result."""
    exprs = [expr(n).alias(n) for n in NAMES] + [
        expr(n).over("symbol").alias(n + "_g") for n in NAMES
    ]
    out = panel.lazy().with_columns(exprs).collect()
    for n in NAMES:
        assert_bits_equal(out[n], panel.select(expr(n))["out"].alias(n), n)
        assert_bits_equal(out[n + "_g"], per_group(panel, n), n + " over")


def test_struct_fields_unnest_in_context(panel: pl.DataFrame) -> None:
    out = panel.with_columns(expr("macd").over("symbol")).unnest("out")
    want = fields(per_group(panel, "macd"))
    for k in ("macd", "signal", "hist"):
        assert_bits_equal(out[k], want[k], k)
    q = panel.lazy().select(
        pl.col("close").threadx.bollinger(9, 1.5).struct.field("upper").over("symbol").alias("u")
    )
    assert_bits_equal(q.collect()["u"], fields(per_group(panel, "bollinger"))["upper"], "upper")
