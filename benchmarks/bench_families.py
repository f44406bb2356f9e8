"""The kernel families' speed targets (the registry issue), as ratios to TA-Lib in one run.

    python benchmarks/bench_families.py                 # 10M rows, 7 interleaved rounds
    python benchmarks/bench_families.py --rows 1000000 --rounds 5

| family   | indicators measured | target          |
| -------- | ------------------- | --------------- |
| scans    | ema, macd, atr      | <= 0.6x TA-Lib  |
| extrema  | stoch               | <= 0.5x TA-Lib  |
| windowed | sma, bollinger      | <= 0.4x TA-Lib  |

threadx runs through ``DataFrame.select`` with the default thread count (what a user gets);
TA-Lib runs on the NumPy arrays. The machine is shared and noisy, so each round times every case
of both libraries back to back (best of ``--runs``), rounds are interleaved, and the report gives
the ratio of the best times over all rounds plus the spread of the per-round ratios. Nothing here
asserts a time: a target is met or missed in this run, and the output says which.
"""

from __future__ import annotations

import argparse

import polars as pl
import talib
import threadx
from bench import interleaved, ohlcv, report_ratios  # shared: the OHLCV walk, the timing loop

# (family, case, threadx expression builder, TA-Lib call builder, target ratio)
CASES = [
    ("scans", "ema(30)", lambda: pl.col("close").threadx.ema(30), lambda a: talib.EMA(a["c"], 30), 0.6),
    ("scans", "macd(12,26,9)", lambda: pl.col("close").threadx.macd(),
     lambda a: talib.MACD(a["c"], 12, 26, 9), 0.6),
    ("scans", "atr(14)", lambda: pl.col("close").threadx.atr("high", "low", 14),
     lambda a: talib.ATR(a["h"], a["l"], a["c"], 14), 0.6),
    ("extrema", "stoch(5,3,3)", lambda: pl.col("close").threadx.stoch("high", "low"),
     lambda a: talib.STOCH(a["h"], a["l"], a["c"], 5, 3, 0, 3, 0), 0.5),
    ("windowed", "sma(30)", lambda: pl.col("close").threadx.sma(30),
     lambda a: talib.SMA(a["c"], 30), 0.4),
    ("windowed", "bollinger(20,2)", lambda: pl.col("close").threadx.bollinger(20, 2.0),
     lambda a: talib.BBANDS(a["c"], 20, 2.0, 2.0, 0), 0.4),
]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--runs", type=int, default=3, help="best-of per library per round")
    args = ap.parse_args()

    df = ohlcv(args.rows)
    arrays = {"c": df["close"].to_numpy(), "h": df["high"].to_numpy(), "l": df["low"].to_numpy()}
    cases = []
    for family, name, make, ta, target in CASES:
        expr = make()
        cases.append((family, name, lambda e=expr: df.select(e), lambda f=ta: f(arrays), target))
    times = interleaved(cases, args.rounds, args.runs)
    print(
        f"threadx {threadx.__version__} ({threadx.optimal_workers(args.rows)} workers for "
        f"{args.rows:,} rows), TA-Lib {talib.__version__}, polars {pl.__version__}; "
        f"{args.rounds} interleaved rounds, best of {args.runs} each\n"
    )
    report_ratios(cases, times)


if __name__ == "__main__":
    main()
