"""threadx.distributed without Ray: engine="local" (a process pool), the checks made before any
work, the output directory's rules, and the stable key hash. The Ray engine's tests are in
test_distributed.py (their own file, with one local Ray cluster for the module)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import polars as pl
import pytest
import threadx.distributed as txd
from distributed_data import (
    SYMBOLS,
    assert_dead,
    assert_frames_bits_equal,
    die_once,
    exprs,
    frame,
    reference,
    write_layouts,
)
from helpers import assert_bits_equal
from threadx.distributed import buckets, output

ROWS_TOTAL = frame().height


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return write_layouts(tmp_path_factory.mktemp("distributed-local"))


def _run(source: str, dest: str, **kw) -> txd.Summary:
    return txd.compute(source, exprs(), by="symbol", order_by="ts", dest=dest, engine="local", **kw)


@pytest.mark.parametrize("layout", ["time", "key"])
def test_local_engine_equals_one_process(data, tmp_path, layout):
    dest = str(tmp_path / "out")
    s = _run(data[layout], dest, buckets=4, max_workers=2)
    assert s.layout == layout  # auto: the hive column `symbol` is the key; day files are not
    assert (s.rows, s.series, s.engine, s.workers) == (ROWS_TOTAL, SYMBOLS, "local", 2)
    # time: 3 routing tasks + 4 buckets; key: 20 symbol directories hashed into 4 buckets
    assert s.tasks == (3 + 4 if layout == "time" else 4)
    assert 1 <= len(s.files) <= 4 and all(os.path.isfile(f) for f in s.files)
    got = txd.scan(dest).collect().sort("symbol", "ts")
    assert_frames_bits_equal(got, reference(data[layout], exprs()))
    for f in s.files:  # each part holds whole series, sorted
        part = pl.read_parquet(f)
        assert part.equals(part.sort("symbol", "ts"))
    # The directory reads as one dataset with Polars alone (the marker is Parquet, no rows).
    assert pl.scan_parquet(dest).select(pl.len()).collect().item() == ROWS_TOTAL


def test_previous_output_is_a_key_layout_source(data, tmp_path):
    first = _run(data["time"], str(tmp_path / "a"), buckets=3, max_workers=2)
    again = _run(first.dest, str(tmp_path / "b"), max_workers=2)
    assert again.layout == "key" and again.tasks == len(first.files)
    got = txd.scan(again.dest).collect().sort("symbol", "ts")
    assert_frames_bits_equal(got, reference(data["time"], exprs()))


def test_killed_local_worker_is_retried(data, tmp_path):
    marker = str(tmp_path / "killed.pid")
    ex = {**exprs(), "kill": pl.col("close").map_batches(die_once(marker), return_dtype=pl.Float64)}
    dest = str(tmp_path / "out")
    s = txd.compute(
        data["time"], ex, by="symbol", order_by="ts", dest=dest, engine="local",
        buckets=4, max_workers=2,
    )  # fmt: skip
    assert_dead(int(Path(marker).read_text()))  # a worker really died mid-run
    got = txd.scan(dest).collect().sort("symbol", "ts")
    assert got.height == s.rows == ROWS_TOTAL
    assert_bits_equal(got["kill"], got["close"], "kill")
    assert_frames_bits_equal(got.drop("kill"), reference(data["time"], exprs()))
    assert sorted(os.listdir(dest)) == sorted([txd.MARKER, *map(os.path.basename, s.files)])


def test_key_layout_assertion_is_checked(data, tmp_path):
    dest = tmp_path / "out"
    with pytest.raises(txd.LayoutError, match="more than one source partition"):
        _run(data["time"], str(dest), layout="key", buckets=3, max_workers=2)  # a task per file
    assert sorted(os.listdir(dest)) == [txd.MARKER]  # no wrong rows left behind
    with pytest.raises(ValueError, match="did not complete"):
        txd.scan(dest)


# --------------------------------------------------------------------------------------------
# bad input: a clear error, and nothing written
# --------------------------------------------------------------------------------------------


def _refused(source, dest, match: str, exc: type = ValueError, **kw) -> None:
    t = time.perf_counter()
    with pytest.raises(exc, match=match):
        txd.compute(source, exprs(), dest=dest, **{"by": "symbol", "order_by": "ts", **kw})
    assert time.perf_counter() - t < 10


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_missing_by_or_order_by_column(data, tmp_path, engine):
    dest = tmp_path / "out"
    _refused(data["time"], str(dest), r"by column 'sym' not in the source", by="sym", engine=engine)
    _refused(
        data["key"], str(dest), r"order_by columns 'time', 'seq' not in the source; its columns "
        r"are 'ts', 'open', 'high', 'low', 'close', 'volume', 'symbol'",
        order_by=["time", "seq"], engine=engine,
    )  # fmt: skip
    assert not dest.exists()


def test_non_parquet_source(data, tmp_path):
    csv = tmp_path / "bars"
    csv.mkdir()
    pl.read_parquet(os.path.join(data["time"], "day0.parquet")).write_csv(csv / "day0.parquet")
    dest = tmp_path / "out"
    _refused(str(csv), str(dest), r"day0.parquet' is not a Parquet file", engine="local")
    _refused(str(tmp_path / "nothing"), str(dest), r"does not exist", engine="local")
    _refused(str(tmp_path / "*.parquet"), str(dest), r"matches no file", engine="local")
    assert not dest.exists()


def test_unreachable_ray_address(data, tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dest = tmp_path / "out"
    _refused(
        data["time"], str(dest), rf"cannot reach a Ray cluster at '127.0.0.1:{port}'",
        exc=ConnectionError, engine="ray", address=f"127.0.0.1:{port}",
    )  # fmt: skip
    _refused(data["time"], str(dest), "address must be", engine="ray", address="nowhere")
    assert not dest.exists()


def test_dest_that_is_not_a_threadx_output(data, tmp_path):
    dest = tmp_path / "results"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    _refused(data["time"], str(dest), r"exists and is not a threadx output", engine="local")
    assert os.listdir(dest) == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    _refused(data["time"], str(tmp_path / "file"), r"is not a directory", engine="local")
    _refused(data["key"], os.path.join(data["key"], "out"), r"inside the source", engine="local")


def test_bad_arguments(data, tmp_path):
    dest = str(tmp_path / "out")
    _refused(data["time"], dest, r"engine must be 'ray' or 'local'", engine="spark")
    _refused(
        data["time"], dest, r"gpus_per_task .* engine='local'", engine="local", gpus_per_task=1
    )
    _refused(data["time"], dest, r"layout must be", engine="local", layout="daily")
    _refused(data["time"], dest, r"buckets must be an integer", engine="local", buckets=0)
    with pytest.raises(ValueError, match=r"exprs\['x'\] must be a Polars expression"):
        txd.compute(data["time"], {"x": 1}, by="symbol", order_by="ts", dest=dest, engine="local")
    with pytest.raises(ValueError, match="do not apply to the source"):
        txd.compute(
            data["time"], {"x": pl.col("nope") * 2}, by="symbol", order_by="ts", dest=dest,
            engine="local",
        )  # fmt: skip
    assert not os.path.exists(dest)


# --------------------------------------------------------------------------------------------
# the stable hash and the rerun rules
# --------------------------------------------------------------------------------------------


def test_key_hash_is_stable_and_follows_over_grouping():
    # Fixed values: a change of the hash would move every series of an existing output.
    assert buckets.key_hash(["AAPL"]) == buckets.key_hash(("AAPL",))
    assert buckets.key_hash(["AAPL"]) % 1000 == 427
    assert buckets.key_hash([0.0]) == buckets.key_hash([-0.0])
    assert buckets.key_hash([float("nan")]) == buckets.key_hash([-float("nan")])
    assert buckets.key_hash([1]) != buckets.key_hash(["1"]) != buckets.key_hash([None])
    assert buckets.key_hash(["a", "b"]) != buckets.key_hash(["ab"])


def test_rerun_replaces_and_removes_stale_parts(data, tmp_path):
    dest = str(tmp_path / "out")
    first = _run(data["time"], dest, buckets=5, max_workers=2)
    (tmp_path / "out" / ".part-00001.parquet.dead.tmp").write_text("a killed attempt's file")
    second = _run(data["time"], dest, buckets=2, max_workers=2)
    assert len(first.files) == 5 and len(second.files) == 2
    assert sorted(os.listdir(dest)) == sorted(
        [txd.MARKER, "part-00000.parquet", "part-00001.parquet"]
    )
    got = txd.scan(dest).collect()
    assert got.height == ROWS_TOTAL  # no row twice
    assert_frames_bits_equal(got.sort("symbol", "ts"), reference(data["time"], exprs()))
    assert output.read_marker(dest)["state"] == "complete"
