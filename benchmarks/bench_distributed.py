"""threadx.distributed against one process, on one machine: 1,000 symbols x 10,000 rows (10M rows,
OHLCV) by default, four indicators per symbol (sma, rsi, atr, bollinger), for both source layouts:

- **one process**: ``pl.scan_parquet(src).sort(...).with_columns(e.over("symbol"))``, sunk to a
  Parquet file (the reference every other run is checked against, bit for bit);
- **local**: ``engine="local"``, the process pool sized by threadx's optimizer;
- **ray 1w / ray 2w**: ``engine="ray"`` on a local cluster of 1 and 2 CPUs;
- **ray-data** (time layout only): the regrouping done by Ray Data's ``groupby(...).map_groups``
  instead of the two-phase task job, to measure which is better (needs ``pip install
  'ray[data]'``; skipped with a note without it).

    python benchmarks/bench_distributed.py                        # a few minutes on 2 cores
    python benchmarks/bench_distributed.py --symbols 100 --rows 1000

Each run is timed once, after a warm-up job on a small dataset that starts the workers (a Ray
cluster's start is not counted). *overhead/task* is the time the workers' slots were not inside
a task, per task: ``(seconds x workers - sum of task seconds) / tasks`` (scheduling, shipping,
process start-up and waiting for the slowest task). Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numpy as np
import polars as pl
import threadx
import threadx.distributed as txd
from polars.testing import assert_frame_equal
from threadx.distributed import buckets as txb

BY, ORDER = "symbol", "ts"


def exprs() -> dict[str, pl.Expr]:
    return {
        "sma": threadx.sma("close", 20),
        "rsi": threadx.rsi("close", 14),
        "atr": threadx.atr("high", "low", "close", 14),
        "bb": threadx.bollinger("close", 20, 2.0),
    }


def write_data(root: str, symbols: int, rows: int, days: int) -> dict[str, str]:
    """The same bars twice: split by time (``days`` files, each with every symbol) and split by
    key (hive directories ``symbol=S0000/``)."""
    rng = np.random.default_rng(7)
    n = symbols * rows
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    spread = np.abs(rng.normal(0, 0.005, n)) * close
    df = pl.DataFrame(
        {
            BY: np.repeat([f"S{i:04d}" for i in range(symbols)], rows),
            ORDER: np.tile(np.arange(rows, dtype=np.int64), symbols),
            "open": close * np.exp(rng.normal(0, 0.002, n)),
            "high": close + spread,
            "low": close - spread,
            "close": close,
            "volume": rng.integers(1, 1_000_000, n).astype(np.float64),
        }
    )
    time_dir, key_dir = os.path.join(root, "by_time"), os.path.join(root, "by_key")
    os.makedirs(time_dir)
    per_day = -(-rows // days)
    for d in range(days):
        part = df.filter(pl.col(ORDER) // per_day == d)
        part.write_parquet(os.path.join(time_dir, f"day{d:03d}.parquet"))
    for (sym,), g in df.group_by(BY):
        os.makedirs(os.path.join(key_dir, f"{BY}={sym}"))
        g.drop(BY).write_parquet(os.path.join(key_dir, f"{BY}={sym}", "part0.parquet"))
    return {"time": time_dir, "key": key_dir}


def one_process(source: str, dest: str) -> float:
    started = time.perf_counter()
    (
        pl.scan_parquet(source)
        .sort(BY, ORDER)
        .with_columns(**{k: e.over(BY) for k, e in exprs().items()})
        .sink_parquet(dest)
    )
    return time.perf_counter() - started


# --------------------------------------------------------------------------------------------
# the alternative regrouping: Ray Data
# --------------------------------------------------------------------------------------------


def _add_bucket(batch, buckets: int):  # pyarrow.Table -> pyarrow.Table
    df = pl.from_arrow(batch)
    keys = txb.with_buckets(df.select(BY).unique(), buckets)
    return df.join(keys, on=BY, how="left", maintain_order="left").to_arrow()


def _compute_group(batch, dest: str):  # one bucket's rows -> its part file
    import pyarrow as pa

    df = pl.from_arrow(batch).drop(txb.BUCKET_COLUMN)
    if df.height == 0:
        return pa.table({"rows": pa.array([], pa.int64())})
    bucket = pl.from_arrow(batch)[txb.BUCKET_COLUMN][0]
    out = df.sort(BY, ORDER, maintain_order=True).with_columns(
        **{k: e.over(BY) for k, e in exprs().items()}
    )
    out.write_parquet(os.path.join(dest, f"part-{bucket:05d}.parquet"))
    return pa.table({"rows": [df.height]})


def ray_data(source: str, dest: str, buckets: int) -> float:
    import ray.data
    from ray.data.context import DataContext, ShuffleStrategy

    ctx = DataContext.get_current()
    # The default hash shuffle keeps aggregator actors that each hold a CPU: on a 1-CPU cluster
    # they leave none for the map tasks and the job waits forever. The sort shuffle needs none.
    ctx.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    ctx.enable_progress_bars = False
    os.makedirs(dest)
    started = time.perf_counter()
    files = sorted(os.path.join(source, f) for f in os.listdir(source))
    ds = ray.data.read_parquet(files)
    ds = ds.map_batches(_add_bucket, fn_kwargs={"buckets": buckets}, batch_format="pyarrow")
    ds = ds.groupby(txb.BUCKET_COLUMN).map_groups(
        _compute_group, fn_kwargs={"dest": dest}, batch_format="pyarrow"
    )
    rows = sum(ds.to_pandas()["rows"])
    assert rows > 0
    return time.perf_counter() - started


# --------------------------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------------------------


def check_bits(dest_files: list[str] | str, reference: pl.DataFrame) -> str:
    got = pl.scan_parquet(dest_files).collect().sort(BY, ORDER)
    got = got.select(reference.columns)
    assert_frame_equal(got, reference, check_exact=True)
    return "same"


def row(name: str, layout: str, workers: int, tasks: int, seconds: float, slots: float,
        base: float, bits: str) -> list[str]:  # fmt: skip
    overhead = (seconds * workers - slots) / tasks if tasks else 0.0
    return [
        name, layout, str(workers), str(tasks), f"{seconds:.2f}", f"{base / seconds:.2f}x",
        f"{overhead * 1000:.0f} ms" if tasks else "-", bits,
    ]  # fmt: skip


HEAD = ["run", "layout", "workers", "tasks", "seconds", "vs one process", "overhead/task", "bits"]
WIDTHS = [12, 6, 7, 5, 7, 14, 13, 9]


def print_row(cells: list[str]) -> None:
    """One Markdown table row, printed as soon as its run is done."""
    print("| " + " | ".join(c.ljust(w) for c, w in zip(cells, WIDTHS)) + " |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--symbols", type=int, default=1000)
    ap.add_argument("--rows", type=int, default=10_000, help="rows per symbol")
    ap.add_argument("--days", type=int, default=10, help="files of the time layout")
    ap.add_argument("--buckets", type=int, default=8)
    ap.add_argument("--no-ray", action="store_true", help="one process and local only")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="threadx-bench-distributed-")
    try:
        run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, tmp: str) -> None:
    cpu = threadx.cpu_info()
    print(
        f"threadx.distributed: {args.symbols:,} symbols x {args.rows:,} rows, "
        f"{len(exprs())} indicators, {args.buckets} buckets; {cpu.model}, {cpu.physical_cores} "
        "physical cores"
    )
    data = write_data(os.path.join(tmp, "data"), args.symbols, args.rows, args.days)
    warm = write_data(os.path.join(tmp, "warm"), 8, 100, 2)
    n = 0

    def dest() -> str:
        nonlocal n
        n += 1
        return os.path.join(tmp, f"out{n}")

    print_row(HEAD)
    print_row(["-" * w for w in WIDTHS])
    refs, base = {}, {}
    for layout in ("time", "key"):
        out = dest() + ".parquet"
        base[layout] = one_process(data[layout], out)
        refs[layout] = pl.read_parquet(out).sort(BY, ORDER)
        print_row(row("one process", layout, 1, 0, base[layout], 0, base[layout], "reference"))

    def job(name: str, engine: str, **kw) -> None:
        for layout in ("time", "key"):
            txd.compute(warm[layout], exprs(), by=BY, order_by=ORDER, dest=dest(), engine=engine,
                        buckets=2, **kw)  # fmt: skip
            s = txd.compute(data[layout], exprs(), by=BY, order_by=ORDER, dest=dest(),
                            engine=engine, buckets=args.buckets, **kw)  # fmt: skip
            bits = check_bits(s.files, refs[layout])
            print_row(row(name, layout, s.workers, s.tasks, s.seconds, sum(s.task_seconds),
                            base[layout], bits))  # fmt: skip

    job("local", "local")
    if not args.no_ray:
        import ray

        for cpus in (1, 2):
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
            try:
                job(f"ray {cpus}w", "ray")
                print_row(ray_data_row(data, warm, refs, base, args.buckets, cpus, dest()))
            finally:
                ray.shutdown()


def ray_data_row(data: dict[str, str], warm: dict[str, str], refs: dict, base: dict,
                 buckets: int, cpus: int, out: str) -> list[str]:  # fmt: skip
    name = f"ray-data {cpus}w"
    try:
        import pandas  # noqa: F401  (Ray Data's dependencies)
        import pyarrow  # noqa: F401
    except ImportError:
        return [name, "time", str(cpus), "-", "-", "-", "-", "not run: pip install 'ray[data]'"]
    ray_data(warm["time"], out + "-warm", 2)
    seconds = ray_data(data["time"], out, buckets)
    # Ray Data plans its own tasks (read, map, shuffle, map_groups): no per-task figure.
    return [name, "time", str(cpus), "-", f"{seconds:.2f}", f"{base['time'] / seconds:.2f}x", "-",
            check_bits(out, refs["time"])]  # fmt: skip


if __name__ == "__main__":
    main()
