"""Data and checks shared by the threadx.distributed tests (tests/test_distributed*.py).

A plain module, imported like ``helpers``: tiny datasets in the two source layouts, the
expressions the tests compute, the one-process reference, and a bit-for-bit frame comparison.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import threadx
from helpers import assert_bits_equal, ohlcv_arrays
from polars.testing import assert_series_equal

SYMBOLS = 20
ROWS = 300  # per symbol
DAYS = 3  # files of the time layout


def frame(seed: int = 7) -> pl.DataFrame:
    """``SYMBOLS`` random walks of ``ROWS`` rows, with the rows shuffled: every task must sort."""
    rng = np.random.default_rng(seed)
    parts = []
    for i in range(SYMBOLS):
        bars = ohlcv_arrays(ROWS, rng)
        parts.append(
            pl.DataFrame({"symbol": f"S{i:02d}", "ts": np.arange(ROWS, dtype=np.int64), **bars})
        )
    return pl.concat(parts).sample(fraction=1.0, shuffle=True, seed=seed)


def write_time_layout(df: pl.DataFrame, root: str) -> str:
    """Every file holds every symbol (one file per 'day': ts % DAYS)."""
    os.makedirs(root)
    for d in range(DAYS):
        df.filter(pl.col("ts") % DAYS == d).write_parquet(os.path.join(root, f"day{d}.parquet"))
    return root


def write_key_layout(df: pl.DataFrame, root: str) -> str:
    """Hive-partitioned by symbol (``symbol=S07/part0.parquet``): one directory per series."""
    for (sym,), g in df.group_by("symbol"):
        os.makedirs(os.path.join(root, f"symbol={sym}"))
        g.drop("symbol").write_parquet(os.path.join(root, f"symbol={sym}", "part0.parquet"))
    return root


def write_layouts(root: Path) -> dict[str, str]:
    """The test frame written under ``root`` in both source layouts: ``{"time": dir, "key": dir}``."""
    df = frame()
    return {
        "time": write_time_layout(df, str(root / "time")),
        "key": write_key_layout(df, str(root / "key")),
    }


def exprs() -> dict[str, pl.Expr]:
    """Windowed, recursive and multi-output indicators, and a plain Polars expression."""
    return {
        "sma": threadx.sma("close", 10),
        "rsi": pl.col("close").threadx.rsi(14),
        "atr": threadx.atr("high", "low", "close", 14),
        "bb": threadx.bollinger("close", 20, 2.0),
        "mean5": pl.col("close").rolling_mean(5),
    }


def reference(source: str, ex: dict[str, pl.Expr]) -> pl.DataFrame:
    """The one-process result the distributed run must equal."""
    return (
        pl.scan_parquet(source)
        .sort("symbol", "ts")
        .with_columns(**{name: e.over("symbol") for name, e in ex.items()})
        .collect()
    )


def assert_frames_bits_equal(got: pl.DataFrame, want: pl.DataFrame) -> None:
    """Same columns in the same order and dtypes, floats (plain or struct fields) with the same
    bits and null masks, every other column equal."""
    assert got.columns == want.columns, (got.columns, want.columns)
    assert got.height == want.height, (got.height, want.height)
    for name in want.columns:
        g, w = got[name], want[name]
        if w.dtype == pl.Float64 or w.dtype == pl.Struct:
            assert_bits_equal(g, w, name)
        else:
            assert_series_equal(g, w, check_exact=True)


def die_once(marker: str) -> Callable[[pl.Series], pl.Series]:
    """An identity function for ``map_batches`` that kills its own process (SIGKILL) the first
    time any process calls it, after writing its PID to ``marker``. A local function, so that
    cloudpickle ships it by value to workers that cannot import the tests."""

    def identity_or_die(s: pl.Series) -> pl.Series:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return s
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)
        return s  # not reached

    return identity_or_die


def assert_dead(pid: int) -> None:
    """``pid`` has exited (or is a zombie, dead but not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return
    assert state == "Z", f"process {pid}, which killed itself, is alive (state {state})"
