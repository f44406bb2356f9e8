"""threadx on the GPU against threadx on the CPU and TA-Lib, per indicator and size, in one run.

    python benchmarks/bench_gpu.py                                   # 1e5 ... 5e7 rows, best of 5
    python benchmarks/bench_gpu.py --sizes 1e6,1e7 --runs 3 --indicators sma,bollinger,macd

Times are the best of ``--runs`` after one warm-up call (which also pays for compiling and loading
the kernels). threadx is timed through ``DataFrame.select`` with ``device="cpu"`` and
``device="gpu"``; the data lives in host memory, so a GPU time is the whole call: upload, kernels,
download. TA-Lib is timed on the NumPy arrays. Every row also says whether the GPU result has the
CPU's bits (same nulls, NaN on the same rows, identical bits elsewhere); the exit status is 1 when
one does not. Without a usable GPU the reason is printed and only the CPU and TA-Lib are timed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

import numpy as np
import polars as pl
import threadx
from bench import best_of, fmt, ohlcv, ratio  # shared with bench.py
from polars.exceptions import ComputeError

try:
    import talib
except ImportError:  # pragma: no cover - optional peer
    talib = None

HLC = ("high", "low", "close")
# name -> (parameters, input columns, TA-Lib call on the arrays or None)
CASES: dict[str, tuple[dict, tuple[str, ...], Callable[[dict], object] | None]] = {
    "sma": ({"period": 30}, ("close",), lambda a: talib.SMA(a["close"], 30)),
    "ema": ({"period": 30}, ("close",), lambda a: talib.EMA(a["close"], 30)),
    "wma": ({"period": 30}, ("close",), lambda a: talib.WMA(a["close"], 30)),
    "rolling_std": ({"period": 5}, ("close",), lambda a: talib.STDDEV(a["close"], 5, 1.0)),
    "zscore": ({"period": 20}, ("close",), None),
    "bollinger": (
        {"period": 20, "std_dev": 2.0},
        ("close",),
        lambda a: talib.BBANDS(a["close"], 20, 2.0, 2.0, 0),
    ),
    "rsi": ({"period": 14}, ("close",), lambda a: talib.RSI(a["close"], 14)),
    "roc": ({"period": 10}, ("close",), lambda a: talib.ROC(a["close"], 10)),
    "macd": (
        {"fast": 12, "slow": 26, "signal": 9},
        ("close",),
        lambda a: talib.MACD(a["close"], 12, 26, 9),
    ),
    "atr": ({"period": 14}, HLC, lambda a: talib.ATR(a["high"], a["low"], a["close"], 14)),
    "natr": ({"period": 14}, HLC, lambda a: talib.NATR(a["high"], a["low"], a["close"], 14)),
    "stoch": (
        {"fastk_period": 5, "slowk_period": 3, "slowd_period": 3},
        HLC,
        lambda a: talib.STOCH(a["high"], a["low"], a["close"], 5, 3, 0, 3, 0),
    ),
    "obv": ({}, ("close", "volume"), lambda a: talib.OBV(a["close"], a["volume"])),
}


def label(name: str) -> str:
    params = CASES[name][0]
    return f"{name}({', '.join(str(v) for v in params.values())})" if params else name


def expr(name: str, device: str) -> pl.Expr:
    params, inputs, _ = CASES[name]
    return getattr(threadx, name)(*inputs, **params, device=device).alias("out")


def same_bits(got: pl.Series, want: pl.Series) -> bool:
    """Same dtype and fields, nulls on the same rows, NaN on the same rows (any payload), and the
    same bits in every other value."""
    if got.dtype != want.dtype or len(got) != len(want):
        return False
    if got.dtype == pl.Struct:
        pairs = [(got.struct.field(f), want.struct.field(f)) for f in want.struct.fields]
    else:
        pairs = [(got, want)]
    for g, w in pairs:
        gnull, wnull = g.is_null().to_numpy(), w.is_null().to_numpy()
        if not np.array_equal(gnull, wnull):
            return False
        gv, wv = g.to_numpy(), w.to_numpy()
        gnan, wnan = np.isnan(gv) & ~gnull, np.isnan(wv) & ~wnull
        if not np.array_equal(gnan, wnan):
            return False
        ok = ~(gnull | gnan)
        gb = np.ascontiguousarray(gv).view(np.uint64)
        wb = np.ascontiguousarray(wv).view(np.uint64)
        if not np.array_equal(gb[ok], wb[ok]):
            return False
    return True


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(float(s)) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes must be numbers like 1e6, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be >= 1, got {text!r}")
    return sizes


def parse_indicators(text: str) -> list[str]:
    if text.strip().lower() == "all":
        return list(CASES)
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [n for n in names if n not in CASES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown indicator(s) {unknown}; choose from {', '.join(CASES)} or 'all'"
        )
    return names


def measure(name: str, n: int, df: pl.DataFrame, arrays: dict, runs: int, gpu: bool) -> dict:
    row: dict = {"case": label(name), "rows": n, "gpu": None, "talib": None, "bits": None}
    row["cpu"] = best_of(lambda: df.select(expr(name, "cpu")), runs)
    if gpu:
        try:
            row["gpu"] = best_of(lambda: df.select(expr(name, "gpu")), runs)
            got = df.select(expr(name, "gpu"))["out"]
            row["bits"] = same_bits(got, df.select(expr(name, "cpu"))["out"])
        except ComputeError as e:  # a failed GPU call is reported, not fatal to the run
            row["error"] = (str(e).splitlines() or ["ComputeError"])[0]
    ta = CASES[name][2]
    if talib is not None and ta is not None:
        row["talib"] = best_of(lambda: ta(arrays), runs)
    return row


def cell(v: float | None) -> str:
    return fmt(v).strip()


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--sizes",
        type=parse_sizes,
        default=parse_sizes("1e5,1e6,1e7,5e7"),
        help="comma-separated row counts (default: 1e5,1e6,1e7,5e7)",
    )
    ap.add_argument("--runs", type=int, default=5, help="best of this many timed calls")
    ap.add_argument(
        "--indicators",
        type=parse_indicators,
        default=list(CASES),
        help=f"comma-separated subset of {','.join(CASES)}, or 'all' (default)",
    )
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be >= 1")

    status = threadx.gpu.status()
    gpu = bool(status["available"])
    print(
        f"threadx {threadx.__version__}, polars {pl.__version__}, "
        f"talib {getattr(talib, '__version__', 'absent')}, best of {args.runs}"
    )
    cpu = threadx.cpu_info()
    print(f"CPU: {cpu.model} ({cpu.physical_cores} physical / {cpu.logical_cores} logical cores)")
    if gpu:
        d = status["devices"][0]
        print(
            f"GPU: {d['name']} ({d['arch']}, {d['memory_bytes'] / 2**30:.0f} GiB), driver "
            f"{status['driver_version']}, NVRTC {status['nvrtc_version']}"
        )
    else:
        print(f"GPU: none usable ({status['reason']}); timing the CPU and TA-Lib only")
    print()

    rows = []
    for n in args.sizes:
        df = ohlcv(n)
        arrays = {k: df[k].to_numpy() for k in df.columns}
        for name in args.indicators:
            r = measure(name, n, df, arrays, args.runs, gpu)
            rows.append(r)
            print(f"  measured {r['case']} on {n:,} rows", file=sys.stderr, flush=True)
        del df, arrays

    if gpu:
        print(
            "| indicator | rows | threadx cpu ms | threadx gpu ms | TA-Lib ms | gpu/cpu "
            "| gpu/talib | gpu vs cpu |"
        )
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    else:
        print("| indicator | rows | threadx cpu ms | TA-Lib ms | cpu/talib |")
        print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        head = f"| {r['case']} | {r['rows']:,} | {cell(r['cpu'])} |"
        if not gpu:
            print(f"{head} {cell(r['talib'])} | {ratio(r['cpu'], r['talib']).strip()} |")
            continue
        g = r["gpu"]
        bits = "error" if "error" in r else ("yes" if r["bits"] else "no")
        print(
            f"{head} {cell(g)} | {cell(r['talib'])} "
            f"| {ratio(g, r['cpu']).strip() if g else '-'} "
            f"| {ratio(g, r['talib']).strip() if g else '-'} | bits equal: {bits} |"
        )
    errors = [r for r in rows if "error" in r]
    for r in errors:
        print(f"\n{r['case']} on {r['rows']:,} rows: the GPU call failed: {r['error']}")
    if gpu:
        differ = [r for r in rows if r["bits"] is False]
        checked = sum(r["bits"] is not None for r in rows)
        names = ", ".join(f"{r['case']} on {r['rows']:,} rows" for r in differ)
        print(f"\nbits equal (gpu vs cpu): {checked - len(differ)} of {checked} rows measured")
        if differ:
            print(f"bits differ: {names}")
        return 1 if differ or errors else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
