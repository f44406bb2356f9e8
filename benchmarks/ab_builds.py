"""Two builds of the plugin in one process, call by call: is a kernel change faster?

    # save the build before the change, rebuild, then:
    python benchmarks/ab_builds.py BEFORE_DIR AFTER_DIR midprice linearreg --rounds 15

Each directory holds a compiled plugin (``_internal.abi3.so``, e.g. a copy of
``python/threadx/_internal.abi3.so``). Polars loads each as a plugin of its own, so the two builds
run alternately in the same process on the same data, with TA-Lib's call between them: the slow
spells of a shared machine hit both sides alike, where separate runs differ by up to 1.7x. The
report gives each side's best time and the median of the per-round ratios (after / before), and
checks first that both builds return the same frame. Set ``THREADX_NUM_THREADS`` to compare
one-thread kernels. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import pathlib
import time

import talib
import threadx
from bench_catalog import COLUMN, market
from threadx import _registry


def timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("before", type=pathlib.Path, help="folder with the first build's plugin")
    ap.add_argument("after", type=pathlib.Path, help="folder with the second build's plugin")
    ap.add_argument("names", nargs="+", help="catalog names")
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()

    catalog = {r["name"]: r for r in threadx.catalog().iter_rows(named=True)}
    df = market(args.rows)
    for name in args.names:
        row = catalog[name]
        cols = [COLUMN.get(i, i) for i in row["inputs"]]
        exprs = []
        for folder in (args.before, args.after):
            _registry.PLUGIN_PATH = folder.resolve()
            exprs.append(getattr(threadx, name)(*cols))
        _registry.PLUGIN_PATH = pathlib.Path(threadx.__file__).parent
        if not df.select(exprs[0]).equals(df.select(exprs[1])):
            raise SystemExit(f"{name}: the two builds return different values")
        peer = None
        if row["talib"]:
            fn, ins = getattr(talib, row["talib"]), [df[c].to_numpy() for c in cols]
            peer = (fn, *ins)
        before, after, ta = [], [], []
        for _ in range(args.rounds):
            before.append(timed(df.select, exprs[0]))
            after.append(timed(df.select, exprs[1]))
            if peer:
                ta.append(timed(*peer))
        ratios = sorted(a / b for a, b in zip(after, before))
        line = (
            f"{name:16s} before {min(before) * 1e3:7.1f} ms  after {min(after) * 1e3:7.1f} ms  "
            f"after/before median {ratios[len(ratios) // 2]:.3f} "
            f"(spread {ratios[0]:.2f}-{ratios[-1]:.2f})"
        )
        if ta:
            line += (
                f"  TA-Lib {min(ta) * 1e3:7.1f} ms: before {min(before) / min(ta):.2f}x, "
                f"after {min(after) / min(ta):.2f}x"
            )
        print(line)


if __name__ == "__main__":
    main()
