"""The output directory: its marker, atomic part files, and what a rerun replaces.

An output directory holds ``part-NNNNN.parquet`` (one per non-empty bucket, rows sorted by the key
and the order column) and ``_threadx_output.parquet``, the marker: a Parquet file with no rows and
the output's schema, whose key-value metadata says what wrote the directory. The marker is Parquet
(not JSON) so that ``pl.scan_parquet(dest)`` still reads the directory: Polars refuses a directory
whose files have different extensions.

Every file is written to a hidden temporary name in the same directory and renamed when complete
(a rename within one file system is atomic), so a reader or a rerun never sees half a file and a
task killed mid-write leaves only a temporary file, removed when the job ends. A rerun writes the
same names, renames over them, and removes the part files the new run did not write: the
directory never holds rows twice.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import polars as pl

#: The marker's file name, in the output directory.
MARKER = "_threadx_output.parquet"
#: The regrouping's intermediate files, below the output directory (removed at the end).
STAGING = "_threadx_staging"
#: The key of the marker's metadata entry.
META_KEY = "threadx.distributed"
#: The marker's format version.
FORMAT = 1

WHERE = "threadx.distributed.compute"


def part_name(bucket: int) -> str:
    return f"part-{bucket:05d}.parquet"


def is_part(name: str) -> bool:
    return name.startswith("part-") and name.endswith(".parquet")


def temp_path(final: str) -> str:
    """A hidden, unique name beside ``final``: every attempt of a task writes its own."""
    head, tail = os.path.split(final)
    return os.path.join(head, f".{tail}.{uuid.uuid4().hex}.tmp")


def _is_temp(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def publish(temp: str, final: str) -> None:
    """Moves a completed file or directory into place, replacing what is there."""
    if os.path.isdir(temp) and os.path.isdir(final):
        # Another attempt of the same task finished first; its content is the same.
        shutil.rmtree(temp)
        return
    os.replace(temp, final)


def read_marker(directory: str) -> dict[str, Any] | None:
    """The marker's metadata, or ``None`` when ``directory`` is not a threadx output."""
    path = os.path.join(directory, MARKER)
    if not os.path.isfile(path):
        return None
    try:
        text = pl.read_parquet_metadata(path).get(META_KEY)
        meta = json.loads(text) if text else None
    except Exception:  # noqa: BLE001  (an unreadable marker is no marker)
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == FORMAT else None


def check_dest(dest: str | os.PathLike[str], source_files: Iterable[str]) -> str:
    """``dest`` as an absolute path, after checking that the job may write there: it does not
    exist, is empty, or is a previous threadx output; and no source file lies inside it."""
    if not isinstance(dest, (str, os.PathLike)) or not os.fspath(dest).strip():
        raise ValueError(f"{WHERE}: dest must be a directory path, got {dest!r}")
    path = os.path.abspath(os.fspath(dest))
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{WHERE}: dest {path!r} exists and is not a directory")
    if os.path.isdir(path):
        entries = sorted(os.listdir(path))
        if entries and read_marker(path) is None:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise ValueError(
                f"{WHERE}: dest {path!r} exists and is not a threadx output (it holds {shown} "
                f"and no {MARKER} marker); give a new or empty directory, or the directory of a "
                "previous threadx.distributed run to replace it"
            )
    inside = [f for f in source_files if f.startswith(path + os.sep)]
    if inside:
        raise ValueError(
            f"{WHERE}: source file {inside[0]!r} lies inside dest {path!r}; the job would "
            "replace its own input: write to another directory"
        )
    return path


def write_marker(dest: str, schema: pl.Schema, meta: dict[str, Any]) -> None:
    path = os.path.join(dest, MARKER)
    temp = temp_path(path)
    meta = {"format": FORMAT, **meta}
    pl.LazyFrame(schema=schema).sink_parquet(temp, metadata={META_KEY: json.dumps(meta)})
    publish(temp, path)


def _remove_leftovers(dest: str) -> None:
    """Temporary files of killed attempts and a previous run's staging directory."""
    for name in os.listdir(dest):
        if _is_temp(name):
            os.remove(os.path.join(dest, name))
    shutil.rmtree(os.path.join(dest, STAGING), ignore_errors=True)


def claim(dest: str, schema: pl.Schema, meta: dict[str, Any]) -> None:
    """Creates ``dest`` (or takes over a previous output) and marks it as being written."""
    os.makedirs(dest, exist_ok=True)
    _remove_leftovers(dest)
    write_marker(dest, schema, {**meta, "state": "running", "files": []})


def finish(dest: str, files: Sequence[str], schema: pl.Schema, meta: dict[str, Any]) -> None:
    """Removes what this run did not write (stale parts of a previous run, temporary files,
    staging) and marks ``dest`` complete with its file list."""
    keep = {os.path.basename(f) for f in files}
    for name in os.listdir(dest):
        if is_part(name) and name not in keep:
            os.remove(os.path.join(dest, name))
    _remove_leftovers(dest)
    write_marker(dest, schema, {**meta, "state": "complete", "files": sorted(keep)})


def discard(dest: str, files: Sequence[str], schema: pl.Schema, meta: dict[str, Any]) -> None:
    """Removes this run's part files (a run whose result is wrong) and marks ``dest`` failed."""
    for f in files:
        if os.path.exists(f):
            os.remove(f)
    _remove_leftovers(dest)
    write_marker(dest, schema, {**meta, "state": "failed", "files": []})


def scan(dest: str | os.PathLike[str]) -> pl.LazyFrame:
    """The output of a completed run as one LazyFrame (its part files in bucket order)."""
    path = os.path.abspath(os.fspath(dest))
    meta = read_marker(path)
    if meta is None:
        raise ValueError(f"threadx.distributed.scan: {path!r} is not a threadx output")
    if meta.get("state") != "complete":
        raise ValueError(
            f"threadx.distributed.scan: the run writing {path!r} did not complete "
            f"(state {meta.get('state')!r}); run it again"
        )
    files = [os.path.join(path, f) for f in meta["files"]]
    if not files:  # no rows: the marker carries the schema
        return pl.scan_parquet(os.path.join(path, MARKER))
    return pl.scan_parquet(files)
