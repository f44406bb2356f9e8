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

import numpy as np
import polars as pl
import talib
import threadx
from bench import best_of, ohlcv  # best-of-N wall time in ms and the OHLCV walk, shared

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
    times: dict[str, dict[str, list[float]]] = {
        name: {"threadx": [], "talib": []} for _, name, _, _, _ in CASES
    }
    for _ in range(args.rounds):
        for _, name, make, ta, _ in CASES:
            expr = make()
            times[name]["threadx"].append(best_of(lambda e=expr: df.select(e), args.runs))
            times[name]["talib"].append(best_of(lambda f=ta: f(arrays), args.runs))

    print(
        f"threadx {threadx.__version__} ({threadx.optimal_workers(args.rows)} workers for "
        f"{args.rows:,} rows), TA-Lib {talib.__version__}, polars {pl.__version__}; "
        f"{args.rounds} interleaved rounds, best of {args.runs} each\n"
    )
    head = (
        f"{'family':<9} {'case':<16} {'threadx ms':>10} {'TA-Lib ms':>10} {'ratio':>7} "
        f"{'spread':>13} {'target':>7}  verdict"
    )
    print(head)
    print("-" * len(head))
    for family, name, _, _, target in CASES:
        t, ta = np.array(times[name]["threadx"]), np.array(times[name]["talib"])
        ratio = t.min() / ta.min()
        per_round = t / ta
        verdict = "met" if ratio <= target else "missed"
        print(
            f"{family:<9} {name:<16} {t.min():>10.2f} {ta.min():>10.2f} {ratio:>6.2f}x "
            f"{per_round.min():>5.2f}-{per_round.max():.2f}x {target:>6.1f}x  {verdict}"
        )


if __name__ == "__main__":
    main()
