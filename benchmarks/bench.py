"""threadx against its peers, in one run: TA-Lib (NumPy), Polars' native rolling/ewm and
polars-talib, on one long series and on many symbols with ``.over()``.

    python benchmarks/bench.py            # 10M rows and 2,000 x 1,000 (about a minute)
    python benchmarks/bench.py --rows 1000000 --runs 3

Times are the best of ``--runs`` after one warm-up call. threadx and the Polars peers are timed
through ``DataFrame.select`` (what a user runs), TA-Lib on the NumPy array. The memory-copy floor is
``np.copyto`` of the input (16 bytes moved per row); Bollinger moves at least 32 bytes per row
(8 in, 24 out), so its floor is twice the copy time. Targets (issue #2) are printed as ratios
measured in this run; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np
import polars as pl
import threadx

try:
    import talib
except ImportError:  # pragma: no cover - optional peer
    talib = None
try:
    import polars_talib  # noqa: F401  (registers pl.Expr.ta)

    HAVE_PLTA = True
except ImportError:  # pragma: no cover - optional peer
    HAVE_PLTA = False


def best_of(fn: Callable[[], object], runs: int) -> float:
    fn()
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def interleaved(cases: list[tuple], rounds: int, runs: int) -> dict[str, dict[str, list[float]]]:
    """Best-of-`runs` times (ms) of each case's two calls, per round, rounds interleaved.

    `cases` holds `(family, name, threadx call, peer call, target ratio or None)`; the result maps
    each name to its per-round times, `{"threadx": [...], "peer": [...]}`.
    """
    times = {c[1]: {"threadx": [], "peer": []} for c in cases}
    for _ in range(rounds):
        for _, name, ours, peer, _ in cases:
            times[name]["threadx"].append(best_of(ours, runs))
            times[name]["peer"].append(best_of(peer, runs))
    return times


def report_ratios(
    cases: list[tuple], times: dict[str, dict[str, list[float]]], peer: str = "TA-Lib"
) -> None:
    """One line per case: best times, their ratio, the spread of per-round ratios, the verdict.
    ``peer`` heads the peer's column."""
    head = (
        f"{'family':<10} {'case':<24} {'threadx ms':>10} {peer + ' ms':>10} {'ratio':>7} "
        f"{'spread':>13} {'target':>7}  verdict"
    )
    print(head)
    print("-" * len(head))
    for family, name, _, _, target in cases:
        t, ta = np.array(times[name]["threadx"]), np.array(times[name]["peer"])
        ratio = t.min() / ta.min()
        per_round = t / ta
        verdict = "-" if target is None else ("met" if ratio <= target else "missed")
        shown = "-" if target is None else f"{target:.1f}x"
        print(
            f"{family:<10} {name:<24} {t.min():>10.2f} {ta.min():>10.2f} {ratio:>6.2f}x "
            f"{per_round.min():>5.2f}-{per_round.max():.2f}x {shown:>7}  {verdict}"
        )


def ohlcv(n: int, seed: int = 42) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    spread = np.abs(rng.normal(0, 0.005, n)) * close
    return pl.DataFrame(
        {
            "close": close,
            "high": close + spread,
            "low": close - spread,
            "volume": rng.integers(1_000, 1_000_000, n).astype(np.float64),
        }
    )


def single_series(n: int, runs: int) -> list[dict]:
    df = ohlcv(n)
    c, h, lo, v = (df[k].to_numpy() for k in ("close", "high", "low", "volume"))
    col = pl.col("close")

    def sel(*exprs: pl.Expr) -> Callable[[], object]:
        return lambda: df.select(*exprs)

    cases: list[tuple[str, Callable, Callable | None, Callable | None, Callable | None]] = [
        (
            "bollinger(20, 2)",
            sel(col.threadx.bollinger(20, 2.0)),
            talib and (lambda: talib.BBANDS(c, 20, 2.0, 2.0, 0)),
            sel(col.rolling_mean(20).alias("m"), col.rolling_std(20, ddof=0).alias("s")),
            HAVE_PLTA and sel(col.ta.bbands(20, 2.0, 2.0)),
        ),
        (
            "sma(30)",
            sel(col.threadx.sma(30)),
            talib and (lambda: talib.SMA(c, 30)),
            sel(col.rolling_mean(30)),
            HAVE_PLTA and sel(col.ta.sma(30)),
        ),
        (
            "ema(30)",
            sel(col.threadx.ema(30)),
            talib and (lambda: talib.EMA(c, 30)),
            sel(col.ewm_mean(span=30, adjust=False)),
            HAVE_PLTA and sel(col.ta.ema(30)),
        ),
        (
            "wma(30)",
            sel(col.threadx.wma(30)),
            talib and (lambda: talib.WMA(c, 30)),
            None,
            HAVE_PLTA and sel(col.ta.wma(30)),
        ),
        (
            "rolling_std(5)",
            sel(col.threadx.rolling_std(5)),
            talib and (lambda: talib.STDDEV(c, 5, 1.0)),
            sel(col.rolling_std(5, ddof=0)),
            HAVE_PLTA and sel(col.ta.stddev(5, 1.0)),
        ),
        (
            "rsi(14)",
            sel(col.threadx.rsi(14)),
            talib and (lambda: talib.RSI(c, 14)),
            None,
            HAVE_PLTA and sel(col.ta.rsi(14)),
        ),
        (
            "roc(10)",
            sel(col.threadx.roc(10)),
            talib and (lambda: talib.ROC(c, 10)),
            sel((col / col.shift(10) - 1) * 100),
            HAVE_PLTA and sel(col.ta.roc(10)),
        ),
        (
            "macd(12, 26, 9)",
            sel(col.threadx.macd()),
            talib and (lambda: talib.MACD(c, 12, 26, 9)),
            None,
            HAVE_PLTA and sel(col.ta.macd(12, 26, 9)),
        ),
        (
            "atr(14)",
            sel(col.threadx.atr(high="high", low="low", period=14)),
            talib and (lambda: talib.ATR(h, lo, c, 14)),
            None,
            HAVE_PLTA and sel(col.ta.atr("high", "low", 14)),
        ),
        (
            "stoch(5, 3, 3)",
            sel(col.threadx.stoch(high="high", low="low")),
            talib and (lambda: talib.STOCH(h, lo, c, 5, 3, 0, 3, 0)),
            None,
            HAVE_PLTA and sel(col.ta.stoch("high", "low", 5, 3, 0, 3, 0)),
        ),
        (
            "obv",
            sel(col.threadx.obv(volume="volume")),
            talib and (lambda: talib.OBV(c, v)),
            None,
            HAVE_PLTA and sel(col.ta.obv("volume")),
        ),
    ]
    rows = []
    for name, ours, ta, native, plta in cases:
        row = {"case": name, "rows": n, "threadx": best_of(ours, runs)}
        for key, fn in (("talib", ta), ("polars", native), ("polars_talib", plta)):
            row[key] = best_of(fn, runs) if fn else None
        rows.append(row)
    return rows


def grouped(symbols: int, rows_per: int, runs: int) -> list[dict]:
    rng = np.random.default_rng(7)
    n = symbols * rows_per
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    df = pl.DataFrame({"symbol": np.repeat(np.arange(symbols), rows_per), "close": close})
    col = pl.col("close")
    cases = [
        (
            "sma(20).over",
            col.threadx.sma(20).over("symbol"),
            col.rolling_mean(20).over("symbol"),
            col.ta.sma(20).over("symbol") if HAVE_PLTA else None,
        ),
        (
            "bollinger(20).over",
            col.threadx.bollinger(20).over("symbol"),
            pl.struct(col.rolling_mean(20), col.rolling_std(20, ddof=0).alias("s")).over("symbol"),
            col.ta.bbands(20).over("symbol") if HAVE_PLTA else None,
        ),
        (
            "ema(20).over",
            col.threadx.ema(20).over("symbol"),
            col.ewm_mean(span=20, adjust=False).over("symbol"),
            col.ta.ema(20).over("symbol") if HAVE_PLTA else None,
        ),
        (
            "rsi(14).over",
            col.threadx.rsi(14).over("symbol"),
            None,
            col.ta.rsi(14).over("symbol") if HAVE_PLTA else None,
        ),
    ]
    out = []

    def timed(expr: pl.Expr | None) -> float | None:
        return None if expr is None else best_of(lambda: df.select(expr), runs)

    for name, ours, native, plta in cases:
        row = {"case": name, "rows": f"{symbols}x{rows_per}", "threadx": timed(ours)}
        row.update(talib=None, polars=timed(native), polars_talib=timed(plta))
        out.append(row)
    return out


def fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:9.2f}"


def ratio(a: float, b: float | None) -> str:
    return "-" if not b else f"{a / b:5.2f}x"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--symbols", type=int, default=2_000)
    ap.add_argument("--rows-per-symbol", type=int, default=1_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    src = np.random.default_rng(0).normal(size=args.rows)
    dst = np.empty_like(src)
    copy_ms = best_of(lambda: np.copyto(dst, src), args.runs)
    print(
        f"threadx {threadx.__version__}, polars {pl.__version__}, talib "
        f"{getattr(talib, '__version__', 'absent')}, workers for {args.rows:,} rows: "
        f"{threadx.optimal_workers(args.rows)}"
    )
    print(
        f"memory copy of {args.rows:,} f64 (16 B/row moved): {copy_ms:.2f} ms; "
        f"Bollinger floor (32 B/row): {2 * copy_ms:.2f} ms\n"
    )

    results = single_series(args.rows, args.runs) + grouped(
        args.symbols, args.rows_per_symbol, args.runs
    )
    head = f"{'case':<20} {'rows':>10} {'threadx':>9} {'TA-Lib':>9} {'polars':>9} {'pl-talib':>9}   vs TA-Lib  vs polars  vs pl-talib"
    print(head)
    print("-" * len(head))
    for r in results:
        print(
            f"{r['case']:<20} {r['rows']!s:>10} {fmt(r['threadx'])} {fmt(r['talib'])} "
            f"{fmt(r['polars'])} {fmt(r['polars_talib'])}   {ratio(r['threadx'], r['talib']):>9}"
            f"  {ratio(r['threadx'], r['polars']):>9}  {ratio(r['threadx'], r['polars_talib']):>10}"
        )
    print("\nTargets (issue #2), ratios from this run:")
    by = {r["case"]: r for r in results}
    bb = by["bollinger(20, 2)"]
    if bb["talib"]:
        print(f"  bollinger <= 0.5 x TA-Lib BBANDS: {bb['threadx'] / bb['talib']:.2f}x")
    print(
        f"  bollinger <= 2 x copy floor ({2 * copy_ms:.2f} ms): {bb['threadx'] / (2 * copy_ms):.2f}x floor"
    )
    for k in ("sma(30)", "ema(30)", "rsi(14)", "macd(12, 26, 9)", "atr(14)"):
        if by[k]["talib"]:
            print(f"  {k} no slower than TA-Lib: {by[k]['threadx'] / by[k]['talib']:.2f}x")
    o = by["sma(20).over"]
    print(
        f"  sma(20).over no slower than polars rolling_mean(20).over: {o['threadx'] / o['polars']:.2f}x"
    )


if __name__ == "__main__":
    main()
