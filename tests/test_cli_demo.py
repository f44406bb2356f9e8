"""The demo data and the command line."""

from __future__ import annotations

import subprocess
import sys

import polars as pl
import threadx
from threadx.demo import indicators_frame, ohlcv


def test_demo_data_is_reproducible_and_well_formed():
    a, b = ohlcv(), ohlcv()
    assert a.equals(b)
    assert not a.equals(ohlcv(seed=8))
    assert a.height == 4 * 250
    assert a.filter(pl.col("high") < pl.max_horizontal("open", "close")).height == 0
    assert a.filter(pl.col("low") > pl.min_horizontal("open", "close")).height == 0
    assert (a["volume"] > 0).all()


def test_demo_indicators_have_warmup_per_symbol():
    out = indicators_frame(ohlcv())
    warm = out.group_by("symbol").agg(
        pl.col("sma20").null_count(), pl.col("rsi14").null_count(), pl.col("macd").null_count()
    )
    assert warm["sma20"].to_list() == [19] * 4
    assert warm["rsi14"].to_list() == [14] * 4
    assert warm["macd"].to_list() == [33] * 4


def test_python_m_threadx_demo_runs():
    proc = subprocess.run(
        [sys.executable, "-m", "threadx", "demo"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ACME" in proc.stdout and "rsi14" in proc.stdout
    assert threadx.__version__ in proc.stdout


def test_version_subcommand_and_bad_subcommand():
    ok = subprocess.run(
        [sys.executable, "-m", "threadx", "version"], check=False, capture_output=True, text=True
    )
    assert ok.returncode == 0 and ok.stdout.strip() == threadx.__version__
    bad = subprocess.run(
        [sys.executable, "-m", "threadx", "nope"], check=False, capture_output=True, text=True
    )
    assert bad.returncode != 0
