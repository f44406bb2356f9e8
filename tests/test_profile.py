"""The persisted performance profile and the planner: file round trip, EWMA arithmetic, size
buckets, batching, foreign fingerprints, corrupt and unwritable files, concurrent writers, the
planner's decisions on synthetic profiles (``threadx.explain``), ``THREADX_LOG`` and ``autotune``.

The in-process profile is loaded once per process; the tests that need a clean one point
``THREADX_PROFILE`` at a temporary file and call ``threadx.profile.reload()`` (the ``fresh``
fixture, which restores the suite's profile afterwards). Anything that needs a fresh *process*
(first load, warnings printed once per process, atexit) runs in a subprocess with its own
``THREADX_PROFILE``.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import threadx
from helpers import profile_at
from threadx.planning import INDICATORS

EWMA_ALPHA = 0.25
OUTLIER_CLIP = 3.0
DEFAULT_SMALL_ROWS = 5_000
WARNING = "threadx: warning"


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def bucket(rows: int) -> str:
    """The documented size bucket: rows in [2^k, 2^(k+1)) -> "2^k"."""
    return f"2^{max(rows, 1).bit_length() - 1}"


def ns_per_row(rows: int, seconds: float) -> float:
    return seconds * 1e9 / max(rows, 1)


def expected_stat(rows: int, seconds: list[float]) -> dict:
    """samples / ewma / best computed independently from the documented formula."""
    ewma = best = None
    for s in seconds:
        x = ns_per_row(rows, s)
        if ewma is None:
            ewma = best = x
        else:
            best = min(best, x)
            ewma += EWMA_ALPHA * (min(x, OUTLIER_CLIP * ewma) - ewma)
    return {"samples": len(seconds), "ewma_ns_per_row": ewma, "best_ns_per_row": best}


def worker_cap() -> int:
    p = max(threadx.cpu_info().physical_cores, 1)
    return p - 1 if p >= 8 else p


def expected_candidates() -> list[str]:
    cap = worker_cap()
    workers, k = [1], 2
    while k < cap:
        workers.append(k)
        k *= 2
    if cap > 1:
        workers.append(cap)
    return [f"cpu:{w}" for w in workers]


def own_id() -> str:
    return threadx.profile.fingerprint()["id"]


def own_fingerprint() -> dict:
    fp = dict(threadx.profile.fingerprint())
    fp.pop("id")
    return fp


def record_ns(indicator: str, rows: int, backend: str, ns: float, times: int) -> None:
    """Records `times` samples of `ns` ns/row."""
    for _ in range(times):
        threadx.profile.record(indicator, rows, backend, ns * rows / 1e9)


def child_env(profile: Path | str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("THREADX_LOG", "THREADX_NUM_THREADS")}
    env["THREADX_PROFILE"] = str(profile)
    env.update(extra)
    return env


def run_child(code: str, profile: Path | str, *args: str, **extra: str):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=child_env(profile, **extra),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def warning_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if WARNING in line]


# A child that runs sma(period=10) on 1,000 rows, flushes, saves the output and reports the
# profile's state as JSON on stdout.
SMA_CHILD = """
    import json, sys
    import numpy as np, polars as pl, threadx
    close = 100.0 + np.cumsum(np.random.default_rng(5).normal(0.0, 1.0, 1000))
    out = pl.DataFrame({{"close": close}}).select(threadx.sma("close", period=10)).to_series()
    np.save(sys.argv[1], out.to_numpy())
    {flush}
    print(json.dumps({{
        "path": threadx.profile.path(),
        "memory_only": threadx.profile.memory_only_reason(),
        "timings": threadx.profile.machine()["timings"],
    }}))
"""


def check_sma_output(npy: Path) -> None:
    close = 100.0 + np.cumsum(np.random.default_rng(5).normal(0.0, 1.0, 1000))
    got = np.load(npy)
    want = np.convolve(close, np.ones(10) / 10.0, mode="valid")
    assert np.isnan(got[:9]).all()
    np.testing.assert_allclose(got[9:], want, rtol=1e-12, atol=0)


@pytest.fixture
def fresh(tmp_path):
    """This process profiles into an empty temporary file for the test; restored afterwards."""
    with profile_at(tmp_path / "profile.json") as path:
        yield path


@pytest.fixture
def unforced():
    threadx.set_threads(None)
    if threadx.get_threads() is not None:
        pytest.skip("THREADX_NUM_THREADS forces a worker count in this environment")


# --------------------------------------------------------------------------------------------
# 1, 2: round trip, EWMA, buckets, batching
# --------------------------------------------------------------------------------------------


def test_round_trip_file_equals_show_and_own_computation(fresh: Path):
    assert threadx.profile.path() == str(fresh)
    assert threadx.profile.memory_only_reason() is None
    secs = [2.0e-5, 3.5e-5, 1.25e-5, 4.0e-5, 2.2e-5]
    for s in secs:
        threadx.profile.record("ema", 3000, "cpu:1", s)
    threadx.profile.record("rsi", 70_000, "cpu:2", 0.004)
    assert not fresh.exists(), "samples must be written in batches, not per call"

    threadx.profile.flush()
    with open(fresh) as f:
        data = json.load(f)
    assert data["schema_version"] == 1
    assert set(data["machines"]) == {own_id()}
    entry = data["machines"][own_id()]
    assert entry["fingerprint"] == own_fingerprint()
    assert set(entry) >= {"fingerprint", "updated_unix", "timings", "links", "balance"}
    assert entry["updated_unix"] >= time.time() - 600
    assert set(entry["timings"]) == {"ema", "rsi"}
    assert set(entry["timings"]["ema"]) == {"2^11"}
    assert set(entry["timings"]["ema"]["2^11"]) == {"cpu:1"}
    stat = entry["timings"]["ema"]["2^11"]["cpu:1"]
    want = expected_stat(3000, secs)
    assert stat["samples"] == want["samples"]
    assert stat["ewma_ns_per_row"] == pytest.approx(want["ewma_ns_per_row"], rel=1e-12)
    assert stat["best_ns_per_row"] == pytest.approx(want["best_ns_per_row"], rel=1e-12)
    assert stat["last_unix"] >= time.time() - 600
    rsi = entry["timings"]["rsi"]["2^16"]["cpu:2"]
    assert rsi["samples"] == 1
    assert rsi["ewma_ns_per_row"] == pytest.approx(ns_per_row(70_000, 0.004), rel=1e-12)

    assert threadx.profile.show() == data
    assert threadx.profile.machine() == entry

    # the file is what a new load sees, and later samples add to it
    threadx.profile.reload()
    assert threadx.profile.show() == data
    more = [1.0e-5, 6.0e-5]
    for s in more:
        threadx.profile.record("ema", 3000, "cpu:1", s)
    threadx.profile.flush()
    with open(fresh) as f:
        again = json.load(f)["machines"][own_id()]["timings"]["ema"]["2^11"]["cpu:1"]
    want = expected_stat(3000, secs + more)
    assert again["samples"] == 7
    assert again["ewma_ns_per_row"] == pytest.approx(want["ewma_ns_per_row"], rel=1e-12)
    assert again["best_ns_per_row"] == pytest.approx(want["best_ns_per_row"], rel=1e-12)


def test_ewma_arithmetic_is_exact(fresh: Path):
    rows = 4096
    secs = [1e-5, 3e-5, 2e-6, 5e-5, 4.5e-6, 7.77e-6, 1.234e-5]
    for s in secs:
        threadx.profile.record("wma", rows, "cpu:2", s)
    # non-finite and negative measurements are ignored
    threadx.profile.record("wma", rows, "cpu:2", float("nan"))
    threadx.profile.record("wma", rows, "cpu:2", float("inf"))
    threadx.profile.record("wma", rows, "cpu:2", -1.0)
    threadx.profile.flush()
    with open(fresh) as f:
        stat = json.load(f)["machines"][own_id()]["timings"]["wma"]["2^12"]["cpu:2"]

    ewma = secs[0] * 1e9 / rows
    best = ewma
    for s in secs[1:]:
        x = s * 1e9 / rows
        best = min(best, x)
        x = min(x, OUTLIER_CLIP * ewma)  # one cold call counts at most 3x the average
        ewma = ewma + 0.25 * (x - ewma)
    assert stat["samples"] == len(secs)
    assert stat["ewma_ns_per_row"] == ewma  # bit-exact: the same IEEE operations
    assert stat["best_ns_per_row"] == best
    # first sample seeds the average
    threadx.profile.record("wma", rows, "cpu:4", 8e-6)
    one = threadx.profile.machine()["timings"]["wma"]["2^12"]["cpu:4"]
    assert one["samples"] == 1
    assert one["ewma_ns_per_row"] == one["best_ns_per_row"] == 8e-6 * 1e9 / rows


def test_size_buckets_are_powers_of_two(fresh: Path):
    cases = {1: "2^0", 255: "2^7", 256: "2^8", 511: "2^8", 512: "2^9", 1023: "2^9"}
    cases |= {1024: "2^10", 5000: "2^12", 1_000_000: "2^19", 1 << 20: "2^20"}
    for rows, want in cases.items():
        assert bucket(rows) == want
        threadx.profile.record("roc", rows, "cpu:1", 1e-6)
        assert threadx.explain("roc", rows).size_bucket == want
    got = threadx.profile.machine()["timings"]["roc"]
    assert sorted(got) == sorted(set(cases.values()))
    assert got["2^8"]["cpu:1"]["samples"] == 2
    assert got["2^9"]["cpu:1"]["samples"] == 2
    assert got["2^20"]["cpu:1"]["samples"] == 1


def test_indicator_calls_record_samples_from_256_rows(fresh: Path, unforced):
    import polars as pl

    frame = pl.DataFrame({"close": np.linspace(1.0, 2.0, 300)})
    frame.head(255).select(threadx.sma("close", period=5))
    assert "sma" not in threadx.profile.machine()["timings"]
    frame.head(256).select(threadx.sma("close", period=5))
    frame.select(threadx.sma("close", period=5))
    frame.select(threadx.bollinger("close", period=5))  # one call, three outputs: one sample
    timings = threadx.profile.machine()["timings"]
    assert timings["sma"] == {"2^8": timings["sma"]["2^8"]}
    assert set(timings["sma"]["2^8"]) == {"cpu:1"}  # small input: one worker
    assert timings["sma"]["2^8"]["cpu:1"]["samples"] == 2
    assert timings["bollinger"]["2^8"]["cpu:1"]["samples"] == 1
    assert threadx.profile.machine()["timings"]["sma"]["2^8"]["cpu:1"]["ewma_ns_per_row"] > 0


def test_calls_inside_over_and_group_by_are_not_recorded(fresh: Path, unforced):
    """Documented: calls inside .over() / group_by run in Polars' parallel sections with a fixed
    plan (one worker) and are not recorded."""
    import polars as pl

    groups, size = 4, 20_000
    df = pl.DataFrame(
        {"g": np.repeat(np.arange(groups), size), "close": np.linspace(1.0, 2.0, groups * size)}
    )
    df.select(threadx.sma("close", period=5).over("g"))
    df.group_by("g").agg(threadx.ema("close", period=5))
    df.lazy().group_by("g").agg(threadx.wma("close", period=5)).collect()
    timings = threadx.profile.machine()["timings"]
    assert not {"sma", "ema", "wma"} & set(timings), timings


def test_background_thread_flushes_after_three_seconds(fresh: Path):
    threadx.profile.record("obv", 1000, "cpu:1", 1e-5)
    time.sleep(3.2)
    threadx.profile.record("obv", 1000, "cpu:1", 2e-5)  # due: a background flush starts
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not fresh.exists():
        time.sleep(0.05)
    assert fresh.exists(), "no background flush within 10 s"
    with open(fresh) as f:
        stat = json.load(f)["machines"][own_id()]["timings"]["obv"]["2^9"]["cpu:1"]
    assert stat["samples"] == 2


def test_samples_are_written_at_exit(tmp_path: Path):
    profile = tmp_path / "profile.json"
    code = """
        import threadx
        for s in (1e-5, 2e-5, 3e-5):
            threadx.profile.record("macd", 2000, "cpu:1", s)
    """
    proc = run_child(code, profile)
    assert proc.returncode == 0, proc.stderr
    with open(profile) as f:
        data = json.load(f)
    stat = data["machines"][own_id()]["timings"]["macd"]["2^10"]["cpu:1"]
    assert stat["samples"] == 3
    want = expected_stat(2000, [1e-5, 2e-5, 3e-5])
    assert stat["ewma_ns_per_row"] == pytest.approx(want["ewma_ns_per_row"], rel=1e-12)


# --------------------------------------------------------------------------------------------
# 3: other fingerprints
# --------------------------------------------------------------------------------------------

FOREIGN_ID = "0123456789abcdef"


def foreign_entry(ewma: float, best: float, samples: int = 9) -> dict:
    """Another machine's entry: this machine's fingerprint with another CPU, timings for every
    candidate backend of sma at 2^20 and 2^21 (enough samples to be trusted)."""
    timings = {
        "sma": {
            b: {
                c: {
                    "samples": samples,
                    "ewma_ns_per_row": ewma,
                    "best_ns_per_row": best,
                    "last_unix": 1_700_000_000,
                }
                for c in expected_candidates()
            }
            for b in ("2^20", "2^21")
        }
    }
    fp = dict(own_fingerprint(), cpu_model="Imaginary CPU 9000 (another machine)")
    return {
        "fingerprint": fp,
        "updated_unix": 1_700_000_000,
        "timings": timings,
        "links": {},
        "balance": {},
    }


def test_foreign_entry_is_ignored_by_the_planner(fresh: Path, unforced):
    foreign = foreign_entry(0.5, 0.25, samples=50)
    fresh.write_text(json.dumps({"schema_version": 1, "machines": {FOREIGN_ID: foreign}}))
    threadx.profile.reload()
    assert threadx.profile.machine()["timings"] == {}
    plan = threadx.explain("sma", 1 << 20)
    assert plan.profile_entries == []
    assert all(c.samples == 0 and c.predicted_ms is None for c in plan.candidates)
    if worker_cap() > 1:
        assert "too few samples" in plan.reason
    # our own samples do not mix with the foreign ones either
    threadx.profile.record("sma", 1 << 20, "cpu:1", 0.002)
    threadx.profile.flush()
    plan = threadx.explain("sma", 1 << 20)
    assert [c.samples for c in plan.candidates] == [1] + [0] * (len(plan.candidates) - 1)
    assert (
        threadx.profile.show()["machines"][FOREIGN_ID]["timings"]["sma"]["2^20"]["cpu:1"]["samples"]
        == 50
    )


def test_foreign_entry_is_kept_byte_for_byte(fresh: Path):
    """Realistic statistics (arbitrary doubles, as EWMAs are) must survive other processes'
    writes unchanged: every value, every bit."""
    rng = random.Random(1)
    foreign = foreign_entry(0.0, 0.0)
    for by_backend in foreign["timings"]["sma"].values():
        for stat in by_backend.values():
            stat["ewma_ns_per_row"] = rng.random() * 10
            stat["best_ns_per_row"] = rng.uniform(1e-3, 1e3)
            stat["samples"] = rng.randint(1, 99)
    foreign["timings"]["ema"] = {
        f"2^{k}": {"cpu:1": dict(foreign["timings"]["sma"]["2^20"]["cpu:1"])} for k in range(40)
    }
    for by_backend in foreign["timings"]["ema"].values():
        by_backend["cpu:1"]["ewma_ns_per_row"] = rng.random() * 100
        by_backend["cpu:1"]["best_ns_per_row"] = rng.random()
    original = json.loads(json.dumps(foreign))
    fresh.write_text(json.dumps({"schema_version": 1, "machines": {FOREIGN_ID: foreign}}))
    threadx.profile.reload()
    for _ in range(3):
        threadx.profile.record("rsi", 5000, "cpu:1", 1e-4)
        threadx.profile.flush()
    with open(fresh) as f:
        data = json.load(f)
    assert set(data["machines"]) == {FOREIGN_ID, own_id()}
    changed = [
        (ind, b, c, stat, original["timings"][ind][b][c])
        for ind, by_bucket in data["machines"][FOREIGN_ID]["timings"].items()
        for b, by_backend in by_bucket.items()
        for c, stat in by_backend.items()
        if stat != original["timings"][ind][b][c]
    ]
    assert not changed, f"{len(changed)} foreign statistics changed, e.g. {changed[:2]}"
    assert data["machines"][FOREIGN_ID] == original


def test_foreign_entry_with_newer_fields_is_kept(fresh: Path):
    """The schema promises that an older threadx reads a newer file of the same schema version;
    entries of other builds must then survive this build's writes, fields it does not know
    included."""
    foreign = foreign_entry(1.5, 1.25)
    foreign["fingerprint"]["npus"] = ["npu-0"]
    foreign["numa"] = {"nodes": 2}
    foreign["timings"]["sma"]["2^20"]["cpu:1"]["p95_ns_per_row"] = 2.0
    original = json.loads(json.dumps(foreign))
    fresh.write_text(json.dumps({"schema_version": 1, "machines": {FOREIGN_ID: foreign}}))
    threadx.profile.reload()
    threadx.profile.record("rsi", 5000, "cpu:1", 1e-4)
    threadx.profile.flush()
    with open(fresh) as f:
        data = json.load(f)
    assert data["machines"][FOREIGN_ID] == original


# --------------------------------------------------------------------------------------------
# 4: unusable files
# --------------------------------------------------------------------------------------------

UNUSABLE = {
    "corrupt": b'{"schema_version": 1, "machines": {"x": nonsense}}',
    "truncated": b'{"schema_version": 1, "machines": {"abc": {"fingerprint": {"schema_ver',
    "empty": b"",
    "whitespace": b"  \n\t\n",
    "schema99": b'{"schema_version": 99, "machines": {}}',
    "binary": bytes(range(256)) + b"\x00\xff\xfe garbage \x89PNG",
    "wrong-layout": b'{"schema_version": 1, "machines": 5}',
    "not-an-object": b"[1, 2, 3]",
}


@pytest.mark.parametrize("kind", list(UNUSABLE))
def test_unusable_file_is_moved_aside_once(tmp_path: Path, kind: str):
    profile = tmp_path / "profile.json"
    profile.write_bytes(UNUSABLE[kind])
    npy = tmp_path / "out.npy"
    proc = run_child(SMA_CHILD.format(flush="threadx.profile.flush()"), profile, str(npy))
    assert proc.returncode == 0, proc.stderr
    check_sma_output(npy)

    warnings = warning_lines(proc.stderr)
    assert len(warnings) == 1, proc.stderr
    aside = list(tmp_path.glob("profile.json.corrupt-*"))
    assert len(aside) == 1, os.listdir(tmp_path)
    assert re.fullmatch(r"profile\.json\.corrupt-\d+-\d+", aside[0].name)  # ns time, pid
    assert "moved" in warnings[0] and aside[0].name in warnings[0], warnings[0]
    assert aside[0].read_bytes() == UNUSABLE[kind]

    state = json.loads(proc.stdout)
    assert state["path"] == str(profile) and state["memory_only"] is None
    with open(profile) as f:
        data = json.load(f)
    assert data["schema_version"] == 1
    assert set(data["machines"]) == {own_id()}
    assert data["machines"][own_id()]["timings"] == state["timings"]
    assert data["machines"][own_id()]["timings"]["sma"]["2^9"]["cpu:1"]["samples"] == 1
    assert not list(tmp_path.glob("profile.json.tmp*"))


def test_file_corrupted_between_writes_is_moved_aside_each_time(tmp_path: Path):
    profile = tmp_path / "profile.json"
    code = """
        import sys, threadx
        threadx.profile.record("sma", 1000, "cpu:1", 1e-5)
        threadx.profile.flush()
        open(sys.argv[1], "wb").write(b"\\x00garbage{")
        threadx.profile.record("sma", 1000, "cpu:1", 2e-5)
        threadx.profile.flush()
        open(sys.argv[1], "wb").write(b"{")
        threadx.profile.record("sma", 1000, "cpu:1", 3e-5)
        threadx.profile.flush()
    """
    proc = run_child(code, profile, str(profile))
    assert proc.returncode == 0, proc.stderr
    assert len(warning_lines(proc.stderr)) == 2, proc.stderr  # one warning per corruption
    aside = list(tmp_path.glob("profile.json.corrupt-*"))
    assert sorted(a.read_bytes() for a in aside) == [b"\x00garbage{", b"{"]
    with open(profile) as f:
        data = json.load(f)
    assert data["machines"][own_id()]["timings"]["sma"]["2^9"]["cpu:1"]["samples"] >= 1


# --------------------------------------------------------------------------------------------
# 5: unwritable locations
# --------------------------------------------------------------------------------------------


def test_unusable_location_degrades_to_memory(tmp_path: Path):
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    profile = afile / "profile.json"
    npy = tmp_path / "out.npy"
    code = SMA_CHILD.format(flush="threadx.profile.flush()")
    proc = run_child(code, profile, str(npy))
    assert proc.returncode == 0, proc.stderr
    check_sma_output(npy)
    assert len(warning_lines(proc.stderr)) == 1, proc.stderr
    assert str(profile) in warning_lines(proc.stderr)[0]
    state = json.loads(proc.stdout)
    assert state["path"] is None
    assert state["memory_only"] and str(profile) in state["memory_only"]
    # profiling goes on in memory
    assert state["timings"]["sma"]["2^9"]["cpu:1"]["samples"] == 1
    assert afile.read_text() == "not a directory"
    assert sorted(os.listdir(tmp_path)) == ["afile", "out.npy"]


def unwritable_lock(tmp_path: Path) -> Path:
    """A profile location that can be read (no file yet) but never written, even as root: the
    lock file's name is taken by a directory."""
    d = tmp_path / "prof"
    d.mkdir()
    (d / "profile.json.lock").mkdir()
    return d / "profile.json"


def test_unwritable_location_warns_once_at_exit(tmp_path: Path):
    profile = unwritable_lock(tmp_path)
    npy = tmp_path / "out.npy"
    proc = run_child(SMA_CHILD.format(flush=""), profile, str(npy))
    assert proc.returncode == 0, proc.stderr
    check_sma_output(npy)
    assert len(warning_lines(proc.stderr)) == 1, proc.stderr
    assert "cannot write" in proc.stderr
    assert not profile.exists()


def test_unwritable_location_on_flush_warns_once(tmp_path: Path):
    profile = unwritable_lock(tmp_path)
    npy = tmp_path / "out.npy"
    code = SMA_CHILD.format(flush="threadx.profile.flush(); threadx.profile.flush()")
    proc = run_child(code, profile, str(npy))
    assert proc.returncode == 0, proc.stderr
    check_sma_output(npy)
    state = json.loads(proc.stdout)
    assert state["path"] is None
    assert state["memory_only"] and "cannot write" in state["memory_only"]
    assert state["timings"]["sma"]["2^9"]["cpu:1"]["samples"] == 1
    assert not profile.exists()
    mentions = [line for line in proc.stderr.splitlines() if "cannot write the profile" in line]
    assert len(mentions) == 1, f"the failure is reported more than once:\n{proc.stderr}"


# --------------------------------------------------------------------------------------------
# 6: concurrent writers
# --------------------------------------------------------------------------------------------

WRITER = """
    import os, sys, time
    import threadx
    go, ready, index, k = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    threadx.profile.path()  # load the profile before the start signal
    open(ready, "w").close()
    while not os.path.exists(go):
        time.sleep(0.002)
    for i in range(k):
        threadx.profile.record("sma", 5000, "cpu:1", 1e-5 * (1 + (i + index) % 7))
        if i % 5 == 0:
            threadx.profile.record("ema", 5000, f"cpu:{100 + index}", 1e-5)
        if (i + 1) % 10 == 0:
            threadx.profile.flush()
"""


def test_concurrent_writers_lose_no_samples(tmp_path: Path):
    writers, k = 8, 50
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    sync = tmp_path / "sync"
    sync.mkdir()
    profile = data_dir / "profile.json"
    go = sync / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(WRITER), str(go), str(sync / f"r{i}"), str(i)]
            + [str(k)],
            env=child_env(profile),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(writers)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(list(sync.glob("r*"))) < writers:
            assert time.monotonic() < deadline, "writers did not start"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.01)
        go.touch()
        results = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err
        assert WARNING not in err, err

    with open(profile) as f:
        data = json.load(f)
    timings = data["machines"][own_id()]["timings"]
    shared = timings["sma"]["2^12"]["cpu:1"]
    assert shared["samples"] == writers * k
    assert 2.0 - 1e-9 <= shared["best_ns_per_row"] <= shared["ewma_ns_per_row"] <= 14.0 + 1e-9
    per_writer = timings["ema"]["2^12"]
    assert per_writer == {f"cpu:{100 + i}": per_writer[f"cpu:{100 + i}"] for i in range(writers)}
    assert all(s["samples"] == k // 5 for s in per_writer.values())
    assert sorted(os.listdir(data_dir)) in (
        ["profile.json"],
        ["profile.json", "profile.json.lock"],
    ), os.listdir(data_dir)


# --------------------------------------------------------------------------------------------
# 7: planner decisions
# --------------------------------------------------------------------------------------------


def test_small_inputs_get_one_worker(fresh: Path, unforced):
    for n in (0, 1, 255, 1000, DEFAULT_SMALL_ROWS - 1):
        plan = threadx.explain("sma", n)
        assert (plan.workers, plan.backend) == (1, "cpu:1"), plan
        assert plan.rows == n and plan.indicator == "sma"
        if worker_cap() > 1:
            assert "small input" in plan.reason, plan.reason
        assert threadx.optimal_workers(n, "sma") == 1
    assert threadx.optimal_workers() == worker_cap()
    assert threadx.optimal_workers(None, "rsi") == worker_cap()


def test_forced_threads_win(fresh: Path, unforced):
    try:
        threadx.set_threads(3)
        for n in (10, 1000, 1 << 20, 50_000_000):
            plan = threadx.explain("ema", n)
            assert (plan.workers, plan.backend) == (3, "cpu:3"), plan
            assert "forced" in plan.reason
            assert threadx.optimal_workers(n, "ema") == 3
        assert threadx.optimal_workers() == 3
    finally:
        threadx.set_threads(None)
    assert threadx.explain("ema", 10).workers == 1


def test_cold_start_uses_the_conservative_default(fresh: Path, unforced):
    cap = worker_cap()
    if cap == 1:
        pytest.skip("one usable core: no choice to make")
    for n in (DEFAULT_SMALL_ROWS, 1 << 20, 10_000_000):
        plan = threadx.explain("stoch", n)
        assert "too few samples" in plan.reason, plan.reason
        assert [c.backend for c in plan.candidates] == expected_candidates()
        assert [c.workers for c in plan.candidates] == [
            int(c.split(":")[1]) for c in expected_candidates()
        ]
        assert all(c.predicted_ms is None and c.samples == 0 for c in plan.candidates)
        assert plan.profile_entries == []
        assert plan.workers == min(max(n // DEFAULT_SMALL_ROWS, 1), cap)
        assert plan.backend == f"cpu:{plan.workers}"
        assert plan.size_bucket == bucket(n)


def fill(indicator: str, rows: int, ns_by_backend: dict[str, float], times: int = 3) -> None:
    for backend, ns in ns_by_backend.items():
        record_ns(indicator, rows, backend, ns, times)


def test_full_profile_picks_the_fastest_candidate(fresh: Path, unforced):
    if worker_cap() < 2:
        pytest.skip("needs at least two cores")
    rows = 1 << 20
    cands = [c.backend for c in threadx.explain("rsi", rows).candidates]
    assert cands == expected_candidates()
    fill("rsi", rows, {c: (1.0 if c == "cpu:2" else 4.0 + int(c[4:])) for c in cands})

    plan = threadx.explain("rsi", rows)
    assert (plan.backend, plan.workers) == ("cpu:2", 2), plan
    assert "fastest" in plan.reason
    stats = threadx.profile.machine()["timings"]["rsi"]["2^20"]
    for c in plan.candidates:
        assert c.samples == 3
        assert c.predicted_ms == pytest.approx(
            stats[c.backend]["ewma_ns_per_row"] * rows / 1e6, rel=1e-12
        )
    assert len(plan.profile_entries) == len(cands)
    for c in cands:
        assert any(e.startswith(f"rsi/2^20/{c}:") for e in plan.profile_entries), plan
    assert f"{plan.candidates[1].predicted_ms:.3f} ms" in plan.reason

    text = repr(plan)
    assert "pick:   cpu:2" in text and "fastest" in text
    for c in cands:
        assert c in text
    (pick_line,) = [line for line in text.splitlines() if "<- pick" in line]
    assert pick_line.split()[0] == "cpu:2"
    md = plan._repr_markdown_()
    assert "**cpu:2**" in md and "| cpu:2 |" in md and "**pick**" in md
    assert all(f"| {c} |" in md for c in cands)

    # the predictions, not the default, decide: make one worker the fastest
    fill("rsi", rows, {"cpu:1": 0.01}, times=30)
    plan = threadx.explain("rsi", rows)
    assert (plan.backend, plan.workers) == ("cpu:1", 1), plan
    assert "fastest" in plan.reason


def test_partial_profile_is_not_trusted(fresh: Path, unforced):
    if worker_cap() < 2:
        pytest.skip("needs at least two cores")
    rows = 1 << 20
    cands = expected_candidates()
    fill("atr", rows, {c: 0.5 for c in cands[1:]}, times=5)
    fill("atr", rows, {"cpu:1": 0.01}, times=2)  # the fastest, but only two samples
    plan = threadx.explain("atr", rows)
    assert "too few samples" in plan.reason, plan
    assert plan.workers == min(rows // DEFAULT_SMALL_ROWS, worker_cap())
    by = {c.backend: c for c in plan.candidates}
    assert by["cpu:1"].samples == 2 and by["cpu:1"].predicted_ms is not None
    assert all(by[c].samples == 5 for c in cands[1:])
    fill("atr", rows, {"cpu:1": 0.01}, times=1)
    assert threadx.explain("atr", rows).backend == "cpu:1"


def test_neighbouring_buckets_within_two_powers_are_borrowed(fresh: Path, unforced):
    if worker_cap() < 2:
        pytest.skip("needs at least two cores")
    cands = expected_candidates()
    fill("natr", 1 << 20, {c: (0.2 if c == "cpu:1" else 3.0) for c in cands})
    for n in (1 << 18, 1 << 19, (1 << 21) + 5, 1 << 22, (1 << 23) - 1):
        plan = threadx.explain("natr", n)
        assert plan.backend == "cpu:1" and "fastest" in plan.reason, plan
        assert all("natr/2^20/" in e for e in plan.profile_entries), plan
        assert plan.candidates[0].predicted_ms == pytest.approx(0.2 * n / 1e6, rel=1e-12)
    for n in (1 << 17, 1 << 23, 1 << 24):
        plan = threadx.explain("natr", n)
        assert "too few samples" in plan.reason, plan
        assert plan.profile_entries == []


def test_small_input_threshold_is_learned(fresh: Path, unforced):
    if worker_cap() < 2:
        pytest.skip("needs at least two cores")
    cands = expected_candidates()
    fill("zscore", 3000, {c: (4.0 if c == "cpu:2" else 9.0) for c in cands})  # 2^11 = 2048
    fill("zscore", 1500, {"cpu:1": 5.0, "cpu:2": 20.0})  # 2^10: one worker wins
    plan = threadx.explain("zscore", 3000)
    assert plan.backend == "cpu:2" and "fastest" in plan.reason, plan
    assert threadx.optimal_workers(3000, "zscore") == 2
    small = threadx.explain("zscore", 2047)
    assert small.workers == 1 and "2048" in small.reason, small
    # other indicators keep the default threshold
    other = threadx.explain("sma", 3000)
    assert other.workers == 1 and str(DEFAULT_SMALL_ROWS) in other.reason.replace(",", "")
    assert threadx.optimal_workers(3000, "sma") == 1


def test_explain_never_explores_nor_records(fresh: Path, unforced):
    rows = 1 << 20
    fill("macd", rows, {"cpu:1": 2.0}, times=4)  # incomplete profile: a real call may explore
    before = threadx.profile.show()
    plans = {repr(threadx.explain("macd", rows)) for _ in range(300)}
    assert len(plans) == 1
    assert "exploring" not in plans.pop()
    assert threadx.profile.show() == before


def test_explain_rejects_bad_arguments(fresh: Path):
    bad = [
        (("nope", 10), {}),
        (("SMA", 10), {}),
        (("sma", -1), {}),
        (("sma", True), {}),
        (("sma", 1.5), {}),
        (("sma", "10"), {}),
        (("sma", 10), {"period": 0}),
        (("sma", 10), {"period": 1.5}),
        (("macd", 10), {"fast": 30, "slow": 10}),
        (("sma", 10), {"device": "tpu"}),
    ]
    for args, kwargs in bad:
        with pytest.raises(ValueError):
            threadx.explain(*args, **kwargs)
    no_gpu = not threadx.gpu.is_available()
    for device in ("gpu", "gpu:0", "GPU:1,2") if no_gpu else ("gpu:99",):
        with pytest.raises(ValueError, match="no usable GPU"):
            threadx.explain("sma", 10_000, device=device)
    for ind in INDICATORS:
        assert threadx.explain(ind, 10_000, device="cpu").indicator == ind
    assert threadx.explain("sma", 10, period=3).rows == 10
    with pytest.raises(ValueError):
        threadx.optimal_workers(-5)
    with pytest.raises(ValueError):
        threadx.optimal_workers(10, "nope")


def test_cpu_info_is_consistent():
    info = threadx.cpu_info()
    assert isinstance(info.model, str) and info.model
    assert 1 <= info.physical_cores <= info.logical_cores
    assert info.hyperthreading == (info.logical_cores > info.physical_cores)
    fp = threadx.profile.fingerprint()
    assert (fp["cpu_model"], fp["physical_cores"], fp["logical_cores"]) == (
        info.model,
        info.physical_cores,
        info.logical_cores,
    )
    assert fp["schema_version"] == 1 and fp["threadx_version"] == threadx.__version__
    assert re.fullmatch(r"[0-9a-f]{16}", fp["id"]) and fp["gpus"] == []


# --------------------------------------------------------------------------------------------
# 8: THREADX_LOG
# --------------------------------------------------------------------------------------------

LOG_CHILD = """
    import numpy as np, polars as pl, threadx
    df = pl.DataFrame({"close": np.linspace(1.0, 2.0, 20000)})
    df.head(1000).select(threadx.sma("close", period=5))
    df.head(300).select(threadx.rsi("close", period=14))
    df.select(threadx.bollinger("close", period=9))
    df.head(100).select(threadx.ema("close", period=5))
"""
LOG_LINE = re.compile(
    r"threadx: (\w+) rows=(\d+) plan=(cpu:\d+) \((.+)\) measured (\d+\.\d+) ms( \[[^\]]*\])?"
)


def test_threadx_log_prints_one_line_per_call(tmp_path: Path):
    profile = tmp_path / "profile.json"
    proc = run_child(LOG_CHILD, profile, THREADX_LOG="1")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("threadx:")]
    parsed = [LOG_LINE.fullmatch(line) for line in lines]
    assert all(parsed), lines
    got = [(m[1], int(m[2])) for m in parsed]
    assert got == [("sma", 1000), ("rsi", 300), ("bollinger", 20000), ("ema", 100)], lines
    assert [m[3] for m in parsed if int(m[2]) < DEFAULT_SMALL_ROWS] == ["cpu:1"] * 3
    assert all(float(m[5]) >= 0 for m in parsed)
    with open(profile) as f:
        timings = json.load(f)["machines"][own_id()]["timings"]
    assert set(timings["bollinger"]["2^14"]) == {parsed[2][3]}  # the logged plan is what ran
    assert "ema" not in timings  # 100 rows: logged, not recorded

    for value in ("0", ""):
        quiet = run_child(LOG_CHILD, tmp_path / f"q{value}.json", THREADX_LOG=value)
        assert quiet.returncode == 0, quiet.stderr
        assert "threadx:" not in quiet.stderr, quiet.stderr


# --------------------------------------------------------------------------------------------
# 9: autotune
# --------------------------------------------------------------------------------------------


def test_autotune_measures_every_candidate(fresh: Path, unforced):
    cands = expected_candidates()
    summary = threadx.autotune(
        sizes=(3000, 300, 300), runs=1, indicators=["sma", "rsi"], progress=False
    )
    assert isinstance(summary, threadx.TuneSummary)
    assert summary.sizes == [300, 3000] and summary.runs == 1
    assert summary.profile_path == str(fresh)
    assert set(summary.timings_ms) == {"sma", "rsi"}
    for ind in ("sma", "rsi"):
        assert set(summary.timings_ms[ind]) == {300, 3000}
        for size in (300, 3000):
            times = summary.timings_ms[ind][size]
            assert sorted(times) == sorted(cands)
            assert all(isinstance(t, float) and t > 0 for t in times.values())
            assert summary.best(ind, size) == min(times, key=times.get)
        last = None
        crossovers = []
        for size in (300, 3000):
            best = summary.best(ind, size)
            if last is not None and best != last:
                crossovers.append((size, last, best))
            last = best
        assert summary.crossovers.get(ind, []) == crossovers
    assert "sma" in repr(summary) and "rsi" in repr(summary)
    assert threadx.get_threads() is None  # the forced counts were undone

    with open(fresh) as f:  # autotune flushed
        timings = json.load(f)["machines"][own_id()]["timings"]
    assert set(timings) == {"sma", "rsi"}
    for ind in ("sma", "rsi"):
        assert set(timings[ind]) == {"2^8", "2^11"}
        for b in ("2^8", "2^11"):
            # Every candidate; each measurement repeats the call to 20 ms, every call a sample.
            samples = {c: s["samples"] for c, s in timings[ind][b].items()}
            assert set(samples) == set(cands) and min(samples.values()) >= 2, samples

    threadx.set_threads(3)
    summary = threadx.autotune(sizes=[700], runs=2, indicators=["ema"], progress=False)
    assert threadx.get_threads() == 3  # a user's forced count is restored
    threadx.set_threads(None)
    ema = threadx.profile.machine()["timings"]["ema"]["2^9"]
    assert set(ema) == set(cands) and min(s["samples"] for s in ema.values()) >= 3, ema


def test_autotune_rejects_bad_arguments(fresh: Path):
    bad = [
        {"sizes": []},
        {"sizes": [0]},
        {"sizes": [-10]},
        {"sizes": [1.5]},
        {"sizes": [True]},
        {"runs": 0},
        {"runs": True},
        {"runs": 1.0},
        {"indicators": ["nope"]},
        {"indicators": []},
        {"indicators": ["sma", "SMA"]},
        {"devices": ["gpu:99"]},
        {"devices": ["tpu"]},
        {"devices": "cpu"},
        {"devices": []},
    ]
    if not threadx.gpu.is_available():
        bad += [{"devices": ["gpu"]}, {"devices": ["gpu:0"]}]
    for kwargs in bad:
        with pytest.raises(ValueError):
            threadx.autotune(**{"sizes": [300], "runs": 1, "progress": False, **kwargs})
    with pytest.raises(ValueError, match="GPU"):
        threadx.autotune(sizes=[300], runs=1, devices=["gpu:99"], progress=False)
    assert threadx.profile.machine()["timings"] == {}  # nothing ran
    assert threadx.get_threads() is None
