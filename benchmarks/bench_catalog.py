"""Catalog functions against their TA-Lib twins, in one run: the TA-Lib waves' speed targets.

    python benchmarks/bench_catalog.py                      # the wave-A list, 10M rows
    python benchmarks/bench_catalog.py --all --rows 1000000 # every function with a TA-Lib twin
    python benchmarks/bench_catalog.py kama t3 --rounds 9   # chosen functions

Every function runs with TA-Lib 0.8.1's defaults (threadx's defaults are TA-Lib's), so one
generic call covers the whole catalog: threadx through ``DataFrame.select`` with the default thread
count (what a user gets), TA-Lib on the NumPy arrays in its input order. The target is
<= 0.6x TA-Lib's time for every windowed or scan-based function; pure row maps (price transforms,
math operators and transforms) are reported without a target. The machine is shared and noisy:
each round times every case of both libraries back to back (best of ``--runs``), rounds are
interleaved, and the report gives the ratio of the best times over all rounds plus the spread of
the per-round ratios. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse

import numpy as np
import polars as pl
import talib
import threadx
from bench import interleaved, ohlcv, report_ratios

#: The functions the wave-A issue names, with the parameters that differ from the defaults.
WAVE_A = {
    "bollinger": {"matype": 1},  # BBANDS with a non-SMA middle (EMA)
    "kama": {},
    "t3": {},
    "linearreg": {},
    "correl": {},
    "percentile": {},
    "midprice": {},
    "trange": {},
    "adr": {},
}
TARGET = 0.6
#: The frame's column for each registry input; MAVP's ``periods`` are random periods in [2, 30].
COLUMN = {"real": "close", "real0": "close", "real1": "open", "periods": "periods"}


def market(rows: int) -> pl.DataFrame:
    df = ohlcv(rows)
    rng = np.random.default_rng(3)
    return df.with_columns(
        open=pl.col("close").shift(1, fill_value=pl.col("close").first()),
        periods=pl.Series(rng.integers(2, 31, rows).astype(np.float64)),
    )


def case(row: dict, params: dict, arrays: dict[str, np.ndarray]):
    """(threadx expression, TA-Lib call) for one catalog row at `params` over the defaults."""
    cols = [COLUMN.get(i, i) for i in row["inputs"]]
    expr = getattr(threadx, row["name"])(*cols, **params)
    by_name = {p["name"]: p for p in row["params"]}
    ta_kwargs = {by_name[k]["talib"]: v for k, v in params.items() if by_name[k]["talib"]}
    fn = getattr(talib, row["talib"])
    ins = [arrays[c] for c in cols]
    return expr, (lambda: fn(*ins, **ta_kwargs))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("names", nargs="*", help="catalog names (default: the wave-A list)")
    ap.add_argument("--all", action="store_true", help="every function with a TA-Lib twin")
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=3, help="best-of per library per round")
    args = ap.parse_args()

    catalog = {r["name"]: r for r in threadx.catalog().iter_rows(named=True) if r["talib"]}
    if args.all:
        chosen = {n: WAVE_A.get(n, {}) for n in catalog}
    else:
        chosen = {n: WAVE_A.get(n, {}) for n in (args.names or WAVE_A)}
    missing = [n for n in chosen if n not in catalog]
    if missing:
        raise SystemExit(f"not in the catalog (or no TA-Lib twin): {', '.join(missing)}")

    df = market(args.rows)
    arrays = {c: df[c].to_numpy() for c in df.columns}
    cases = []
    for name, params in chosen.items():
        row = catalog[name]
        expr, ta = case(row, params, arrays)
        label = name + (
            "(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")" if params else ""
        )
        target = None if row["composition"].startswith("elementwise map") else TARGET
        cases.append(
            (row["group"].split()[0].lower(), label, lambda e=expr: df.select(e), ta, target)
        )

    times = interleaved(cases, args.rounds, args.runs)
    print(
        f"threadx {threadx.__version__} ({threadx.optimal_workers(args.rows)} workers for "
        f"{args.rows:,} rows), TA-Lib {talib.__version__}, polars {pl.__version__}; "
        f"{args.rounds} interleaved rounds, best of {args.runs} each\n"
    )
    report_ratios(cases, times)


if __name__ == "__main__":
    main()
