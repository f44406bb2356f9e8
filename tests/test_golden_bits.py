"""Golden bits through Polars: fingerprints of every output of the 13 original indicators on data
with nulls, NaN, ±inf, prices near 1e6 and near 1e-7 and multi-chunk columns, recorded with the
build from before the registry refactor (commit 3806197) and checked against every later build.

The Rust golden test (`src/exec/golden_tests.rs`) pins the kernels; this one pins the whole call
path as users see it: the plugin's null compaction and scatter, warm-up nulls, dtype handling,
the generated Python API, one and several threads. It deliberately imports nothing from
`helpers.py`, so it runs unchanged on the old package it was recorded with:
`THREADX_BLESS_GOLDEN=1 PYTHONPATH=<old package> python -m pytest tests/test_golden_bits.py`
rewrites `golden_bits_python.json` (only for a deliberate change of the spec; say why).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import threadx

GOLDEN = Path(__file__).with_name("golden_bits_python.json")
N = 3_000

# (indicator, positional inputs, parameter sets): the 13 indicators of the recording.
CASES = [
    ("sma", ("close",), [{"period": 2}, {"period": 30}, {"period": 250}]),
    ("ema", ("close",), [{"period": 2}, {"period": 30}, {"period": 1100}]),
    ("wma", ("close",), [{"period": 2}, {"period": 30}]),
    ("rolling_std", ("close",), [{"period": 2, "ddof": 0}, {"period": 20, "ddof": 1}]),
    ("zscore", ("close",), [{"period": 2}, {"period": 20}]),
    ("bollinger", ("close",), [{"period": 5, "std_dev": 1.5}, {"period": 20, "std_dev": 2.0}]),
    ("rsi", ("close",), [{"period": 2}, {"period": 14}]),
    ("roc", ("close",), [{"period": 1}, {"period": 10}]),
    (
        "macd",
        ("close",),
        [{"fast": 12, "slow": 26, "signal": 9}, {"fast": 2, "slow": 3, "signal": 1}],
    ),
    ("atr", ("high", "low", "close"), [{"period": 1}, {"period": 14}]),
    ("natr", ("high", "low", "close"), [{"period": 14}]),
    (
        "stoch",
        ("high", "low", "close"),
        [
            {"fastk_period": 5, "slowk_period": 3, "slowd_period": 3},
            {"fastk_period": 14, "slowk_period": 1, "slowd_period": 4},
        ],
    ),
    ("obv", ("close", "volume"), [{}]),
]


def _frame(kind: str) -> pl.DataFrame:
    rng = np.random.default_rng(20261202 + len(kind))
    level = {"near_1e6": 1e6, "near_1e-7": 1e-7}.get(kind, 100.0)
    step = 1e-8 if kind == "near_1e6" else 0.01
    close = level * np.cumprod(1.0 + step * rng.standard_normal(N))
    high = close * (1.0 + 0.004 * rng.random(N))
    low = close * (1.0 - 0.004 * rng.random(N))
    volume = np.floor(rng.random(N) * 1e6)
    cols = {"close": close, "high": high, "low": low, "volume": volume}
    if kind == "specials":
        for k, name in enumerate(cols):
            for j, row in enumerate((11, 700, 701, 1999, 2900)):
                cols[name][(row + 13 * k) % N] = (np.nan, np.inf, -np.inf, 0.0)[(j + k) % 4]
    df = pl.DataFrame(cols)
    if kind in ("nulls", "specials"):
        # Nulls in every column at different rows, and a run of nulls in the close.
        masks = {name: rng.random(N) < 0.03 for name in cols}
        masks["close"][1500:1540] = True
        df = df.with_columns(
            pl.when(pl.Series(m)).then(None).otherwise(pl.col(c)).alias(c) for c, m in masks.items()
        )
    return df


DATASETS = ["walk", "nulls", "specials", "near_1e6", "near_1e-7"]


def _digest(s: pl.Series) -> str:
    """sha256 over every field's null mask and the bits of its values, every NaN hashed alike."""
    h = hashlib.sha256()
    parts = [s.struct.field(f) for f in s.struct.fields] if s.dtype == pl.Struct else [s]
    for f in parts:
        nulls = f.is_null().to_numpy()
        values = f.to_numpy().astype(np.float64)[~nulls]
        values[np.isnan(values)] = np.nan
        h.update(np.packbits(nulls).tobytes())
        h.update(np.ascontiguousarray(values).view(np.uint64).tobytes())
    return h.hexdigest()


def _key(name: str, params: dict, dataset: str) -> str:
    return f"{name}({','.join(f'{k}={v}' for k, v in params.items())}) {dataset}"


def _compute(threads: int, chunks: int) -> dict[str, str]:
    threadx.set_threads(threads)
    out = {}
    try:
        for ds in DATASETS:
            df = _frame(ds)
            if chunks > 1:
                step = -(-df.height // chunks)
                df = pl.concat(
                    [df.slice(i, step) for i in range(0, df.height, step)], rechunk=False
                )
            exprs = {
                _key(name, params, ds): getattr(threadx, name)(*inputs, **params)
                for name, inputs, sets in CASES
                for params in sets
            }
            res = df.select(**exprs)
            out.update({k: _digest(res[k]) for k in exprs})
    finally:
        threadx.set_threads(None)
    return out


def test_golden_bits_through_polars():
    if os.environ.get("THREADX_BLESS_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps(_compute(1, 1), indent=1, sort_keys=True) + "\n")
    want = json.loads(GOLDEN.read_text())
    assert len(want) == sum(len(s) for _, _, s in CASES) * len(DATASETS)
    for threads, chunks in ((1, 1), (2, 1), (3, 4)):
        got = _compute(threads, chunks)
        moved = sorted(k for k in want if got.get(k) != want[k])
        assert not moved, f"threads={threads} chunks={chunks}: outputs moved: {moved[:10]}"


@pytest.mark.parametrize("dataset", DATASETS)
def test_golden_frames_have_what_they_claim(dataset):
    df = _frame(dataset)
    assert df.height == N
    if dataset in ("nulls", "specials"):
        assert df["close"].null_count() > 40 and df["high"].null_count() > 0
    if dataset == "specials":
        assert df["close"].is_nan().sum() > 0 and df["close"].is_infinite().sum() > 0
