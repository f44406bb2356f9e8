"""Single device vs device sets on large inputs, in one run: the CPU, each GPU alone, every GPU
together (``device="gpus"``) and every GPU with the CPU (``device="all"``).

    python benchmarks/bench_multi.py                        # 1e7 and 5e7 rows, best of 3
    python benchmarks/bench_multi.py --sizes 2e7 --runs 5 --indicators bollinger,ema
    THREADX_SIMULATED_GPUS=1.0,0.5 python benchmarks/bench_multi.py --sizes 2e6

Before timing, ``threadx.gpu.profile_auto_balance`` stores split ratios for each indicator (its
name is the call's default workload tag), so the sets run in the measured ratios; every set call
then refines them. Each row reports the best time, the speed-up over the fastest single device
and whether the set's output has the single-device bits. Without real GPUs, simulated ones
(``THREADX_SIMULATED_GPUS``: the CPU kernels slowed to the given speeds) show how balancing and
fusion behave; their times say nothing about real GPUs and the table says so.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import polars as pl
import threadx
from bench import best_of, fmt, ohlcv  # shared with bench.py
from bench_gpu import CASES  # the indicators, their parameters and input columns


def columns(s: pl.Series) -> list[pl.Series]:
    return s.struct.unnest().get_columns() if s.dtype == pl.Struct else [s]


def same_bits(a: pl.Series, b: pl.Series) -> bool:
    """Same NaN rows and identical bits elsewhere (nulls read as NaN here)."""
    for ca, cb in zip(columns(a), columns(b)):
        x, y = ca.to_numpy(), cb.to_numpy()
        nx, ny = np.isnan(x), np.isnan(y)
        if not np.array_equal(nx, ny) or not np.array_equal(
            x.view(np.uint64)[~nx], y.view(np.uint64)[~ny]
        ):
            return False
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1e7,5e7")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--indicators", default="sma,bollinger,ema,rsi,macd,atr")
    args = ap.parse_args()
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    names = args.indicators.split(",")
    st = threadx.gpu.status()
    gpus = [f"gpu:{d['index']}" for d in st["devices"]]
    simulated = any(d["simulated"] for d in st["devices"])
    print(f"threadx {threadx.__version__}, polars {pl.__version__}, best of {args.runs}")
    cpu = threadx.cpu_info()
    print(f"CPU: {cpu.model} ({cpu.physical_cores} physical / {cpu.logical_cores} logical cores)")
    if not gpus:
        print(f"No GPU, real or simulated ({st['reason']}): nothing to split. Set e.g.")
        print("THREADX_SIMULATED_GPUS=1.0,0.5 to see balancing on simulated devices.")
        return 0
    for d in st["devices"]:
        print(f"gpu:{d['index']}: {d['name']}")
    if simulated:
        print("NOTE: simulated GPUs run the CPU kernels; these times are not GPU measurements.")
    placements = ["cpu", *gpus] + (["gpus"] if len(gpus) > 1 else []) + ["all"]
    print()
    print("| indicator | rows | " + " | ".join(placements) + " | best set vs best single |")
    print("| --- | ---: | " + " | ".join("---:" for _ in placements) + " | ---: |")
    ok = True
    for n in sizes:
        df = ohlcv(n)
        for name in names:
            params, cols, _ = CASES[name]
            fn = getattr(threadx, name)
            threadx.gpu.profile_auto_balance(
                sample_size=min(n, 1_000_000), runs=2, workload_tag=name
            )
            ms: dict[str, float] = {}
            base = None
            for p in placements:
                expr = fn(*cols, **params, device=p)
                out = df.select(expr).to_series(0)
                if base is None:
                    base = out
                elif not same_bits(base, out):
                    ok = False
                    print(f"  {name} on {p}: bits differ from the CPU", file=sys.stderr)
                ms[p] = best_of(lambda e=expr, d=df: d.select(e), args.runs)
            single = min(ms[p] for p in ["cpu", *gpus])
            best_set = min(ms[p] for p in placements if p in ("gpus", "all"))
            cells = " | ".join(fmt(ms[p]) for p in placements)
            print(f"| {name} | {n:,} | {cells} | {single / best_set:.2f}x |")
    print()
    print(f"bits equal across every placement: {'yes' if ok else 'NO'}")
    print("balance ratios now:", threadx.gpu.balance())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
