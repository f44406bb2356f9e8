"""Per-call overhead of planning and profiling (issue #3), on calls where it matters most:
many 1,000-row calls, and ``.over()`` on 2,000 symbols x 1,000 rows.

    python benchmarks/bench_overhead.py

The planner's own cost (profile lock + decision) is printed by
``cargo run --release --example plan_timing``. Compare the ``.over()`` lines with the issue #2
figures in the same run of ``benchmarks/bench.py``.
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("THREADX_PROFILE", os.path.join(tempfile.mkdtemp(), "profile.json"))

import numpy as np
import polars as pl
from bench import best_of  # best-of-N wall time in ms, shared with bench.py


def main() -> None:
    rng = np.random.default_rng(3)
    small = pl.DataFrame({"close": 100 + np.cumsum(rng.normal(size=1_000))})
    calls = 2_000
    col = pl.col("close")

    def many(expr: pl.Expr):
        return lambda: [small.select(expr) for _ in range(calls)]

    def many_native():
        return [small.select(col.rolling_mean(20)) for _ in range(calls)]

    tx = best_of(many(col.threadx.sma(20)), 3) / calls * 1e3
    native = best_of(many_native, 3) / calls * 1e3
    print(f"1,000-row select, threadx.sma(20):         {tx:8.1f} us per call (planned + recorded)")
    print(f"1,000-row select, polars rolling_mean(20): {native:8.1f} us per call")

    n_sym, per = 2_000, 1_000
    df = pl.DataFrame(
        {
            "symbol": np.repeat(np.arange(n_sym), per),
            "close": 100 + np.cumsum(rng.normal(size=n_sym * per)),
        }
    )
    for name, expr in [
        ("threadx sma(20).over", col.threadx.sma(20).over("symbol")),
        ("polars rolling_mean(20).over", col.rolling_mean(20).over("symbol")),
        ("threadx bollinger(20).over", col.threadx.bollinger(20).over("symbol")),
    ]:
        print(f"{name:<30} {best_of(lambda e=expr: df.select(e), 7):8.2f} ms")


if __name__ == "__main__":
    main()
