"""``compute``: check everything, plan the tasks, run them, and publish the output."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Union

import polars as pl

from threadx.distributed import buckets as _buckets
from threadx.distributed import engines, output, tasks
from threadx.distributed import exprs as _exprs
from threadx.distributed import source as _source

WHERE = "threadx.distributed.compute"

ENGINES = ("ray", "local")
LAYOUTS = ("auto", "key", "time")

Columns = Union[str, Sequence[str]]


class LayoutError(ValueError):
    """``layout="key"`` was asserted, but a series was found in two partitions: the results of
    those series would be wrong, so the run's files were removed."""


@dataclass(frozen=True)
class Summary:
    """What a run did. ``files`` are the part files written, in bucket order; together they hold
    the reference's rows (each file sorted by ``by`` then ``order_by``)."""

    rows: int
    series: int
    tasks: int
    seconds: float
    files: list[str]
    dest: str
    engine: str
    layout: str
    buckets: int
    #: Worker processes (local) or task slots (Ray: the cluster's CPUs // cpus_per_task).
    workers: int
    #: Each task's own wall time (phase 1 first, for a time layout), in seconds.
    task_seconds: list[float] = field(default_factory=list, repr=False)

    def __str__(self) -> str:
        return (
            f"threadx.distributed: {self.rows:,} rows, {self.series:,} series, {self.tasks} "
            f"tasks ({self.layout} layout, {self.buckets} buckets, {self.engine} engine, "
            f"{self.workers} workers) in {self.seconds:.2f} s -> {len(self.files)} files in "
            f"{self.dest}"
        )


def _names(what: str, value: object) -> tuple[str, ...]:
    names = [value] if isinstance(value, str) else value
    if (
        not isinstance(names, (list, tuple))
        or not names
        or not all(isinstance(n, str) and n for n in names)
    ):
        raise ValueError(
            f"{WHERE}: {what} must be a column name or a non-empty list of them, got {value!r}"
        )
    return tuple(names)


def _int(name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{WHERE}: {name} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def _key_tasks(
    src: _source.Source, by: Sequence[str], n_buckets: int
) -> list[tuple[int, list[str]]]:
    """(bucket, files) per task: one task per source partition, or, when there are more
    partitions than buckets, the partitions grouped by the stable hash of their label."""
    groups = _source.partitions(src, by)
    labels = sorted(groups)
    if len(labels) <= n_buckets:
        return [(b, [src.files[i] for i in groups[label]]) for b, label in enumerate(labels)]
    merged: dict[int, list[int]] = {}
    for label in labels:
        merged.setdefault(_buckets.text_bucket(label, n_buckets), []).extend(groups[label])
    return [(b, [src.files[i] for i in sorted(merged[b])]) for b in sorted(merged)]


def _check_options(
    engine: object,
    address: object,
    gpus_per_task: object,
    layout: object,
    buckets: object,
    bucket_bytes: object,
    cpus_per_task: object,
    max_workers: object,
    max_retries: object,
) -> None:
    """The scalar arguments of ``compute``: a ValueError naming the first bad one."""
    if engine not in ENGINES:
        raise ValueError(f"{WHERE}: engine must be 'ray' or 'local', got {engine!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"{WHERE}: layout must be 'auto', 'key' or 'time', got {layout!r}")
    if buckets is not None:
        _int("buckets", buckets, 1, 99_999)  # part names have 5 digits
    _int("bucket_bytes", bucket_bytes, 1, 2**62)
    _int("cpus_per_task", cpus_per_task, 1, 1024)
    _int("max_retries", max_retries, 0, 100)
    if max_workers is not None:
        _int("max_workers", max_workers, 1, 1024)
    if (
        isinstance(gpus_per_task, bool)
        or not isinstance(gpus_per_task, (int, float))
        or not 0 <= gpus_per_task <= 1024
    ):
        raise ValueError(f"{WHERE}: gpus_per_task must be a number >= 0, got {gpus_per_task!r}")
    if engine == "local" and (gpus_per_task or address is not None):
        raise ValueError(
            f"{WHERE}: address and gpus_per_task are Ray placements; engine='local' runs on this "
            "machine (threadx's planner picks its GPUs)"
        )
    if engine == "ray" and max_workers is not None:
        raise ValueError(f"{WHERE}: max_workers sizes engine='local'; Ray's size is its CPUs")


def compute(
    source: _source.SourceSpec,
    exprs: Mapping[str, pl.Expr],
    by: Columns,
    order_by: Columns,
    dest: str | os.PathLike[str],
    engine: str = "ray",
    address: str | None = None,
    gpus_per_task: float = 0,
    *,
    layout: str = "auto",
    buckets: int | None = None,
    bucket_bytes: int = _buckets.DEFAULT_BUCKET_BYTES,
    cpus_per_task: int = 1,
    max_workers: int | None = None,
    max_retries: int = 3,
) -> Summary:
    """Computes ``exprs`` per ``by`` group over a Parquet dataset, on a Ray cluster or a local
    process pool, and writes the result to ``dest``.

    The rows written are, bit for bit, those of the one-process
    ``pl.scan_parquet(source).sort(by, order_by).with_columns(e.over(by) ...)``, whatever the
    cluster and the task split: each task holds whole series.

    ``source``: a Parquet directory (hive-partitioned or not), a glob, a file, or a list of files.
    ``exprs``: output name -> expression, each computed per ``by`` group. ``by``: the series key
    (one or more columns); ``order_by``: the row order within a series. ``dest``: the output
    directory: new, empty, or a previous run's (replaced).

    ``engine``: ``"ray"`` (``address``: a cluster's ``host:port``, ``"auto"``, or ``None`` to
    join or start a local one; ``gpus_per_task`` > 0 places tasks on GPU workers and
    ``cpus_per_task`` sizes each) or ``"local"`` (a process pool on this machine, at most
    ``max_workers`` processes).

    ``layout``: ``"auto"`` (a hive column among ``by``, or a previous threadx output with the same
    ``by``: one task per source partition; otherwise regroup), ``"key"`` (the source files are
    split by key: no regrouping; checked after the run) or ``"time"`` (every file may hold every
    key: phase 1 routes each file's rows to ``buckets`` buckets by a stable hash of the key,
    phase 2 computes each bucket). ``buckets`` defaults to one per ``bucket_bytes`` of Parquet
    source, and at least one per parallel worker. Failed tasks (a dead worker, an ``OSError``) are
    retried up to ``max_retries`` times.

    Every argument, the source (Parquet files, the ``by`` and ``order_by`` columns, the
    expressions), ``dest`` and the Ray address are checked before any work: a ValueError (a
    ConnectionError for an unreachable address) says what is wrong.
    """
    started = time.perf_counter()
    by_ = _names("by", by)
    order_by_ = _names("order_by", order_by)
    _check_options(
        engine, address, gpus_per_task, layout, buckets, bucket_bytes, cpus_per_task,
        max_workers, max_retries,
    )  # fmt: skip
    shipped = _exprs.ship(exprs)
    src = _source.resolve(source)
    _source.check_columns(src, by_, order_by_)
    out_schema = _exprs.output_schema(src.schema, by_, order_by_, shipped)
    dest_ = output.check_dest(dest, src.files)
    if src.root is not None and (dest_ == src.root or dest_.startswith(src.root + os.sep)):
        raise ValueError(
            f"{WHERE}: dest {dest_!r} lies inside the source directory {src.root!r}; a later "
            "scan of the source would read the output: write to another directory"
        )
    if engine == "ray":
        engines.check_address(address)
    layout_ = _source.detect_layout(src, by_, layout)

    # Everything is checked: connect (Ray) and plan.
    n_files = len(src.files)
    if engine == "ray":
        runner: engines.RayEngine | engines.LocalEngine = engines.RayEngine(
            address, cpus_per_task, gpus_per_task, max_retries
        )
        parallelism = runner.parallelism
    else:
        parallelism = engines.LocalEngine(1, max_workers, max_retries).parallelism
    n_buckets = buckets or _buckets.default_buckets(src.total_bytes, parallelism, bucket_bytes)
    if layout_ == "key" and buckets is None and src.previous is not None:
        # A previous output is bucketed already: keep its buckets, one task per part file.
        n_buckets = max(1, len(src.files))
    if layout_ == "key":
        key_tasks = _key_tasks(src, by_, n_buckets)
        n_tasks = len(key_tasks)
    else:
        n_tasks = max(n_files, n_buckets)
    if engine == "local":
        runner = engines.LocalEngine(n_tasks, max_workers, max_retries)

    spec = tasks.Spec(
        columns=tuple(src.schema.names()),
        hive=dict(src.hive),
        by=by_,
        order_by=order_by_,
        exprs=shipped,
        plugin_lib=_exprs.plugin_lib(),
        dest=dest_,
        buckets=n_buckets,
    )
    meta = {
        "by": list(by_),
        "order_by": list(order_by_),
        "exprs": [name for name, _ in shipped],
        "layout": layout_,
        "buckets": n_buckets,
        "source_files": n_files,
    }
    output.claim(dest_, out_schema, meta)
    split: list[tasks.Result] = []
    try:
        if layout_ == "key":
            results = runner.map(tasks.compute_files, spec, key_tasks)
        else:
            split = runner.map(tasks.split_file, spec, list(enumerate(src.files)))
            results = runner.map(
                tasks.compute_staged, spec, [(b, n_files) for b in range(n_buckets)]
            )
    finally:
        runner.close()
    files = [r.file for r in results if r.file is not None]
    counted, series = _buckets.distinct(r.keys for r in results)
    if counted != series:
        output.discard(dest_, files, out_schema, meta)
        raise LayoutError(
            f"{WHERE}: {counted - series} series were found in more than one source partition, "
            "so the source is not split by key; the run's files were removed. Use "
            "layout='time' (or 'auto') to regroup the series first"
        )
    output.finish(dest_, files, out_schema, meta)
    return Summary(
        rows=sum(r.rows for r in results),
        series=series,
        tasks=len(split) + len(results),
        seconds=time.perf_counter() - started,
        files=files,
        dest=dest_,
        engine=engine,
        layout=layout_,
        buckets=n_buckets,
        workers=runner.workers,
        task_seconds=[r.seconds for r in (*split, *results)],
    )
