"""What one task does, on whichever worker runs it (a Ray worker or a local process).

Two kinds of task:

* ``compute_files`` (key layout) and ``compute_staged`` (time layout, phase 2): read one bucket
  lazily, sort it by ``by`` then ``order_by``, compute the expressions per series, and stream the
  result into the bucket's part file. Each bucket holds whole series, and a series' values depend
  on its own rows only, so a bucket's result is the reference's rows for those series, bit for bit.
* ``split_file`` (time layout, phase 1): route one source file's rows to their buckets, by the
  stable hash of each key (``buckets``), into the staging directory.

Every task writes under a temporary name and renames when done, so it can be retried, or run
twice, without leaving a partial or a duplicate file. The functions are module-level so that Ray
and ``multiprocessing`` pickle them by reference.
"""

from __future__ import annotations

import glob
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from threadx.distributed import buckets, exprs, output


@dataclass(frozen=True)
class Spec:
    """What every task of a job needs: shipped once per task (Ray: once per node)."""

    columns: tuple[str, ...]
    hive: dict[str, pl.DataType]
    by: tuple[str, ...]
    order_by: tuple[str, ...]
    exprs: tuple[tuple[str, str], ...]
    plugin_lib: str
    dest: str
    buckets: int

    @property
    def staging(self) -> str:
        return os.path.join(self.dest, output.STAGING)


@dataclass(frozen=True)
class Result:
    """One task's report. ``keys``: the hashes of the series it wrote (a compute task)."""

    bucket: int
    file: str | None
    rows: int
    keys: tuple[int, ...]
    seconds: float
    pid: int


def _scan_source(spec: Spec, files: Sequence[str]) -> pl.LazyFrame:
    """The files as the reference scan reads them: hive columns from the paths with the
    reference's dtypes, columns in the reference's order (a subset of the files would otherwise
    infer hive dtypes from its own values)."""
    lf = pl.scan_parquet(
        list(files),
        hive_partitioning=bool(spec.hive),
        hive_schema=spec.hive or None,
    )
    return lf.select(spec.columns)


def _compute(spec: Spec, bucket: int, lf: pl.LazyFrame, started: float) -> Result:
    # maintain_order: rows with equal keys and order values keep their source order.
    result = lf.sort([*spec.by, *spec.order_by], maintain_order=True).with_columns(
        exprs.rebuild(spec.exprs, spec.plugin_lib, spec.by)
    )
    final = os.path.join(spec.dest, output.part_name(bucket))
    temp = output.temp_path(final)
    result.sink_parquet(temp)
    written = pl.scan_parquet(temp)
    rows = written.select(pl.len()).collect().item()
    if rows == 0:  # an empty bucket writes no file
        os.remove(temp)
        return Result(bucket, None, 0, (), time.perf_counter() - started, os.getpid())
    keys = tuple(buckets.key_hashes(written.select(spec.by).unique().collect()))
    output.publish(temp, final)
    return Result(bucket, final, rows, keys, time.perf_counter() - started, os.getpid())


def compute_files(spec: Spec, bucket: int, files: Sequence[str]) -> Result:
    """Key layout: the bucket is these source files."""
    started = time.perf_counter()
    return _compute(spec, bucket, _scan_source(spec, files), started)


def _fragment_dir(spec: Spec, file_index: int) -> str:
    return os.path.join(spec.staging, f"f{file_index:05d}")


def _fragment_path(args: pl.io.partition.FileProviderArgs) -> str:
    bucket = args.partition_keys[buckets.BUCKET_COLUMN][0]
    return f"b{bucket:05d}/{args.index_in_partition:05d}.parquet"


def split_file(spec: Spec, file_index: int, path: str) -> Result:
    """Time layout, phase 1: writes ``staging/fIIIII/bBBBBB/NNNNN.parquet``, the rows of source
    file ``file_index`` that belong to bucket ``B``, in file order."""
    started = time.perf_counter()
    lf = _scan_source(spec, [path])
    # Hash each distinct key once, then join the buckets onto the rows (a small build side).
    keys = buckets.with_buckets(lf.select(spec.by).unique().collect(), spec.buckets)
    final = _fragment_dir(spec, file_index)
    temp = output.temp_path(final)
    os.makedirs(temp)
    routed = lf.join(
        keys.lazy(), on=list(spec.by), how="left", nulls_equal=True, maintain_order="left"
    )
    with warnings.catch_warnings():  # PartitionBy is marked unstable; its use here is plain
        warnings.simplefilter("ignore", pl.exceptions.UnstableWarning)
        sink = pl.PartitionBy(
            temp,
            key=buckets.BUCKET_COLUMN,
            include_key=False,
            file_path_provider=_fragment_path,
        )
        routed.sink_parquet(sink, mkdir=True)
    output.publish(temp, final)
    return Result(-1, final, 0, (), time.perf_counter() - started, os.getpid())


def compute_staged(spec: Spec, bucket: int, n_files: int) -> Result:
    """Time layout, phase 2: the bucket is its fragments of every source file, read in source
    order (so rows with equal keys and order values keep the reference's order)."""
    started = time.perf_counter()
    parts = [
        p
        for i in range(n_files)
        for p in sorted(glob.glob(os.path.join(_fragment_dir(spec, i), f"b{bucket:05d}", "*")))
    ]
    if not parts:
        return Result(bucket, None, 0, (), time.perf_counter() - started, os.getpid())
    lf = pl.scan_parquet(parts, hive_partitioning=False)
    return _compute(spec, bucket, lf, started)
