"""The automatic profiling system's promises (issue #11, section 3), end to end through the public
API, in one place. Each section says what it checks here and which files hold the rest.

1. Persistence and EWMA. Here: the times of real calls (a simulated GPU slowed down between
   calls, so that the samples differ up to twenty-fold) reach the file as the documented moving
   average of the logged times, with the 3x clip and the best time; and a write replaces the file
   whole (by rename: a reader never sees a partial profile, and a reader holding the old file keeps
   it intact). Elsewhere: ``tests/test_profile.py`` (the arithmetic to the bit through
   ``profile.record``, size buckets, batching, the 256-row minimum, ``.over()`` not recorded,
   background and exit flushes, reload, other machines' entries, corrupt and unwritable files,
   concurrent writers) and ``tests/test_hardening_profile.py`` (non-regular files, symbolic links,
   invalid statistics, failed writes, stale temporary files, expiry, large files).
2. Decisions. Here: a profile file written by hand in the documented format decides between CPU,
   GPU and device-set candidates (``threadx.explain``), and changing one entry changes the pick;
   GPUs are considered by ``device="auto"`` from 2^20 rows only; an unmeasured GPU is predicted
   from the stored link model; forced devices and worker counts override the profile; and a real
   call runs where the plan says and records its sample under that backend. Elsewhere:
   ``tests/test_profile.py`` (CPU worker decisions: small inputs, cold start, trusted samples,
   neighbouring buckets, the learned threshold, ``THREADX_LOG``, ``autotune``) and
   ``tests/test_autotune_noise.py`` (autotune's choice under noise).
3. Balance ratios per workload tag. Here: ``profile_auto_balance`` times the workload its tag
   names on each device alone (warm-up plus runs, the CPU at the worker cap); a split's shares come
   from the stored ratios, else the members' measured throughputs, else equal shares; and
   ``device="auto"`` weighs a set by the makespan of its tag's ratios. Elsewhere:
   ``tests/test_balance.py`` (profiling finds the simulated speeds, ratios stored in memory and in
   the file, the tag reaches the call, refinement, errors).
4. Deterministic fusion. Here: chunked input with nulls and a NaN gives the bits of one CPU worker
   on every device set with any stored ratios (a zero share included) and with any forced worker
   count; section 2's child process checks the bits when ``auto`` itself picks a set. Elsewhere: ``tests/test_determinism.py`` (worker
   counts, ``THREADX_NUM_THREADS``, chunking, ``.over()``), ``tests/test_balance.py`` (random sets,
   ratios and lengths), ``tests/test_golden_bits.py``.
5. Real GPUs (``@pytest.mark.gpu``: run by ``pytest -m gpu`` on a machine with an NVIDIA GPU,
   deselected by CI's ``-m "not gpu"``, skipped with the reason elsewhere). Here: every catalog
   indicator on the GPU that the profile makes ``auto`` pick, with the CPU's bits and its sample
   recorded under ``gpu:<uuid>``; a real ``profile_auto_balance`` storing ratios under its tag; the
   planner predicting an unmeasured GPU from its measured link. Elsewhere: ``tests/test_gpu.py``
   (the CPU/GPU bit-equality suite: parameter sets, sizes, nulls, NaN/inf, contexts, GPU
   candidates in ``explain``, fallbacks, device sets over real GPUs).

Simulated GPUs (``THREADX_SIMULATED_GPUS``) are numbered after the real ones, so the tests that use
them in this process skip where a real GPU is usable; child processes hide real GPUs
(``THREADX_GPU=off``) instead. Every test profiles into its own temporary file
(``isolated_profile``), and the suite's ``THREADX_PROFILE`` is restored afterwards.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import threadx
from helpers import (
    CATALOG,
    NAMES,
    PARAMS,
    assert_bits_equal,
    indicator_expr,
    nan_at,
    null_where,
    ohlcv,
    profile_at,
)
from threadx import gpu

SIM = "THREADX_SIMULATED_GPUS"
TESTS_DIR = Path(__file__).resolve().parent

# The documented constants (docs/gpu_auto_profiling.md), written out independently of the code.
EWMA_ALPHA = 0.25  # "ewma <- ewma + 0.25 * (min(x, 3 * ewma) - ewma)"
OUTLIER_CLIP = 3.0
MIN_SAMPLES = 3  # a candidate is trusted from 3 samples on
GPU_AUTO_MIN_ROWS = 1 << 20  # GPUs join device="auto" calls from 2^20 rows
SET_OVERHEAD_MS = 0.2  # a set's prediction: the makespan plus 0.2 ms
LOG_ROUNDING_S = 0.0005e-3  # THREADX_LOG prints the measured time in ms with 3 decimals

#: Indicators with a CUDA kernel (the registry's ``devices``): the GPU candidates of ``auto``.
CUDA_NAMES = [r["name"] for r in CATALOG.iter_rows(named=True) if "cuda" in r["devices"]]
#: Arrays each indicator moves each way (inputs up, outputs down), from the registry.
ARRAYS = {r["name"]: (len(r["inputs"]), len(r["outputs"])) for r in CATALOG.iter_rows(named=True)}


# --------------------------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def isolated_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An empty profile file of the test's own and no simulated GPU; the suite's
    ``THREADX_PROFILE`` (and no forced worker count) restored afterwards."""
    monkeypatch.delenv(SIM, raising=False)
    with profile_at(tmp_path / "profile.json") as path:
        yield path


@pytest.fixture
def planner_free():
    """The planner decides (no worker count forced by the environment), with a choice to make."""
    threadx.set_threads(None)
    if threadx.get_threads() is not None:
        pytest.skip("THREADX_NUM_THREADS forces a worker count in this environment")
    if worker_cap() < 2:
        pytest.skip("one usable core: the planner's one-core rule decides before any profile entry")


@pytest.fixture
def real_gpus() -> list[dict]:
    """The real (not simulated) usable GPUs, in index order; the test is skipped without one."""
    real = [d for d in gpu.devices() if not d["simulated"]]
    if not real:
        pytest.skip(f"no usable GPU: {gpu.status()['reason']}")
    return sorted(real, key=lambda d: d["index"])


def simulate(monkeypatch: pytest.MonkeyPatch, speeds: list[float]) -> list[str]:
    """Simulated GPUs at ``speeds`` in this process; returns their labels (``gpu:0``, ...)."""
    if gpu.is_available():
        pytest.skip("a real GPU is usable: the simulated ones would be numbered after it")
    monkeypatch.setenv(SIM, ",".join(str(s) for s in speeds))
    devs = gpu.devices()
    assert [(d["index"], d["uuid"], d["simulated"]) for d in devs] == [
        (i, f"sim-{i}", True) for i in range(len(speeds))
    ]
    return [f"gpu:{i}" for i in range(len(speeds))]


def bucket(rows: int) -> str:
    """The documented size bucket: rows in [2^k, 2^(k+1)) -> "2^k"."""
    return f"2^{max(rows, 1).bit_length() - 1}"


def worker_cap() -> int:
    """Physical cores, leaving one for the system from 8 cores up."""
    p = max(threadx.cpu_info().physical_cores, 1)
    return p - 1 if p >= 8 else p


def cpu_backends() -> list[str]:
    """The documented CPU candidates: cpu:1, cpu:2, cpu:4, ... below the cap, and the cap."""
    cap, workers, k = worker_cap(), [1], 2
    while k < cap:
        workers.append(k)
        k *= 2
    return [f"cpu:{w}" for w in (workers + [cap] if cap > 1 else workers)]


def stat(ns_per_row: float, samples: int = MIN_SAMPLES) -> dict:
    """One statistic as the file stores it."""
    return {
        "samples": samples,
        "ewma_ns_per_row": ns_per_row,
        "best_ns_per_row": ns_per_row,
        "last_unix": 1_700_000_000,
    }


def own_id() -> str:
    return threadx.profile.fingerprint()["id"]


def write_profile(path: Path, timings=None, links=None, balance=None) -> None:
    """This machine's entry, written by hand in the documented file format."""
    fingerprint = threadx.profile.fingerprint()
    fid = fingerprint.pop("id")
    entry = {
        "fingerprint": fingerprint,
        "updated_unix": int(time.time()),
        "timings": timings or {},
        "links": links or {},
        "balance": balance or {},
    }
    path.write_text(json.dumps({"schema_version": 1, "machines": {fid: entry}}))


def load(path: Path, **parts) -> None:
    """Writes this machine's entry to ``path`` (this process's profile) and loads it."""
    write_profile(path, **parts)
    threadx.profile.reload()
    assert threadx.profile.path() == str(path)


def file_entry(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)["machines"][own_id()]


def split_of(plan: threadx.Explanation) -> dict[str, float]:
    return {m["device"]: m["share"] for m in plan.split}


def by_backend(plan: threadx.Explanation) -> dict:
    return {c.backend: c for c in plan.candidates}


def normalised(weights: dict[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    return {k: v / total for k, v in weights.items()}


def makespan_ms(shares: dict[str, float], ns_per_row: dict[str, float], rows: int) -> float:
    """A set's documented prediction: the slowest member's share of the rows at its time per
    row, plus the fixed cost of splitting."""
    return max(shares[m] * rows * ns_per_row[m] / 1e6 for m in shares) + SET_OVERHEAD_MS


LOG_LINE = re.compile(
    r"threadx: (?P<name>\w+) rows=(?P<rows>\d+) plan=(?P<plan>\S+) \((?P<reason>.*)\) "
    r"measured (?P<ms>\d+\.\d+) ms \[[^\]]*\]"
)


def log_lines(stderr: str) -> list[re.Match]:
    """The ``THREADX_LOG`` lines of a child's stderr, parsed (one per call)."""
    lines = [ln for ln in stderr.splitlines() if ln.startswith("threadx: ") and " rows=" in ln]
    parsed = [LOG_LINE.fullmatch(ln) for ln in lines]
    assert all(parsed), lines
    return parsed


def run_child(code: str, profile: Path, *args: str, hide_gpus: bool = True, **env: str):
    """``code`` in a fresh Python with its own profile and ``THREADX_LOG=1``; ``hide_gpus``
    numbers simulated GPUs from 0 whatever the machine has."""
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("THREADX_NUM_THREADS", "THREADX_LOG", "THREADX_SEED", SIM)
    }
    base.update(THREADX_PROFILE=str(profile), THREADX_LOG="1", **env)
    if hide_gpus:
        base["THREADX_GPU"] = "off"
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), str(TESTS_DIR), *args],
        env=base,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


# --------------------------------------------------------------------------------------------
# 1. persistence and EWMA
# --------------------------------------------------------------------------------------------

EWMA_CHILD = """
    import os, sys
    import numpy as np, polars as pl, threadx
    rows = int(sys.argv[2])
    df = pl.DataFrame({"close": np.linspace(1.0, 2.0, rows)})
    for speed in sys.argv[3].split(","):
        os.environ["THREADX_SIMULATED_GPUS"] = speed  # read on every call
        df.select(threadx.sma("close", period=10, device="gpu:0"))
"""


def test_real_calls_reach_the_file_as_the_documented_moving_average(tmp_path: Path):
    """Eight calls on one simulated GPU slowed between them (one call twenty times slower): the
    file written at exit holds their count, the EWMA (3x clip included) of the times the calls
    logged, and the best of them, under the GPU's profile name."""
    rows = 1 << 16
    speeds = ["1", "1", "1", "0.05", "1", "0.25", "1", "0.5"]
    profile = tmp_path / "child.json"
    proc = run_child(EWMA_CHILD, profile, str(rows), ",".join(speeds), **{SIM: "1"})
    logged = log_lines(proc.stderr)
    assert [(m["name"], int(m["rows"]), m["plan"]) for m in logged] == [("sma", rows, "gpu:0")] * 8

    xs = [float(m["ms"]) * 1e6 / rows for m in logged]  # ns per row, to the log's rounding
    delta = LOG_ROUNDING_S * 1e9 / rows
    ewma, err, clipped = xs[0], delta, 0  # the first sample seeds the average
    for x in xs[1:]:
        clipped += x > OUTLIER_CLIP * ewma
        ewma += EWMA_ALPHA * (min(x, OUTLIER_CLIP * ewma) - ewma)
        err = (1 - EWMA_ALPHA) * err + EWMA_ALPHA * max(delta, OUTLIER_CLIP * err)
    assert clipped >= 1, f"the slow call was not an outlier: {xs}"  # the clip is exercised
    assert abs(float(np.mean(xs)) - ewma) > 10 * err, xs  # a plain mean would fail below

    timings = file_entry(profile)["timings"]  # written by the exit flush
    assert set(timings) == {"sma"} and set(timings["sma"]) == {bucket(rows)}
    stats = timings["sma"][bucket(rows)]
    assert set(stats) == {"gpu:sim-0"}, stats  # a GPU is profiled under gpu:<uuid>
    got = stats["gpu:sim-0"]
    assert got["samples"] == len(speeds)
    assert got["ewma_ns_per_row"] == pytest.approx(ewma, abs=err), (xs, got)
    assert got["best_ns_per_row"] == pytest.approx(min(xs), abs=delta), (xs, got)
    assert got["last_unix"] >= time.time() - 600


READER = """
    import json, os, sys
    path, fid, stop = sys.argv[1], sys.argv[2], sys.argv[3]
    seen, errors = [], []
    open(stop + ".ready", "w").close()
    while not os.path.exists(stop):
        try:
            with open(path, "rb") as f:
                data = json.loads(f.read())
            seen.append(data["machines"][fid]["timings"]["sma"]["2^12"]["cpu:1"]["samples"])
        except Exception as e:
            errors.append(repr(e)[:200])
    print(json.dumps({"seen": seen, "errors": errors[:5], "n_errors": len(errors)}))
"""


def test_writes_replace_the_file_whole(isolated_profile: Path):
    """Every flush writes a new file and renames it over the profile: a process reading the
    profile throughout 40 flushes always parses a complete file whose sample count never goes
    back, and a reader holding the old file keeps its old content."""
    path = isolated_profile
    threadx.profile.record("sma", 5000, "cpu:1", 1e-5)
    assert threadx.profile.flush() is True
    first = path.read_bytes()
    before = os.stat(path)
    stop = path.parent / "stop"
    reader = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(READER), str(path), own_id(), str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with open(path, "rb") as held:
        try:
            deadline = time.monotonic() + 60
            while not Path(f"{stop}.ready").exists():
                assert time.monotonic() < deadline and reader.poll() is None, "no reader"
                time.sleep(0.01)
            for i in range(40):
                threadx.profile.record("sma", 5000, "cpu:1", 1e-5 * (1 + i % 3))
                assert threadx.profile.flush() is True
        finally:
            stop.touch()
            out, err = reader.communicate(timeout=60)
        assert held.read() == first  # the old file was replaced, not rewritten in place
    assert reader.returncode == 0, err
    report = json.loads(out)
    assert report["n_errors"] == 0, report["errors"]
    seen = report["seen"]
    assert seen and seen == sorted(seen) and 1 <= seen[0] and seen[-1] <= 41, seen[-5:]
    assert os.stat(path).st_ino != before.st_ino
    assert file_entry(path)["timings"]["sma"]["2^12"]["cpu:1"]["samples"] == 41
    leftovers = sorted(p.name for p in path.parent.iterdir() if not p.name.startswith("stop"))
    assert leftovers in (["profile.json"], ["profile.json", "profile.json.lock"]), leftovers


# --------------------------------------------------------------------------------------------
# 2. decisions
# --------------------------------------------------------------------------------------------


def test_the_profile_file_decides_between_cpu_gpu_and_a_device_set(
    monkeypatch, isolated_profile: Path, planner_free
):
    """The same call planned from three versions of one hand-written profile entry: the GPU
    measured fastest wins, a slow GPU loses to the CPU, and GPU and CPU close enough together
    make the set of both win. Each candidate's prediction is its stored time per row times the
    rows; the set's is the makespan of its shares (from the members' measured throughputs)."""
    simulate(monkeypatch, [1.0])
    rows = GPU_AUTO_MIN_ROWS
    cap = f"cpu:{worker_cap()}"
    cpu = {b: 50.0 for b in cpu_backends()} | {cap: 40.0}
    order = [*cpu_backends(), "gpu:0", "all"]

    def plan_with(gpu_ns: float, cap_ns: float | None = None) -> threadx.Explanation:
        ns = cpu | ({cap: cap_ns} if cap_ns else {})
        timings = {b: stat(v) for b, v in ns.items()} | {"gpu:sim-0": stat(gpu_ns)}
        load(isolated_profile, timings={"sma": {bucket(rows): timings}})
        plan = threadx.explain("sma", rows)
        cands = by_backend(plan)
        assert list(cands) == order, plan
        for b, v in [*ns.items(), ("gpu:0", gpu_ns)]:
            assert cands[b].samples == MIN_SAMPLES
            assert cands[b].predicted_ms == pytest.approx(v * rows / 1e6, rel=1e-12), (b, plan)
        shares = normalised({"gpu:0": 1 / gpu_ns, "cpu": 1 / ns[cap]})
        want = makespan_ms(shares, {"gpu:0": gpu_ns, "cpu": ns[cap]}, rows)
        assert cands["all"].predicted_ms == pytest.approx(want, rel=1e-9), plan
        assert "measured CPU and GPU" in plan.reason and "fastest predicted" in plan.reason
        assert plan.gpu_note == "usable: gpu:0 simulated GPU (speed 1)"
        return plan

    fast = plan_with(gpu_ns=0.5)
    assert (fast.backend, fast.gpu, fast.workers, fast.split) == ("gpu:0", 0, 1, []), fast
    assert f"{0.5 * rows / 1e6:.3f} ms" in fast.reason

    # The set's makespan assumes its members run side by side: against 40 ns/row on the CPU, a
    # GPU must be slower than 8,400 ns/row for the set to lose by more than its 0.2 ms.
    slow = plan_with(gpu_ns=20_000.0)
    assert (slow.backend, slow.gpu, slow.split) == (cap, None, []), slow

    close = plan_with(gpu_ns=1.0, cap_ns=3.0)  # the set: 0.75 and 0.25 of the rows
    assert close.backend == "all", close
    assert split_of(close) == pytest.approx({"gpu:0": 0.75, "cpu": 0.25}, rel=1e-12)
    assert [m["key"] for m in close.split] == ["gpu:sim-0", "cpu"]

    # One row fewer (bucket 2^19, the same entries borrowed): GPUs are not considered at all.
    small = threadx.explain("sma", rows - 1)
    assert list(by_backend(small)) == cpu_backends(), small
    assert small.gpu_note == f"not considered below {GPU_AUTO_MIN_ROWS:,} rows with device='auto'"


def test_an_unmeasured_gpu_is_predicted_from_the_stored_link_model(
    monkeypatch, isolated_profile: Path, planner_free
):
    """Without timings, a GPU's prediction is the documented link model stored in the profile:
    rows x 8 bytes x arrays each way over the measured bandwidths, plus two latencies. Without a
    link it has no prediction; an unmeasured GPU is not trusted over measured CPU candidates."""
    simulate(monkeypatch, [1.0, 0.5])
    rows = 1 << 21
    link = {"h2d_gb_per_s": 12.5, "d2h_gb_per_s": 6.25, "latency_us": 15.0, "samples": 3}
    timings = {name: {bucket(rows): {b: stat(20.0) for b in cpu_backends()}} for name in NAMES}
    load(isolated_profile, timings=timings, links={"gpu:sim-0": link})
    for name in CUDA_NAMES:  # CPU-only indicators have no GPU candidate
        ins, outs = ARRAYS[name]
        want = (
            rows * 8 * ins / (link["h2d_gb_per_s"] * 1e9)
            + rows * 8 * outs / (link["d2h_gb_per_s"] * 1e9)
            + 2 * link["latency_us"] * 1e-6
        ) * 1e3
        plan = threadx.explain(name, rows)
        cands = by_backend(plan)
        assert (cands["gpu:0"].samples, cands["gpu:1"].samples) == (0, 0), plan
        assert cands["gpu:0"].predicted_ms == pytest.approx(want, rel=1e-12), (name, plan)
        assert cands["gpu:1"].predicted_ms is None, plan  # no link stored for it
        # Predicted faster than any CPU candidate (20 ns/row), yet not measured: a CPU plan.
        assert want < 20.0 * rows / 1e6
        assert plan.backend.startswith("cpu:"), plan


def test_forced_devices_and_worker_counts_override_the_profile(
    monkeypatch, isolated_profile: Path, planner_free
):
    """A profile that makes ``auto`` pick gpu:0 does not move a call forced elsewhere:
    ``device="cpu"`` weighs the CPU candidates only, ``set_threads`` forces that worker count (and
    no GPU is a candidate), and ``device="gpu:1"`` runs on gpu:1 with its own prediction."""
    simulate(monkeypatch, [1.0, 0.5])
    rows = 1 << 21
    entries = {b: stat(10.0 + i) for i, b in enumerate(cpu_backends())}  # cpu:1 the fastest
    entries |= {"gpu:sim-0": stat(0.5), "gpu:sim-1": stat(30.0)}
    load(isolated_profile, timings={"ema": {bucket(rows): entries}})
    assert threadx.explain("ema", rows).backend == "gpu:0"

    on_cpu = threadx.explain("ema", rows, device="cpu")
    assert list(by_backend(on_cpu)) == cpu_backends()
    assert (on_cpu.backend, on_cpu.gpu_note) == ("cpu:1", "not considered (device='cpu')")

    threadx.set_threads(2)
    forced = threadx.explain("ema", rows)
    assert (forced.backend, forced.workers) == ("cpu:2", 2) and "forced" in forced.reason
    assert not [c for c in forced.candidates if not c.backend.startswith("cpu:")], forced
    threadx.set_threads(None)

    pinned = threadx.explain("ema", rows, device="gpu:1")
    assert (pinned.backend, pinned.gpu, pinned.reason) == ("gpu:1", 1, "forced by device='gpu:1'")
    (only,) = pinned.candidates
    assert only.samples == MIN_SAMPLES
    assert only.predicted_ms == pytest.approx(30.0 * rows / 1e6, rel=1e-12)


def test_a_gpu_measured_faster_is_not_dropped_by_the_cpu_small_input_rule(
    monkeypatch, isolated_profile: Path, planner_free
):
    """Two workers beat one only from 2^22 rows (so the learned small-input threshold is 2^22),
    and the GPU is measured twenty times faster than the CPU at 2^20 rows: the documented planner
    ("once measured, it competes with the CPU candidates on predicted time") must pick the GPU.
    The same happens on any machine with one usable core (``taskset -c 0``, a one-CPU container):
    ``auto`` never uses a GPU there."""
    simulate(monkeypatch, [1.0])
    rows = GPU_AUTO_MIN_ROWS
    cpu_even = {b: stat(10.0) for b in cpu_backends()}
    cpu_wins = {b: stat(10.0 if b == "cpu:1" else 5.0) for b in cpu_backends()}
    timings = {
        "sma": {
            bucket(rows): cpu_even | {"gpu:sim-0": stat(0.5)},
            bucket(4 * rows): cpu_wins,
        }
    }
    load(isolated_profile, timings=timings)
    plan = threadx.explain("sma", rows)
    assert by_backend(plan)["gpu:0"].predicted_ms < by_backend(plan)["cpu:1"].predicted_ms / 10
    assert plan.backend == "gpu:0", plan


AUTO_SET_CHILD = """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import threadx
    from helpers import PARAMS, assert_bits_equal, indicator_expr, ohlcv

    rows, names = int(sys.argv[2]), sys.argv[3].split(",")
    df = ohlcv(rows, seed=31)  # no nulls: the log counts the rows the kernels see
    report = {"explain": {}, "split": {}, "mismatch": {}}
    for name in names:
        plan = threadx.explain(name, rows)
        report["explain"][name] = plan.backend
        report["split"][name] = {m["device"]: m["share"] for m in plan.split}
    for name in names:
        got = df.select(indicator_expr(name, PARAMS[name]).alias("o"))["o"]  # device="auto"
        threadx.set_threads(1)
        want = df.select(indicator_expr(name, PARAMS[name], device="cpu").alias("o"))["o"]
        threadx.set_threads(None)
        try:
            assert_bits_equal(got, want, name)
        except AssertionError as e:
            report["mismatch"][name] = str(e)[:500]
    print(json.dumps(report))
"""


def test_a_call_runs_where_the_profile_says_and_is_recorded_there(tmp_path: Path):
    """A profile file in which a simulated GPU plus the CPU beat every single device: a new
    process plans ``all`` for each indicator, its ``auto`` calls run there (``THREADX_LOG``) with
    the bits of one CPU worker, and each call's sample lands under the backend it ran on. A call
    may re-measure another candidate now and then; its sample then lands there instead."""
    if worker_cap() < 2:
        pytest.skip("one usable core: the planner's one-core rule decides before any GPU")
    names = ["sma", "ema", "macd", "atr", "stoch", "bollinger"]
    rows = GPU_AUTO_MIN_ROWS + 1234
    cap = f"cpu:{worker_cap()}"
    ns = {b: 9.0 for b in cpu_backends()} | {cap: 6.0, "gpu:sim-0": 5.0}
    profile = tmp_path / "shared.json"
    write_profile(
        profile, timings={n: {bucket(rows): {b: stat(v) for b, v in ns.items()}} for n in names}
    )

    proc = run_child(AUTO_SET_CHILD, profile, str(rows), ",".join(names), **{SIM: "1.0"})
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["mismatch"] == {}
    shares = normalised({"gpu:0": 1 / ns["gpu:sim-0"], "cpu": 1 / ns[cap]})
    for name in names:
        assert report["explain"][name] == "all", report
        assert report["split"][name] == pytest.approx(shares, rel=1e-12)

    logged = log_lines(proc.stderr)
    assert [(m["name"], int(m["rows"])) for m in logged] == [
        (n, rows) for n in names for _ in range(2)
    ]
    auto, reference = logged[0::2], logged[1::2]
    assert all(m["plan"] == "cpu:1" and "forced" in m["reason"] for m in reference)
    ran_on_the_pick = 0
    for m in auto:
        if not m["reason"].startswith("re-measuring"):
            assert m["plan"] == "all" and "fastest predicted" in m["reason"], m[0]
            ran_on_the_pick += 1
    assert ran_on_the_pick >= len(names) - 2, [m[0] for m in auto]
    recorded = {n: Counter() for n in names}
    for m in logged:
        recorded[m["name"]][re.sub(r"^gpu:(\d+)$", r"gpu:sim-\1", m["plan"])] += 1

    timings = file_entry(profile)["timings"]
    for name in names:
        got = {b: s["samples"] for b, s in timings[name][bucket(rows)].items()}
        want = Counter({b: MIN_SAMPLES for b in ns}) + recorded[name]
        assert got == dict(want), (name, got)


# --------------------------------------------------------------------------------------------
# 3. balance ratios per workload tag
# --------------------------------------------------------------------------------------------


def test_profile_auto_balance_times_the_tagged_workload_on_each_device_alone(monkeypatch):
    """The workload is the indicator the tag names (else Bollinger bands); each device runs it
    alone, once to warm up and ``runs`` more times, each run a sample under that device's name,
    the CPU with every worker the planner allows; the user's worker setting is restored."""
    simulate(monkeypatch, [1.0, 0.5])
    n, cap = 3_000, f"cpu:{threadx.get_threads() or worker_cap()}"

    def samples() -> dict:
        return {
            name: {b: s["samples"] for b, s in by_bucket[bucket(n)].items()}
            for name, by_bucket in threadx.profile.machine()["timings"].items()
        }

    rsi = gpu.profile_auto_balance(sample_size=n, runs=2, workload_tag="rsi", devices="all")
    assert list(rsi) == ["gpu:0", "gpu:1", "cpu"]
    assert samples() == {"rsi": {"gpu:sim-0": 3, "gpu:sim-1": 3, cap: 3}}

    nightly = gpu.profile_auto_balance(
        sample_size=n, runs=1, workload_tag="nightly", devices=["gpu:1", "cpu"]
    )
    assert list(nightly) == ["gpu:1", "cpu"]
    assert samples() == {
        "rsi": {"gpu:sim-0": 3, "gpu:sim-1": 3, cap: 3},
        "bollinger": {"gpu:sim-1": 2, cap: 2},
    }
    assert threadx.get_threads() is None
    assert gpu.balance() == {"rsi": rsi, "nightly": nightly}
    for ratios in (rsi, nightly):
        assert sum(ratios.values()) == pytest.approx(1.0, abs=1e-12)
        assert all(0.0 < r < 1.0 for r in ratios.values()), ratios


def test_split_shares_come_from_ratios_else_measured_throughputs_else_equal(
    monkeypatch, isolated_profile: Path
):
    """A set's shares: the tag's stored ratios when they cover every member; else each member's
    throughput from its trusted time per row in the call's bucket (the CPU's read at the worker
    cap); else equal shares."""
    simulate(monkeypatch, [1.0, 0.5])
    rows, cap = 1 << 17, f"cpu:{worker_cap()}"
    ns = {"gpu:sim-0": 1.0, "gpu:sim-1": 4.0, cap: 2.0}
    timings = {
        "sma": {bucket(rows): {b: stat(v) for b, v in ns.items()}},
        # gpu:1 measured twice only: not trusted
        "ema": {bucket(rows): {"gpu:sim-0": stat(1.0), "gpu:sim-1": stat(4.0, 2), cap: stat(2.0)}},
    }
    if worker_cap() > 1:  # the CPU as a member is read at the cap, not at one worker
        timings["wma"] = {
            bucket(rows): {"gpu:sim-0": stat(1.0), "gpu:sim-1": stat(4.0), "cpu:1": stat(2.0)}
        }
    balance = {"gpus-only": {"gpu:sim-0": 0.7, "gpu:sim-1": 0.3}}
    load(isolated_profile, timings=timings, balance=balance)

    stored = threadx.explain("sma", rows, device="gpus", workload_tag="gpus-only")
    assert split_of(stored) == pytest.approx({"gpu:0": 0.7, "gpu:1": 0.3}, rel=1e-12)
    assert "stored balance ratios" in stored.reason

    measured = threadx.explain("sma", rows, device="all", workload_tag="gpus-only")
    want = normalised({"gpu:0": 1 / 1.0, "gpu:1": 1 / 4.0, "cpu": 1 / 2.0})
    assert split_of(measured) == pytest.approx(want, rel=1e-12), measured
    assert "measured throughputs" in measured.reason
    in_order = threadx.explain("sma", rows, device="gpu:1,0")
    assert list(split_of(in_order)) == ["gpu:1", "gpu:0"]
    assert split_of(in_order) == pytest.approx({"gpu:1": 0.2, "gpu:0": 0.8}, rel=1e-12)

    for name in ["ema"] + (["wma"] if "wma" in timings else []):
        plan = threadx.explain(name, rows, device="all")
        assert split_of(plan) == pytest.approx({"gpu:0": 1 / 3, "gpu:1": 1 / 3, "cpu": 1 / 3})
        assert "equal shares" in plan.reason, (name, plan.reason)


def test_auto_weighs_a_set_by_the_makespan_of_its_tags_ratios(
    monkeypatch, isolated_profile: Path, planner_free
):
    """With ``device="auto"`` the set ``all`` is predicted from the ratios of the call's tag
    (``workload_tag=``, else the indicator's, else ``default``'s, else measured throughputs): the
    slowest member's share of the rows at its time per row, plus 0.2 ms. It is picked only when
    that beats every single device, and then split in those ratios."""
    simulate(monkeypatch, [1.0])
    rows, cap = 1 << 21, f"cpu:{worker_cap()}"
    ns = {"gpu:0": 2.0, "cpu": 3.0}  # single best: gpu:0, 4.194 ms
    entries = {b: stat(6.0) for b in cpu_backends()} | {cap: stat(3.0), "gpu:sim-0": stat(2.0)}
    ratios = {
        "ema": {"gpu:0": 0.7, "cpu": 0.3},  # makespan 2.936 + 0.2 ms: the set wins
        "even": {"gpu:0": 0.5, "cpu": 0.5},  # 3.146 + 0.2 ms: the set wins
        "cpu-heavy": {"gpu:0": 0.05, "cpu": 0.95},  # 5.977 + 0.2 ms: gpu:0 wins
    }

    def keyed(r: dict[str, float]) -> dict[str, float]:
        return {("gpu:sim-0" if k == "gpu:0" else k): v for k, v in r.items()}

    balance = {tag: keyed(r) for tag, r in ratios.items()}
    load(isolated_profile, timings={"ema": {bucket(rows): entries}}, balance=balance)
    single = 2.0 * rows / 1e6
    cases = [(None, ratios["ema"]), ("even", ratios["even"]), ("cpu-heavy", ratios["cpu-heavy"])]
    # A tag without ratios and no default: the measured throughputs (0.6 and 0.4).
    cases.append(("unknown", normalised({"gpu:0": 1 / 2.0, "cpu": 1 / 3.0})))
    for tag, shares in cases:
        plan = threadx.explain("ema", rows, **({"workload_tag": tag} if tag else {}))
        want = makespan_ms(shares, ns, rows)
        assert by_backend(plan)["all"].predicted_ms == pytest.approx(want, rel=1e-9), (tag, plan)
        if want < single:
            assert plan.backend == "all", (tag, plan)
            assert split_of(plan) == pytest.approx(shares, rel=1e-12), (tag, plan)
        else:
            assert plan.backend == "gpu:0", (tag, plan)
    # With default ratios stored, a tag without its own falls back to them.
    balance["default"] = keyed(ratios["cpu-heavy"])
    load(isolated_profile, timings={"ema": {bucket(rows): entries}}, balance=balance)
    plan = threadx.explain("ema", rows, workload_tag="unknown")
    want = makespan_ms(ratios["cpu-heavy"], ns, rows)
    assert by_backend(plan)["all"].predicted_ms == pytest.approx(want, rel=1e-9)
    assert plan.backend == "gpu:0", plan


# --------------------------------------------------------------------------------------------
# 4. deterministic fusion
# --------------------------------------------------------------------------------------------

CHUNKS = [1, 1023, 1025, 4097, 3]  # and the rest: cuts on and off the 1,024-row grid


@pytest.fixture(scope="module")
def chunked_frame() -> pl.DataFrame:
    n = 20_011
    rng = np.random.default_rng(41)
    df = ohlcv(n, seed=40)
    for col in ("close", "high", "volume"):
        df = null_where(df, col, rng.random(n) < 0.02)
    df = nan_at(df, "close", 9_000)
    parts, at = [], 0
    for size in [*CHUNKS, n - sum(CHUNKS)]:
        parts.append(df.slice(at, size))
        at += size
    out = pl.concat(parts, rechunk=False)
    assert out["close"].n_chunks() == len(CHUNKS) + 1
    return out


@pytest.mark.parametrize("name", CUDA_NAMES)
def test_fused_bits_do_not_depend_on_chunks_workers_devices_or_ratios(
    monkeypatch, isolated_profile: Path, chunked_frame: pl.DataFrame, name: str
):
    """The chunked frame on every device set (three simulated GPUs and the CPU), with stored
    ratios that leave one member no rows, with equal shares, and on the CPU with any forced worker
    count: always the bits of one CPU worker on the same rows in one chunk."""
    simulate(monkeypatch, [1.0, 0.5, 0.25])
    skewed = {"gpu:sim-0": 0.55, "gpu:sim-1": 0.0, "gpu:sim-2": 0.15, "cpu": 0.3}
    load(isolated_profile, balance={"skewed": skewed})
    threadx.set_threads(1)
    want = chunked_frame.rechunk().select(indicator_expr(name, PARAMS[name], device="cpu"))
    want = want.to_series()
    threadx.set_threads(None)

    def got(**kw) -> pl.Series:
        return chunked_frame.select(indicator_expr(name, PARAMS[name], **kw)).to_series()

    for device in ("gpus", "all", "gpu:2,0"):
        for tag in ("skewed", None):
            plan = threadx.explain(name, chunked_frame.height, device=device, workload_tag=tag)
            assert len(plan.split) >= 2, plan
            assert_bits_equal(got(device=device, workload_tag=tag), want, f"{device} {tag}")
    for threads in (2, 3, 8):
        threadx.set_threads(threads)
        assert_bits_equal(got(device="cpu"), want, f"{threads} workers")
        assert_bits_equal(got(), want, f"auto, {threads} workers")
    # Calls below 2^16 rows refine no ratios: every call above used the same stored shares.
    assert gpu.balance() == {"skewed": {"gpu:0": 0.55, "gpu:1": 0.0, "gpu:2": 0.15, "cpu": 0.3}}


# --------------------------------------------------------------------------------------------
# 5. real GPUs (pytest -m gpu)
# --------------------------------------------------------------------------------------------

GPU_AUTO_CHILD = """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import threadx
    from helpers import PARAMS, assert_bits_equal, indicator_expr, ohlcv

    rows, names = int(sys.argv[2]), sys.argv[3].split(",")
    df = ohlcv(rows, seed=51)  # no nulls: the log counts the rows the kernels see
    report = {"explain": {}, "mismatch": {}}
    for name in names:
        report["explain"][name] = threadx.explain(name, rows).backend
    for name in names:
        got = df.select(indicator_expr(name, PARAMS[name]).alias("o"))["o"]  # device="auto"
        want = df.select(indicator_expr(name, PARAMS[name], device="cpu").alias("o"))["o"]
        try:  # NaN payloads aside (tests/test_gpu.py)
            assert_bits_equal(got, want, name, nan_payloads=False)
        except AssertionError as e:
            report["mismatch"][name] = str(e)[:500]
    print(json.dumps(report))
"""


@pytest.mark.gpu
def test_every_indicator_runs_on_the_gpu_the_profile_picks_with_the_cpu_bits(
    real_gpus, tmp_path: Path
):
    """A profile file in which the first GPU is by far the fastest for every indicator: a new
    process plans that GPU, every ``auto`` call runs on it (``THREADX_LOG``) with the CPU's bits,
    and each call adds one sample to ``gpu:<uuid>`` in the file, averaged by the documented
    EWMA (here clipped at three times the stored average)."""
    if worker_cap() < 2:
        pytest.skip("one usable core: the planner's one-core rule decides before any GPU")
    first = real_gpus[0]
    label, key = f"gpu:{first['index']}", f"gpu:{first['uuid']}"
    rows = GPU_AUTO_MIN_ROWS + 4099
    gpu_ns = {f"gpu:{d['uuid']}": 0.01 * (i + 1) for i, d in enumerate(real_gpus)}
    entries = {b: stat(1000.0) for b in cpu_backends()} | {k: stat(v) for k, v in gpu_ns.items()}
    profile = tmp_path / "shared.json"
    write_profile(profile, timings={n: {bucket(rows): entries} for n in CUDA_NAMES})

    proc = run_child(GPU_AUTO_CHILD, profile, str(rows), ",".join(CUDA_NAMES), hide_gpus=False)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["mismatch"] == {}
    assert report["explain"] == {n: label for n in CUDA_NAMES}

    logged = log_lines(proc.stderr)
    auto = [m for i, m in enumerate(logged) if i % 2 == 0]  # each name: auto, then cpu
    assert [(m["name"], int(m["rows"])) for m in auto] == [(n, rows) for n in CUDA_NAMES]
    timings = file_entry(profile)["timings"]
    on_gpu = 0
    for m in auto:
        stats = timings[m["name"]][bucket(rows)]
        if m["reason"].startswith("re-measuring"):  # now and then another candidate is timed
            assert stats[key]["samples"] == MIN_SAMPLES, m[0]
            continue
        assert m["plan"] == label and "fastest predicted" in m["reason"], m[0]
        on_gpu += 1
        x = float(m["ms"]) * 1e6 / rows
        want = gpu_ns[key] + EWMA_ALPHA * (min(x, OUTLIER_CLIP * gpu_ns[key]) - gpu_ns[key])
        assert stats[key]["samples"] == MIN_SAMPLES + 1, (m[0], stats[key])
        assert stats[key]["ewma_ns_per_row"] == pytest.approx(want, rel=1e-6), (m[0], stats)
    assert on_gpu >= len(CUDA_NAMES) - 2, [m[0] for m in auto]


@pytest.mark.gpu
def test_real_gpu_profile_auto_balance_stores_ratios_under_its_tag(
    real_gpus, isolated_profile: Path
):
    """Every real GPU and the CPU profiled on a million rows: ratios for each member summing to
    one, stored under the tag with the members' profile names (``gpu:<uuid>``, ``cpu``), written
    to the file and read back; each member timed alone on the workload; a split call with the
    tag uses them and then refines that tag only."""
    labels = [f"gpu:{d['index']}" for d in real_gpus] + ["cpu"]
    keys = {f"gpu:{d['index']}": f"gpu:{d['uuid']}" for d in real_gpus} | {"cpu": "cpu"}
    tag, n = "gpu-auto-profiling", 1_000_000
    ratios = gpu.profile_auto_balance(sample_size=n, runs=2, workload_tag=tag, devices="all")
    assert list(ratios) == labels
    assert sum(ratios.values()) == pytest.approx(1.0, abs=1e-12)
    assert all(0.0 < r < 1.0 for r in ratios.values()), ratios
    assert gpu.balance() == {tag: ratios}

    bollinger = threadx.profile.machine()["timings"]["bollinger"][bucket(n)]
    members = {keys[m] for m in labels if m != "cpu"}
    members.add(f"cpu:{threadx.get_threads() or worker_cap()}")
    assert {b: s["samples"] for b, s in bollinger.items()} == {b: 3 for b in members}

    assert threadx.profile.flush() is True
    stored = {keys[m]: r for m, r in ratios.items()}
    assert file_entry(isolated_profile)["balance"] == {tag: stored}
    threadx.profile.reload()
    assert gpu.balance(tag) == ratios

    plan = threadx.explain("bollinger", 1 << 21, device="all", workload_tag=tag)
    assert split_of(plan) == pytest.approx(ratios, rel=1e-12)
    assert "stored balance ratios" in plan.reason
    gpu.profile_auto_balance(sample_size=n, runs=1, workload_tag="other", devices="all")
    other = gpu.balance("other")
    ohlcv(1 << 20, seed=61).select(threadx.bollinger("close", device="all", workload_tag=tag))
    refined = gpu.balance(tag)
    assert set(refined) == set(ratios) and refined != ratios
    assert sum(refined.values()) == pytest.approx(1.0, abs=1e-9)
    assert gpu.balance("other") == other


@pytest.mark.gpu
def test_an_unmeasured_real_gpu_is_predicted_from_its_measured_link(
    real_gpus, isolated_profile: Path
):
    """``measure_link`` stores the GPU's link under ``gpu:<uuid>`` (in memory and in the file),
    and ``auto`` predicts the GPU's unmeasured calls from it: rows x 8 bytes x arrays each way
    over the bandwidths, plus two latencies."""
    first = real_gpus[0]
    label, key = f"gpu:{first['index']}", f"gpu:{first['uuid']}"
    link = gpu.measure_link(first["index"])
    assert link["h2d_gb_per_s"] > 0 and link["d2h_gb_per_s"] > 0 and link["latency_us"] >= 0
    stored = threadx.profile.machine()["links"][key]
    for k in ("h2d_gb_per_s", "d2h_gb_per_s", "latency_us"):
        assert stored[k] == pytest.approx(link[k], rel=1e-12)
    assert threadx.profile.flush() is True
    assert file_entry(isolated_profile)["links"][key] == stored
    rows = 1 << 22
    for name in CUDA_NAMES:
        ins, outs = ARRAYS[name]
        want = (
            rows * 8 * ins / (stored["h2d_gb_per_s"] * 1e9)
            + rows * 8 * outs / (stored["d2h_gb_per_s"] * 1e9)
            + 2 * stored["latency_us"] * 1e-6
        ) * 1e3
        candidate = by_backend(threadx.explain(name, rows))[label]
        assert candidate.samples == 0
        assert candidate.predicted_ms == pytest.approx(want, rel=1e-9), name
