"""Bit-identical results for every indicator whatever the worker count (`set_threads`,
`THREADX_NUM_THREADS`), the chunking of the input, and `.over()` versus per-group runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import threadx
from helpers import (
    NAMES,
    assert_bits_equal,
    digest,
    fields,
    indicator_expr,
    nan_at,
    null_where,
    ohlcv,
    ohlcv_arrays,
)

# name -> parameters; periods that do and do not divide the 1024-row scan block
BLOCK_PARAMS = {
    "sma": {"period": 30},
    "ema": {"period": 21},
    "wma": {"period": 17},
    "rolling_std": {"period": 64, "ddof": 1},
    "zscore": {"period": 20},
    "bollinger": {"period": 33, "std_dev": 2.0},
    "rsi": {"period": 14},
    "roc": {"period": 10},
    "macd": {"fast": 12, "slow": 26, "signal": 9},
    "atr": {"period": 14},
    "natr": {"period": 7},
    "stoch": {"fastk_period": 14, "slowk_period": 3, "slowd_period": 5},
    "obv": {},
}
THREADS = [1, 2, 3, 7, 16]
N_ROWS = 200_003


def expr(name: str) -> pl.Expr:
    # An indicator without hand-picked parameters runs at its defaults.
    return indicator_expr(name, BLOCK_PARAMS.get(name, {})).alias("out")


@pytest.fixture
def reset_threads():
    threadx.set_threads(None)
    try:
        yield
    finally:
        threadx.set_threads(None)


def _with_nulls(df: pl.DataFrame) -> pl.DataFrame:
    """`df` with a few nulls: scattered and in a run across a scan block in the close, scattered in
    the volume."""
    rng = np.random.default_rng(5)
    mask = rng.random(N_ROWS) < 0.001
    mask[150_000:151_100] = True
    df = null_where(df, "close", mask)
    return null_where(df, "volume", rng.random(N_ROWS) < 0.0005)


@pytest.fixture(scope="module")
def big() -> pl.DataFrame:
    """~200k rows with a few nulls (scattered and in a run across a scan block)."""
    return _with_nulls(ohlcv(N_ROWS, seed=99))


@pytest.fixture(scope="module")
def big_nan(big: pl.DataFrame) -> pl.DataFrame:
    return nan_at(big, "close", 180_000)


#: NaN (canonical, negative, with a payload; users' data may hold any), ±inf, ±1e308 (sums
#: overflow, then meet the opposite infinity: NaN made by arithmetic) and zeros of both signs.
SPECIALS = np.concatenate(
    [
        np.array(
            [0x7FF8_0000_0000_0000, 0xFFF8_0000_0000_0000, 0x7FF8_0000_0000_BEEF], np.uint64
        ).view(np.float64),
        np.array([np.inf, -np.inf, 1e308, -1e308, 0.0, -0.0]),
    ]
)
CANONICAL_NAN = 0x7FF8_0000_0000_0000


@pytest.fixture(scope="module")
def big_specials() -> pl.DataFrame:
    """`big`'s rows and nulls with `SPECIALS` in every column: at the first rows (inside warm-ups
    and seeds), on both sides of scan-block (1024) and chained-unit (8192) boundaries, and at
    random rows; each column at other rows."""
    rng = np.random.default_rng(17)
    cols = ohlcv_arrays(N_ROWS, np.random.default_rng(99))
    for k, name in enumerate(cols):
        edges = [b + d for b in (1024, 8192, 16_384, 150_016) for d in (-1 - k, k)]
        rows = np.array([k, 3 + 2 * k, *edges, *rng.integers(0, N_ROWS, 8)])
        cols[name][rows] = SPECIALS[rng.integers(0, len(SPECIALS), len(rows))]
    bits = cols["close"].view(np.uint64)
    assert (bits == 0xFFF8_0000_0000_0000).any() or (bits == 0x7FF8_0000_0000_BEEF).any()
    return _with_nulls(pl.DataFrame(cols))


@pytest.fixture(scope="module")
def single_thread(big: pl.DataFrame) -> dict[str, pl.Series]:
    threadx.set_threads(1)
    try:
        return {name: big.select(expr(name))["out"] for name in NAMES}
    finally:
        threadx.set_threads(None)


# --------------------------------------------------------------------------------------------
# set_threads
# --------------------------------------------------------------------------------------------


def test_set_threads_validation(reset_threads) -> None:
    assert threadx.get_threads() is None or "THREADX_NUM_THREADS" in os.environ
    for n in (1, 7, 1024):
        threadx.set_threads(n)
        assert threadx.get_threads() == n
        # a forced count is used as is, even for a tiny input
        assert threadx.optimal_workers(10) == n
    threadx.set_threads(None)
    if "THREADX_NUM_THREADS" not in os.environ:
        assert threadx.get_threads() is None
    for bad in (0, 1025, True, 2.0, "4"):
        with pytest.raises(ValueError, match=r"threadx\.set_threads"):
            threadx.set_threads(bad)
    threadx.set_threads(3)
    with pytest.raises((ValueError, OverflowError)):
        threadx.set_threads(-1)
    assert threadx.get_threads() == 3  # a rejected value changes nothing


@pytest.mark.parametrize("name", NAMES)
def test_thread_counts_give_identical_bits(name, big, single_thread, reset_threads) -> None:
    want = single_thread[name]
    assert len(want) == N_ROWS
    for n in THREADS:
        threadx.set_threads(n)
        assert_bits_equal(big.select(expr(name))["out"], want, f"{name} threads={n}")
    threadx.set_threads(None)  # the optimizer's choice
    assert_bits_equal(big.select(expr(name))["out"], want, f"{name} auto")


@pytest.mark.parametrize("name", NAMES)
def test_thread_counts_with_nan(name, big_nan, big_specials, reset_threads) -> None:
    """A NaN, and NaN of both signs and with a payload, ±inf, ±1e308 and zeros everywhere: the same
    bits at every worker count, NaN signs and payloads included, and every NaN written is the
    canonical quiet NaN (docs/architecture.md, "Non-finite values")."""
    for what, df in (("NaN", big_nan), ("specials", big_specials)):
        threadx.set_threads(1)
        want = df.select(expr(name))["out"]
        for n in (2, 7, 16):
            threadx.set_threads(n)
            assert_bits_equal(df.select(expr(name))["out"], want, f"{name} {what} threads={n}")
        for k, f in fields(want).items():
            if f.dtype != pl.Float64:
                continue
            v = f.to_numpy()
            nan = np.isnan(v) & ~f.is_null().to_numpy()
            bad = np.flatnonzero(nan & (np.ascontiguousarray(v).view(np.uint64) != CANONICAL_NAN))
            assert bad.size == 0, (
                f"{name} {what} {k}: {bad.size} NaNs are not the canonical one, first at row "
                f"{bad[0]}: {int(v.view(np.uint64)[bad[0]]):#018x}"
            )


@pytest.mark.parametrize("rows", [1, 40, 1023, 1025, 5_000])
def test_forced_threads_split_small_inputs(rows, big, reset_threads) -> None:
    small = big.slice(1_000, rows)
    threadx.set_threads(1)
    want = {name: small.select(expr(name))["out"] for name in NAMES}
    for n in (4, 16, 1024):
        threadx.set_threads(n)
        for name in NAMES:
            assert_bits_equal(small.select(expr(name))["out"], want[name], f"{name} {rows} {n}")


# --------------------------------------------------------------------------------------------
# THREADX_NUM_THREADS in a fresh process
# --------------------------------------------------------------------------------------------

TESTS_DIR = Path(__file__).resolve().parent
_CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[3])  # the tests folder, for helpers
import polars as pl, threadx
from helpers import digest, indicator_expr

PARAMS = json.loads(sys.argv[2])

df = pl.read_ipc(sys.argv[1])
report = {"threads": threadx.get_threads()}
for name, params in PARAMS.items():
    out = df.select(indicator_expr(name, params).alias("out"))["out"]
    report[name] = digest(out)
threadx.set_threads(2)
report["after_set"] = threadx.get_threads()
print(json.dumps(report))
"""


@pytest.mark.parametrize("env_threads", ["1", "5"])
def test_env_var_threads_in_subprocess(env_threads, big, single_thread, tmp_path) -> None:
    path = tmp_path / "big.arrow"
    big.write_ipc(path)
    env = {**os.environ, "THREADX_NUM_THREADS": env_threads}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _CHILD,
            str(path),
            json.dumps({n: BLOCK_PARAMS.get(n, {}) for n in NAMES}),
            str(TESTS_DIR),
        ],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["threads"] == int(env_threads)  # the variable is honoured
    assert report["after_set"] == 2  # set_threads takes precedence over it
    for name in NAMES:
        assert report[name] == digest(single_thread[name]), (
            f"{name} THREADX_NUM_THREADS={env_threads}"
        )


# --------------------------------------------------------------------------------------------
# chunking
# --------------------------------------------------------------------------------------------


def _chunked(df: pl.DataFrame, sizes: list[int]) -> pl.DataFrame:
    assert sum(sizes) == df.height
    parts, at = [], 0
    for s in sizes:
        parts.append(df.slice(at, s))
        at += s
    out = pl.concat(parts, rechunk=False)
    assert out["close"].n_chunks() == len(sizes)
    return out


CHUNKINGS = {
    "1": [N_ROWS],
    "2": [70_001, N_ROWS - 70_001],
    "7": [1, 1023, 1025, 50_000, 3, 99_999, N_ROWS - (1 + 1023 + 1025 + 50_000 + 3 + 99_999)],
}


@pytest.mark.parametrize("chunks", list(CHUNKINGS))
def test_chunkings_give_identical_bits(chunks, big, single_thread, reset_threads) -> None:
    df = _chunked(big, CHUNKINGS[chunks])
    for threads in (None, 3):
        threadx.set_threads(threads)
        for name in NAMES:
            got = df.select(expr(name))["out"]
            assert_bits_equal(got, single_thread[name], f"{name} {chunks} chunks, {threads}")


def test_chunk_boundary_inside_warm_up_and_null_runs(reset_threads) -> None:
    """Tiny chunks, some made of nulls only, cut through the warm-up."""
    df = ohlcv(3_000, seed=4).with_columns(
        pl.when(pl.int_range(pl.len()).is_between(5, 40))
        .then(None)
        .otherwise(pl.col("close"))
        .alias("close")
    )
    want = {name: df.select(expr(name))["out"] for name in NAMES}
    chunked = _chunked(df, [2, 3, 10, 30, 1, 2_954])
    for name in NAMES:
        assert_bits_equal(chunked.select(expr(name))["out"], want[name], name)


# --------------------------------------------------------------------------------------------
# .over() versus per-group runs
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def many_symbols() -> pl.DataFrame:
    rng = np.random.default_rng(2024)
    parts = []
    for i in range(120):
        n = int(
            rng.choice([0, 1, 5, 30, int(rng.integers(30, 3_000))], p=[0.05, 0.05, 0.1, 0.1, 0.7])
        )
        if n == 0:
            continue
        g = ohlcv(n, seed=1_000 + i).with_columns(symbol=pl.lit(f"S{i:03d}"))
        parts.append(g)
    df = pl.concat(parts)
    # a few nulls, then interleave the symbols
    df = null_where(df, "high", rng.random(df.height) < 0.01)
    return df[rng.permutation(df.height)].with_row_index("row")


@pytest.mark.parametrize("threads", [None, 4])
def test_over_equals_per_group_runs(threads, many_symbols, reset_threads) -> None:
    threadx.set_threads(threads)
    groups = many_symbols.partition_by("symbol", maintain_order=True)
    assert len(groups) > 80
    over = many_symbols.select([expr(n).over("symbol").alias(n) for n in NAMES])
    rows = pl.concat([g.select("row") for g in groups])["row"].to_numpy()
    for name in NAMES:
        pieces = [g.select(expr(name))["out"] for g in groups]
        per_group = pl.concat(pieces)
        # put the per-group rows back in frame order
        order = np.argsort(rows, kind="stable")
        want = per_group.gather(pl.Series(order, dtype=pl.UInt32))
        assert_bits_equal(over[name], want.alias(name), f"{name} over, threads={threads}")
