"""threadx.distributed on Ray: one local cluster (``ray.init(num_cpus=2)``) for the whole module,
both source layouts against the one-process result bit for bit, a rerun into the same
destination, and a worker process killed mid-run. Ray is a test requirement (requirements-dev.txt
and requirements-lowest.txt), so a missing Ray fails here rather than skipping.

The engine-independent checks (bad input, the output directory's rules, engine="local") are in
test_distributed_local.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest
import ray
import threadx.distributed as txd
from distributed_data import (
    DAYS,
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

ROWS_TOTAL = frame().height


@pytest.fixture(scope="module")
def cluster():
    """A two-CPU local Ray cluster, started once: starting one takes seconds."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return write_layouts(tmp_path_factory.mktemp("distributed-ray"))


def _run(source: str, dest: str, ex: dict[str, pl.Expr] | None = None, **kw) -> txd.Summary:
    return txd.compute(
        source, ex or exprs(), by="symbol", order_by="ts", dest=dest, engine="ray", **kw
    )


@pytest.mark.parametrize("layout", ["time", "key"])
def test_ray_equals_one_process(cluster, data, tmp_path, layout):
    s = _run(data[layout], str(tmp_path / "out"), buckets=4)
    assert (s.layout, s.engine, s.workers) == (layout, "ray", 2)
    assert (s.rows, s.series) == (ROWS_TOTAL, SYMBOLS)
    assert s.tasks == (DAYS + 4 if layout == "time" else 4)
    assert len(s.task_seconds) == s.tasks
    got = txd.scan(s.dest).collect().sort("symbol", "ts")
    assert_frames_bits_equal(got, reference(data[layout], exprs()))


def test_ray_rerun_same_destination(cluster, data, tmp_path):
    dest = str(tmp_path / "out")
    first = _run(data["time"], dest, buckets=4)
    second = _run(data["time"], dest, buckets=3)  # fewer buckets: part-00003 must go
    assert len(first.files) == 4 and len(second.files) == 3
    assert sorted(os.listdir(dest)) == sorted(
        [txd.MARKER, *(os.path.basename(f) for f in second.files)]
    )
    got = txd.scan(dest).collect()
    assert got.height == ROWS_TOTAL  # no row twice
    assert_frames_bits_equal(got.sort("symbol", "ts"), reference(data["time"], exprs()))


@pytest.mark.parametrize("layout", ["time", "key"])
def test_ray_worker_killed_mid_run(cluster, data, tmp_path, layout):
    """The first task to compute kills its own Ray worker (SIGKILL) while it streams its bucket;
    Ray retries the task on a new worker and the output is whole and identical."""
    marker = tmp_path / "killed.pid"
    ex = {
        **exprs(),
        "kill": pl.col("close").map_batches(die_once(str(marker)), return_dtype=pl.Float64),
    }
    dest = str(tmp_path / "out")
    s = _run(data[layout], dest, ex, buckets=4)
    assert_dead(int(Path(marker).read_text()))  # a worker really died
    got = txd.scan(dest).collect().sort("symbol", "ts")
    assert got.height == s.rows == ROWS_TOTAL
    assert_bits_equal(got["kill"], got["close"], "kill")
    assert_frames_bits_equal(got.drop("kill"), reference(data[layout], exprs()))
    # Nothing of the killed attempt is left: no temporary file, no staging directory.
    assert sorted(os.listdir(dest)) == sorted([txd.MARKER, *map(os.path.basename, s.files)])


def test_ray_connected_to_another_cluster_is_refused(cluster, data, tmp_path):
    """An address naming a cluster other than the one this process is connected to."""
    import socket

    with socket.socket() as srv:  # something answers there, but it is not our cluster
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        with pytest.raises(ValueError, match="already connected to the Ray cluster"):
            _run(data["time"], str(tmp_path / "out"), address=f"127.0.0.1:{port}")
    assert not (tmp_path / "out").exists()


def test_ray_address_of_the_connected_cluster(cluster, data, tmp_path):
    """The connected cluster's own address passes the reachability check and is used."""
    address = ray.get_runtime_context().gcs_address
    s = _run(data["key"], str(tmp_path / "out"), address=address, buckets=2)
    assert (s.engine, s.rows, s.tasks) == ("ray", ROWS_TOTAL, 2)
