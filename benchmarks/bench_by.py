"""Many series in one call (``by=``) and parameter sweeps, against what a user writes without
them, in one run:

- ``by="symbol"`` against ``.over("symbol")`` for sma, bollinger, rsi and atr on 2,000 symbols x
  1,000 rows, with sorted keys (target <= 0.3x) and interleaved ("shuffled") keys (reported);
- ``sma`` over 40 periods on 1M rows as one sweep against 40 expressions in one ``select``
  (target <= 1.0x) and against 40 separate calls (how much the sweep gains from reading its input
  once: the cache-reuse figure);
- with ``--gpu``: 100 periods x 10M rows as one sweep on the GPU against the CPU (for
  ``scripts/gpu_check.sh``; needs about 2 x 8 GB of host memory).

    python benchmarks/bench_by.py                    # about a minute on 2 cores
    python benchmarks/bench_by.py --rounds 5 --runs 3
    python benchmarks/bench_by.py --gpu --gpu-rows 10000000 --gpu-periods 100

Each case's two calls are timed alternately, ``--rounds`` times, each the best of ``--runs``
after a warm-up; the ratio is of the best times and the spread is the range of per-round ratios.
Nothing here asserts a time.
"""

from __future__ import annotations

import argparse

import numpy as np
import polars as pl
import threadx
from bench import best_of, interleaved, report_ratios  # the timing loop and the table


def panel(symbols: int, rows_per: int, *, interleave: bool) -> pl.DataFrame:
    """OHLC of ``symbols`` random walks of ``rows_per`` rows, symbol by symbol (sorted keys) or
    with the rows of all symbols shuffled through the frame."""
    rng = np.random.default_rng(7)
    n = symbols * rows_per
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    spread = np.abs(rng.normal(0, 0.005, n)) * close
    df = pl.DataFrame(
        {
            "symbol": np.repeat(np.arange(symbols), rows_per),
            "close": close,
            "high": close + spread,
            "low": close - spread,
        }
    )
    return df[rng.permutation(n)] if interleave else df


def by_cases(symbols: int, rows_per: int) -> list[tuple]:
    cases = []
    for label, interleave, target in (("sorted", False, 0.3), ("shuffled", True, None)):
        df = panel(symbols, rows_per, interleave=interleave)
        col = pl.col("close")
        for name, ours, peer in (
            ("sma(20)", col.threadx.sma(20, by="symbol"), col.threadx.sma(20).over("symbol")),
            (
                "bollinger(20)",
                col.threadx.bollinger(20, by="symbol"),
                col.threadx.bollinger(20).over("symbol"),
            ),
            ("rsi(14)", col.threadx.rsi(14, by="symbol"), col.threadx.rsi(14).over("symbol")),
            (
                "atr(14)",
                threadx.atr("high", "low", "close", 14, by="symbol"),
                threadx.atr("high", "low", "close", 14).over("symbol"),
            ),
        ):
            cases.append(
                (
                    "by=",
                    f"{name} {label}",
                    lambda df=df, e=ours: df.select(e),
                    lambda df=df, e=peer: df.select(e),
                    target,
                )
            )
    return cases


def sweep_cases(rows: int, periods: list[int]) -> list[tuple]:
    df = panel(1, rows, interleave=False)
    col = pl.col("close")
    sweep = col.threadx.sma(periods)
    exprs = [col.threadx.sma(p).alias(f"sma_{p}") for p in periods]
    return [
        (
            "sweep",
            f"sma x{len(periods)} vs select",
            lambda: df.select(sweep),
            lambda: df.select(exprs),
            1.0,
        ),
        (
            "sweep",
            f"sma x{len(periods)} vs calls",
            lambda: df.select(sweep),
            lambda: [df.select(e) for e in exprs],
            None,
        ),
    ]


def gpu_sweep(rows: int, n_periods: int, runs: int) -> None:
    st = threadx.gpu.status()
    if not st["available"]:
        print(f"\nGPU sweep: no GPU ({st['reason']})")
        return
    df = panel(1, rows, interleave=False)
    periods = list(range(5, 5 + 5 * n_periods, 5))
    e = {d: pl.col("close").threadx.sma(periods, device=d) for d in ("gpu", "cpu")}
    out = {d: df.select(x).to_series() for d, x in e.items()}
    same = all(
        np.array_equal(
            out["gpu"].struct.field(f).to_numpy().view(np.uint64),
            out["cpu"].struct.field(f).to_numpy().view(np.uint64),
        )
        for f in out["cpu"].struct.fields
    )
    del out
    t = {d: best_of(lambda x=x: df.select(x), runs) for d, x in e.items()}
    print(
        f"\nGPU sweep: sma x{n_periods} on {rows:,} rows: gpu {t['gpu']:.1f} ms, cpu "
        f"{t['cpu']:.1f} ms, gpu/cpu {t['gpu'] / t['cpu']:.2f}x, same bits: {same}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--symbols", type=int, default=2_000)
    ap.add_argument("--rows-per-symbol", type=int, default=1_000)
    ap.add_argument("--sweep-rows", type=int, default=1_000_000)
    ap.add_argument("--sweep-periods", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--gpu", action="store_true", help="also time a sweep on the GPU")
    ap.add_argument("--gpu-rows", type=int, default=10_000_000)
    ap.add_argument("--gpu-periods", type=int, default=100)
    args = ap.parse_args()
    print(
        f"threadx {threadx.__version__}, polars {pl.__version__}, {threadx.cpu_info().physical_cores} "
        f"physical cores; best of {args.runs}, {args.rounds} interleaved rounds"
    )
    periods = list(range(5, 5 + 5 * args.sweep_periods, 5))
    cases = by_cases(args.symbols, args.rows_per_symbol) + sweep_cases(args.sweep_rows, periods)
    times = interleaved(cases, args.rounds, args.runs)
    print(
        f"\nby=: {args.symbols:,} symbols x {args.rows_per_symbol:,} rows against .over(); "
        f"sweep: {args.sweep_rows:,} rows"
    )
    report_ratios(cases, times, peer="peer")
    if args.gpu:
        gpu_sweep(args.gpu_rows, args.gpu_periods, args.runs)


if __name__ == "__main__":
    main()
