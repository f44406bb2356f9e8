"""Built-in demo data and the ``python -m threadx demo`` walk-through.

The OHLCV frame is generated in code from a fixed seed (geometric random walks with intraday
ranges and volumes), so the demo needs no download and prints the same numbers everywhere.
"""

from __future__ import annotations

import math
import random
from datetime import date, timedelta

import polars as pl

DEFAULT_SYMBOLS = ("ACME", "GLOBX", "INITECH", "UMBRL")


def ohlcv(
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS, rows: int = 250, seed: int = 7
) -> pl.DataFrame:
    """A synthetic daily OHLCV frame: one row per (symbol, business day), sorted by symbol, date."""
    rng = random.Random(seed)
    start = date(2024, 1, 1)
    days = []
    d = start
    while len(days) < rows:
        if d.weekday() < 5:
            days.append(d)
        d += timedelta(days=1)
    records: dict[str, list] = {
        k: [] for k in ("symbol", "date", "open", "high", "low", "close", "volume")
    }
    for i, sym in enumerate(symbols):
        price = 20.0 + 40.0 * i + rng.random() * 10.0
        vol_scale = 0.01 + 0.01 * rng.random()
        for day in days:
            open_ = price
            close = open_ * math.exp(rng.gauss(0.0003, vol_scale))
            high = max(open_, close) * (1 + abs(rng.gauss(0, vol_scale / 2)))
            low = min(open_, close) * (1 - abs(rng.gauss(0, vol_scale / 2)))
            volume = float(int(1e6 * math.exp(rng.gauss(0, 0.4))))
            for k, v in zip(records, (sym, day, open_, high, low, close, volume)):
                records[k].append(v)
            price = close
    return pl.DataFrame(records).with_columns(
        pl.col(c).round(4) for c in ("open", "high", "low", "close")
    )


def indicators_frame(df: pl.DataFrame) -> pl.DataFrame:
    """A few indicators per symbol, computed with ``.over("symbol")`` in one lazy query."""
    import threadx  # noqa: F401  (registers the namespace)

    close = pl.col("close")
    return (
        df.lazy()
        .with_columns(
            close.threadx.sma(20).over("symbol").alias("sma20"),
            close.threadx.ema(20).over("symbol").alias("ema20"),
            close.threadx.rsi(14).over("symbol").alias("rsi14"),
            close.threadx.atr(high="high", low="low", period=14).over("symbol").alias("atr14"),
            close.threadx.bollinger(20, 2.0).over("symbol").alias("bb"),
            close.threadx.macd().over("symbol").alias("macd"),
            close.threadx.stoch(high="high", low="low").over("symbol").alias("stoch"),
            close.threadx.obv(volume="volume").over("symbol").alias("obv"),
        )
        .unnest("bb", "macd", "stoch")
        .collect()
    )


def run() -> None:
    import threadx

    df = ohlcv()
    print(
        f"threadx {threadx.__version__} demo — synthetic OHLCV, {df.height} rows, "
        f"{df['symbol'].n_unique()} symbols (seed 7)\n"
    )
    print(df.head(3), "\n")
    out = indicators_frame(df)
    cols = [
        "symbol",
        "date",
        "close",
        "sma20",
        "ema20",
        "rsi14",
        "atr14",
        "middle",
        "upper",
        "lower",
        "macd",
        "signal",
        "hist",
        "slowk",
        "slowd",
        "obv",
    ]
    with pl.Config(tbl_cols=-1, tbl_rows=12, tbl_width_chars=200, float_precision=3):
        print("First rows of one symbol (warm-up rows are null):")
        print(out.filter(pl.col("symbol") == df["symbol"][0]).select(cols).head(4), "\n")
        print("Last row per symbol:")
        print(out.group_by("symbol", maintain_order=True).tail(1).select(cols), "\n")
        summary = out.group_by("symbol", maintain_order=True).agg(
            pl.col("rsi14").null_count().alias("rsi_warmup_rows"),
            pl.col("rsi14").mean().alias("mean_rsi"),
            (pl.col("close") > pl.col("upper")).sum().alias("closes_above_upper_band"),
        )
        print("Per-symbol summary:")
        print(summary)
