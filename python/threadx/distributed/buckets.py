"""Stable key hashing: which bucket a series goes to, the same on every machine and every rerun.

Polars' own ``hash()`` is documented as unstable across versions, and Python's ``hash()`` of a
string changes per process, so neither can place a series: two workers (or two runs) would send
one symbol to different buckets and split its series. A key is hashed here from a canonical text
of its values with BLAKE2b, which depends on nothing but the values.

The canonical text follows the grouping of ``.over()``: ``0.0`` and ``-0.0`` are one key, every
NaN is one key, a null is a key of its own. Keys are hashed once per distinct key (the workers
hash a file's unique keys, not its rows) and joined back onto the rows.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from typing import Any

import polars as pl

#: Name of the temporary bucket column a split task adds (and drops before writing).
BUCKET_COLUMN = "__threadx_bucket"

#: A bucket's target size in bytes of Parquet source (see docs/distributed.md, "Sizing buckets").
DEFAULT_BUCKET_BYTES = 128 * 1024 * 1024


def _canonical(value: Any) -> str:
    """One value's text: its type (so the integer 1 and the string "1" differ) and its value,
    with the float cases ``.over()`` merges written once."""
    if value is None:
        return "null"
    if isinstance(value, float):
        if math.isnan(value):
            return "float:nan"
        return f"float:{(value + 0.0)!r}"  # -0.0 + 0.0 is 0.0
    return f"{type(value).__name__}:{value!r}"


def key_hash(values: Sequence[Any]) -> int:
    """A 64-bit hash of one key (the values of the ``by`` columns), stable across processes,
    machines, Python and Polars versions."""
    text = "\x1f".join(_canonical(v) for v in values)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def key_hashes(keys: pl.DataFrame) -> list[int]:
    """The hash of each row of ``keys`` (one column per ``by`` column), in row order."""
    return [key_hash(row) for row in keys.iter_rows()]


def bucket_of(h: int, buckets: int) -> int:
    return h % buckets


def with_buckets(keys: pl.DataFrame, buckets: int) -> pl.DataFrame:
    """``keys`` (distinct keys) with the bucket of each as ``BUCKET_COLUMN`` (UInt32)."""
    return keys.with_columns(
        pl.Series(BUCKET_COLUMN, [bucket_of(h, buckets) for h in key_hashes(keys)], dtype=pl.UInt32)
    )


def text_bucket(text: str, buckets: int) -> int:
    """The bucket of a whole source partition named by ``text`` (its hive values or its path)."""
    return bucket_of(key_hash([text]), buckets)


def default_buckets(total_bytes: int, parallelism: int, bucket_bytes: int) -> int:
    """Enough buckets that each holds about ``bucket_bytes`` of source, and at least one per
    parallel worker so that a small dataset still uses them all."""
    by_size = -(-max(total_bytes, 1) // bucket_bytes)
    return max(1, by_size, parallelism)


def distinct(hashes: Iterable[Iterable[int]]) -> tuple[int, int]:
    """(keys counted over all tasks, distinct keys): equal when no key is in two tasks."""
    total = 0
    seen: set[int] = set()
    for part in hashes:
        part = list(part)
        total += len(part)
        seen.update(part)
    return total, len(seen)
