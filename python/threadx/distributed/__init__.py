"""``threadx.distributed``: threadx and Polars expressions per series over a partitioned Parquet
dataset, on a Ray cluster or a local process pool, with the bits of one process.

::

    import threadx.distributed as txd

    summary = txd.compute(
        "bars/",                                  # Parquet directory, glob, or list of files
        {"rsi": threadx.rsi("close", 14), "atr": threadx.atr("high", "low", "close", 14)},
        by="symbol", order_by="ts", dest="features/",
        engine="ray",                             # or "local": a process pool, no Ray needed
    )
    txd.scan("features/")                         # the result as one LazyFrame

The result equals ``pl.scan_parquet(source).sort(by, order_by).with_columns(e.over(by))``
bit for bit. The package's modules, one concern each:

* ``source``: the files, their schema and layout (split by key, or by time);
* ``buckets``: the stable key hash that places a series in a bucket;
* ``tasks``: what one task does (regroup one file, or compute one bucket);
* ``engines``: Ray or a local process pool, with retries;
* ``output``: the output directory, its marker and atomic part files;
* ``exprs``: shipping expressions (threadx plugin calls included) to the workers;
* ``job``: ``compute``, which checks, plans, runs and publishes.

docs/distributed.md describes running on a real cluster and sizing buckets.
"""

from __future__ import annotations

from threadx.distributed.job import LayoutError, Summary, compute
from threadx.distributed.output import MARKER
from threadx.distributed.output import scan as scan

__all__ = ["MARKER", "LayoutError", "Summary", "compute", "scan"]
