"""The source dataset: its files in scan order, its schema, and how it is partitioned.

Everything here runs on the driver before any task starts, and reads only directory listings, the
first and last 4 bytes of each file (the Parquet magic) and the schema: a bad source is refused
before the cluster does any work.

The files are listed as ``pl.scan_parquet`` lists them (a directory recursively, a glob, or a list,
each sorted by path), so that rows meet in the same order as in the one-process reference
``pl.scan_parquet(source)``; the schema is that scan's own, hive columns included.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import polars as pl

from threadx.distributed import output

#: What ``compute`` accepts as a source: a directory, a glob, a file, or a list of them.
SourceSpec = Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]]

_MAGIC = b"PAR1"
_GLOB_CHARS = frozenset("*?[")

WHERE = "threadx.distributed.compute"


@dataclass(frozen=True)
class Source:
    """A resolved source: what the tasks read, and what the reference scan would read."""

    #: Every file, absolute, in the order ``pl.scan_parquet`` reads them.
    files: tuple[str, ...]
    #: Each file's size in bytes (for sizing buckets).
    sizes: tuple[int, ...]
    #: The reference scan's schema: the files' columns, then the hive columns.
    schema: pl.Schema
    #: The hive partition columns (``name=value`` path segments) and their dtypes.
    hive: dict[str, pl.DataType] = field(default_factory=dict)
    #: The directory the source names (hive values are read below it), if it names one.
    root: str | None = None
    #: The metadata of a previous threadx output, when the source is one.
    previous: dict[str, Any] | None = None

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes)


def _is_glob(text: str) -> bool:
    return any(c in _GLOB_CHARS for c in text)


def _expand_one(item: str) -> tuple[list[str], str | None]:
    """The files of one source item and the directory it names (hive values are read below it)."""
    if _is_glob(item):
        files = sorted(os.path.abspath(p) for p in glob.glob(item, recursive=True))
        files = [p for p in files if os.path.isfile(p)]
        if not files:
            raise ValueError(f"{WHERE}: source glob {item!r} matches no file")
        # The fixed part of the pattern is the root (hive segments are parsed below it).
        fixed = item.split("*")[0].split("?")[0].split("[")[0]
        return files, os.path.abspath(os.path.dirname(fixed) or ".")
    if os.path.isdir(item):
        files = sorted(
            os.path.join(d, f) for d, _, names in os.walk(os.path.abspath(item)) for f in names
        )
        if not files:
            raise ValueError(f"{WHERE}: source directory {item!r} holds no file")
        return files, os.path.abspath(item)
    if os.path.isfile(item):
        return [os.path.abspath(item)], None
    raise ValueError(f"{WHERE}: source {item!r} does not exist")


def _expand(source: SourceSpec) -> tuple[list[str], str | None]:
    if isinstance(source, (str, os.PathLike)):
        return _expand_one(os.fspath(source))
    if isinstance(source, Sequence) and source and not isinstance(source, bytes):
        files: list[str] = []
        for item in source:
            if not isinstance(item, (str, os.PathLike)):
                raise ValueError(  # noqa: TRY004  (ValueError for every bad argument, as in threadx)
                    f"{WHERE}: source list items must be paths, got {item!r}"
                )
            files += _expand_one(os.fspath(item))[0]
        return files, None
    raise ValueError(
        f"{WHERE}: source must be a Parquet directory, a glob, a file or a non-empty list of "
        f"files, got {source!r}"
    )


def _check_parquet(path: str) -> int:
    """The file's size, after checking it starts and ends with the Parquet magic."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(max(size - 4, 0))
            tail = f.read(4)
    except OSError as e:
        raise ValueError(f"{WHERE}: cannot read source file {path!r}: {e}") from None
    if size < 12 or head != _MAGIC or tail != _MAGIC:
        raise ValueError(
            f"{WHERE}: source file {path!r} is not a Parquet file (it does not start and end "
            "with the Parquet magic bytes PAR1); the source must hold only Parquet files"
        )
    return size


def _scan_spec(source: SourceSpec) -> Any:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return [os.fspath(s) for s in source]  # type: ignore[union-attr]


def resolve(source: SourceSpec) -> Source:
    """Lists and checks the source: every file Parquet, the reference schema, the hive columns,
    and whether it is a previous threadx output."""
    files, root = _expand(source)
    sizes = tuple(_check_parquet(f) for f in files)
    try:
        schema = pl.scan_parquet(_scan_spec(source)).collect_schema()
    except Exception as e:  # noqa: BLE001  (Polars' own reason, under our name)
        raise ValueError(f"{WHERE}: Polars cannot scan source {source!r}: {e}") from None
    own = pl.read_parquet_schema(files[0])
    hive = {name: dtype for name, dtype in schema.items() if name not in own}
    previous = output.read_marker(root) if root is not None else None
    if previous is not None:  # its marker holds no rows: no task reads it
        keep = [i for i, f in enumerate(files) if f != os.path.join(root, output.MARKER)]
        files, sizes = [files[i] for i in keep], tuple(sizes[i] for i in keep)
    return Source(tuple(files), sizes, schema, hive, root, previous)


def check_columns(src: Source, by: Sequence[str], order_by: Sequence[str]) -> None:
    """Every ``by`` and ``order_by`` column must be in the source."""
    for what, names in (("by", by), ("order_by", order_by)):
        missing = [n for n in names if n not in src.schema]
        if missing:
            raise ValueError(
                f"{WHERE}: {what} column{'s' if len(missing) > 1 else ''} "
                f"{', '.join(map(repr, missing))} not in the source; its columns are "
                f"{', '.join(map(repr, src.schema.names()))}"
            )


def hive_values(src: Source, path: str) -> dict[str, str]:
    """The ``name=value`` segments of ``path`` below the source's root, for its hive columns."""
    if src.root is None:
        return {}
    rel = os.path.relpath(os.path.dirname(path), src.root)
    out = {}
    for seg in rel.split(os.sep):
        name, eq, value = seg.partition("=")
        if eq and name in src.hive:
            out[name] = value
    return out


def partitions(src: Source, by: Sequence[str]) -> dict[str, list[int]]:
    """The source's partitions for a key layout: a label for each group of files that holds
    whole series, and those files' indices in scan order.

    Hive columns among ``by``: the files sharing those values (a series has one value of each).
    Otherwise (a previous threadx output, or ``layout="key"``: the user's word that the files are
    split by key): the files sharing all their hive values, or each file.
    """
    groups: dict[str, list[int]] = {}
    keyed = [c for c in by if c in src.hive]
    for i, path in enumerate(src.files):
        if keyed:
            values = hive_values(src, path)
            label = "/".join(f"{c}={values.get(c, '')}" for c in keyed)
        elif src.hive:
            values = hive_values(src, path)
            label = "/".join(f"{c}={values.get(c, '')}" for c in src.hive)
        else:  # relative, so that a moved dataset hashes into the same buckets
            label = os.path.relpath(path, src.root) if src.root is not None else path
        groups.setdefault(label, []).append(i)
    return groups


def detect_layout(src: Source, by: Sequence[str], layout: str) -> str:
    """``"key"`` (every series within one partition: no shuffle) or ``"time"`` (regroup first).

    ``"auto"`` says ``"key"`` only where that is certain without reading data: a previous
    threadx output with the same ``by``, or a hive column among ``by``. Anything else could hold
    any key in any file, so it is regrouped; ``layout="key"`` asserts the files are split by key
    (checked after the run: a key found in two tasks is an error).
    """
    if layout != "auto":
        return layout
    if src.previous is not None and list(src.previous.get("by", ())) == list(by):
        return "key"
    if any(c in src.hive for c in by):
        return "key"
    return "time"
