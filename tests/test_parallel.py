"""threadx.parallel_map, threadx.configure_threads and optimal_workers(kind=...): input order,
error reporting, inline runs for small inputs, worker counts within the planner's rules, real
processes whose threadx gives the parent's bits (spawn by default, fork when chosen), and thread
variables that are set without overwriting the user's and with a warning when it is too late.

The functions run in process workers are module-level so that spawn-started workers can import
them (pytest puts tests/ on sys.path, and a spawned child is given the parent's sys.path).
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import threadx
from threadx import _internal, parallel

TESTS = Path(__file__).resolve().parent
PERIODS = [5, 10, 20, 50]
_WAIT_S = 30.0


def _physical() -> int:
    return max(threadx.cpu_info().physical_cores, 1)


def _cpu_cap() -> int:
    p = _physical()
    return p - 1 if p >= 8 else p


def _io_cap() -> int:
    return min(32, 4 * max(threadx.cpu_info().logical_cores, 1))


# ---- functions run in process workers ------------------------------------------------------


def _where(item: Any) -> tuple[int, int]:
    return os.getpid(), threading.get_ident()


def _fail_on_3(i: int) -> int:
    if i == 3:
        raise ValueError(f"bad {i}")
    return i


def _rendezvous(arg: tuple[int, str, int]) -> tuple[int, int, int | None, str | None]:
    """Waits until ``expected`` distinct processes have an item, so every worker is seen."""
    i, folder, expected = arg
    Path(folder, f"{os.getpid()}-{i}").touch()
    deadline = time.monotonic() + _WAIT_S
    while time.monotonic() < deadline:
        if len({f.split("-")[0] for f in os.listdir(folder)}) >= expected:
            break
        time.sleep(0.01)
    return i, os.getpid(), threadx.get_threads(), multiprocessing.get_start_method(allow_none=True)


def _indicator_bits(period: int) -> bytes:
    """ema and rolling_std of a fixed random walk, as raw float64 bytes (one expression per
    select: several would run on Polars' pool, which a forked child cannot use)."""
    x = np.random.default_rng(7).normal(size=60_000).cumsum()
    df = pl.DataFrame({"x": x})
    a = df.select(threadx.ema("x", period)).to_series().to_numpy()
    b = df.select(threadx.rolling_std("x", period)).to_series().to_numpy()
    return a.tobytes() + b.tobytes()


def _bits_in_worker(period: int) -> tuple[int, str | None, bytes]:
    return os.getpid(), multiprocessing.get_start_method(allow_none=True), _indicator_bits(period)


def _bits_with_two_threads(period: int) -> tuple[int, str | None, bytes]:
    threadx.set_threads(2)  # several workers: the rayon pool, rebuilt after a fork
    return os.getpid(), multiprocessing.get_start_method(allow_none=True), _indicator_bits(period)


# ---- order ---------------------------------------------------------------------------------


def test_threads_return_results_in_input_order_when_items_finish_out_of_order() -> None:
    n = 12
    finished: list[int] = []
    lock = threading.Lock()

    def slow_first(i: int) -> int:
        time.sleep((n - i) * 0.01)  # item 0 sleeps longest
        with lock:
            finished.append(i)
        return i * i

    assert threadx.parallel_map(slow_first, range(n)) == [i * i for i in range(n)]
    assert sorted(finished) == list(range(n))
    assert finished != list(range(n)), "items did not finish out of order: nothing ran in parallel"


# ---- errors --------------------------------------------------------------------------------


def test_exception_names_the_item_index_and_chains_the_original() -> None:
    def f(i: int) -> int:
        if i == 7:
            raise ValueError(f"bad {i}")
        return i

    for chunksize in (4, None):  # item 7 is the 4th item of the 2nd chunk of 4
        with pytest.raises(threadx.ParallelMapError) as info:
            threadx.parallel_map(f, range(20), chunksize=chunksize)
        assert info.value.index == 7
    err = info.value
    assert str(err) == "threadx.parallel_map: fn raised ValueError: bad 7 on item 7"
    assert err.index == 7
    assert isinstance(err.__cause__, ValueError) and str(err.__cause__) == "bad 7"
    assert err.__cause__.__traceback__ is not None  # the thread's traceback is kept


def test_first_failing_item_in_input_order_is_reported() -> None:
    def f(i: int) -> int:
        if i == 5:
            time.sleep(0.2)  # fails last in time, first in order
            raise KeyError("five")
        if i == 15:
            raise KeyError("fifteen")
        return i

    with pytest.raises(threadx.ParallelMapError, match=r"KeyError: 'five' on item 5$") as info:
        threadx.parallel_map(f, range(20), max_workers=20)
    assert info.value.index == 5 and isinstance(info.value.__cause__, KeyError)


def test_inline_exception_is_reported_the_same_way() -> None:
    def f(_: object) -> None:
        raise KeyError("k")

    with pytest.raises(threadx.ParallelMapError) as info:
        threadx.parallel_map(f, ["only"])
    assert str(info.value) == "threadx.parallel_map: fn raised KeyError: 'k' on item 0"
    assert info.value.index == 0 and isinstance(info.value.__cause__, KeyError)


def test_items_not_started_are_cancelled_after_a_failure() -> None:
    calls: list[int] = []

    def f(i: int) -> int:
        calls.append(i)
        if i == 0:
            raise ValueError("stop")
        time.sleep(0.01)
        return i

    with pytest.raises(threadx.ParallelMapError):
        threadx.parallel_map(f, range(500), max_workers=2)
    assert len(calls) < 100, len(calls)


# ---- inline runs ---------------------------------------------------------------------------


class _NoPool:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("a pool was started for an input that should run inline")


@pytest.mark.parametrize("use_processes", [False, True])
def test_zero_and_one_items_run_inline_without_a_pool(
    use_processes: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parallel, "ThreadPoolExecutor", _NoPool)
    monkeypatch.setattr(parallel, "ProcessPoolExecutor", _NoPool)
    here = (os.getpid(), threading.get_ident())
    assert threadx.parallel_map(_where, [], use_processes=use_processes) == []
    assert threadx.parallel_map(_where, iter([]), use_processes=use_processes) == []
    assert threadx.parallel_map(_where, ["x"], use_processes=use_processes) == [here]
    assert threadx.optimal_workers(kind="cpu" if use_processes else "io", n_items=1) == 1
    assert threadx.optimal_workers(kind="cpu" if use_processes else "io", n_items=0) == 1


def test_few_items_per_process_or_max_workers_1_run_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "ThreadPoolExecutor", _NoPool)
    monkeypatch.setattr(parallel, "ProcessPoolExecutor", _NoPool)
    here = (os.getpid(), threading.get_ident())
    # fewer than 2 items per process worker: one worker, inline
    assert threadx.optimal_workers(kind="cpu", n_items=3) == 1
    assert threadx.parallel_map(_where, range(3), use_processes=True) == [here] * 3
    assert threadx.parallel_map(_where, range(10), max_workers=1) == [here] * 10
    # one chunk holds every item: one worker
    assert threadx.parallel_map(_where, range(10), chunksize=10) == [here] * 10


# ---- worker counts -------------------------------------------------------------------------


def test_optimal_workers_rules_on_this_machine() -> None:
    cap, io = _cpu_cap(), _io_cap()
    assert threadx.optimal_workers(kind="io", n_items=100) == min(io, 100)
    assert threadx.optimal_workers(kind="io", n_items=3) == min(io, 3)
    assert threadx.optimal_workers(kind="io") == io
    assert threadx.optimal_workers(kind="io", n_items=100, max_workers=50) == 50
    assert threadx.optimal_workers(kind="cpu", n_items=100) == min(cap, 50)
    assert threadx.optimal_workers(kind="cpu", n_items=5) == min(cap, 2)
    assert threadx.optimal_workers(kind="cpu") == cap
    assert threadx.optimal_workers(kind="cpu", n_items=100, max_workers=1000) == cap
    assert threadx.optimal_workers(kind="cpu", n_items=100, max_workers=1) == 1
    # the indicator planner's calls are unchanged
    assert threadx.optimal_workers(1000) == _internal.optimal_workers(1000, None)
    assert threadx.optimal_workers(10**6, "sma") == _internal.optimal_workers(10**6, "sma")
    assert threadx.optimal_workers() == _internal.optimal_workers(None, None)


@pytest.mark.parametrize(
    ("physical", "logical", "n_items", "cpu", "io"),
    [
        (16, 32, None, 15, 32),  # one core left to the system from 8 cores up
        (8, 16, 100, 7, 32),
        (7, 7, 100, 7, 28),  # below 8 cores every core is used
        (4, 8, 5, 2, 5),  # 2 items per process worker; one thread per item
        (1, 1, 100, 1, 4),
    ],
)
def test_optimal_workers_rules_on_other_machines(
    physical: int,
    logical: int,
    n_items: int | None,
    cpu: int,
    io: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = threadx.CpuInfo("fake", physical, logical, logical > physical)
    monkeypatch.setattr(parallel, "cpu_info", lambda: fake)
    assert threadx.optimal_workers(kind="cpu", n_items=n_items) == cpu
    assert threadx.optimal_workers(kind="io", n_items=n_items) == io


def _observe_threads(n: int, max_workers: int | None) -> tuple[set[int], int]:
    """Runs ``n`` sleeping items on threads: the thread ids seen and the most items at once."""
    idents: set[int] = set()
    active = peak = 0
    lock = threading.Lock()

    def f(i: int) -> int:
        nonlocal active, peak
        with lock:
            idents.add(threading.get_ident())
            active += 1
            peak = max(peak, active)
        time.sleep(0.02)
        with lock:
            active -= 1
        return i

    assert threadx.parallel_map(f, range(n), max_workers=max_workers) == list(range(n))
    return idents, peak


@pytest.mark.parametrize("max_workers", [None, 3])
def test_thread_workers_never_exceed_the_rule(max_workers: int | None) -> None:
    n = 40
    idents, peak = _observe_threads(n, max_workers)
    limit = threadx.optimal_workers(kind="io", n_items=n, max_workers=max_workers)
    assert limit == (min(_io_cap(), n) if max_workers is None else 3)
    assert 2 <= len(idents) <= limit, (len(idents), limit)
    assert 2 <= peak <= limit, (peak, limit)
    assert threading.get_ident() not in idents


# ---- processes -----------------------------------------------------------------------------


@pytest.fixture
def unchosen_start_method():
    """No start method chosen (as in a fresh program), restored afterwards; yields the method
    parallel_map should use: the platform default, with fork replaced by spawn."""
    saved = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method(None, force=True)
    default = multiprocessing.get_all_start_methods()[0]
    try:
        yield "spawn" if default == "fork" else default
        # a call leaves the start method unchosen (starting spawn workers would fix it)
        assert multiprocessing.get_start_method(allow_none=True) is None
    finally:
        multiprocessing.set_start_method(saved, force=True)


def test_processes_are_used_within_the_rule(tmp_path: Path, unchosen_start_method: str) -> None:
    n = 8
    workers = threadx.optimal_workers(kind="cpu", n_items=n)
    assert workers == min(_cpu_cap(), n // 2)
    items = [(i, str(tmp_path), workers) for i in range(n)]
    out = threadx.parallel_map(_rendezvous, items, use_processes=True)
    assert [o[0] for o in out] == list(range(n))  # input order
    pids = {o[1] for o in out}
    if workers == 1:  # a one-core machine: inline
        assert pids == {os.getpid()}
        return
    assert len(pids) == workers and os.getpid() not in pids, (pids, workers)
    # each worker's threadx threads: workers x threads <= physical cores
    forced = threadx.get_threads()
    threads = max(1, _physical() // workers)
    if forced is not None:
        threads = min(threads, forced)
    assert {o[2] for o in out} == {threads}
    assert workers * threads <= _physical() or threads == 1
    # an unchosen fork start method becomes spawn (Polars is not fork-safe)
    assert {o[3] for o in out} == {unchosen_start_method}


def test_indicator_in_process_workers_gives_the_parents_bits(unchosen_start_method: str) -> None:
    expected = [_indicator_bits(p) for p in PERIODS]
    out = threadx.parallel_map(_bits_in_worker, PERIODS, use_processes=True, chunksize=1)
    assert [o[2] for o in out] == expected
    if threadx.optimal_workers(kind="cpu", n_items=len(PERIODS)) > 1:
        assert os.getpid() not in {o[0] for o in out}
        assert {o[1] for o in out} == {unchosen_start_method}


def test_process_exception_names_the_index_and_carries_the_worker_traceback(
    unchosen_start_method: str,
) -> None:
    with pytest.raises(threadx.ParallelMapError) as info:
        threadx.parallel_map(_fail_on_3, range(6), use_processes=True)
    err = info.value
    assert str(err) == "threadx.parallel_map: fn raised ValueError: bad 3 on item 3"
    assert err.index == 3
    assert isinstance(err.__cause__, ValueError) and str(err.__cause__) == "bad 3"
    if threadx.optimal_workers(kind="cpu", n_items=6) > 1:  # the worker's traceback, as text
        assert "_fail_on_3" in str(err.__cause__.__cause__)


def test_fork_start_method_works_and_gives_the_parents_bits() -> None:
    script = textwrap.dedent(
        f"""
        import multiprocessing, os, sys
        multiprocessing.set_start_method("fork")
        sys.path.insert(0, {str(TESTS)!r})
        import threadx
        from test_parallel import PERIODS, _bits_with_two_threads, _indicator_bits
        threadx.set_threads(2)  # the parent's rayon pool exists before the fork
        expected = [_indicator_bits(p) for p in PERIODS]
        threadx.set_threads(None)
        out = threadx.parallel_map(_bits_with_two_threads, PERIODS, use_processes=True)
        assert [o[2] for o in out] == expected, "bits differ"
        if threadx.optimal_workers(kind="cpu", n_items=len(PERIODS)) > 1:
            assert os.getpid() not in {{o[0] for o in out}}, "no process was used"
            assert {{o[1] for o in out}} == {{"fork"}}, out
        print("OK", len({{o[0] for o in out}}))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0 and proc.stdout.startswith("OK"), proc.stderr[-3000:]


# ---- argument validation -------------------------------------------------------------------


def _identity(x: Any) -> Any:
    return x


_BAD_CALLS = {
    "fn=1": (lambda: threadx.parallel_map(1, [1]), "parallel_map", "fn"),
    "fn lambda with processes": (
        lambda: threadx.parallel_map(lambda x: x, [1, 2], use_processes=True),
        "parallel_map",
        "fn",
    ),
    "items=5": (lambda: threadx.parallel_map(_identity, 5), "parallel_map", "items"),
    "items='abc'": (lambda: threadx.parallel_map(_identity, "abc"), "parallel_map", "items"),
    "use_processes='yes'": (
        lambda: threadx.parallel_map(_identity, [1], use_processes="yes"),
        "parallel_map",
        "use_processes",
    ),
    "max_workers=0": (
        lambda: threadx.parallel_map(_identity, [1], max_workers=0),
        "parallel_map",
        "max_workers",
    ),
    "max_workers=-1": (
        lambda: threadx.parallel_map(_identity, [1], max_workers=-1),
        "parallel_map",
        "max_workers",
    ),
    "max_workers=2.0": (
        lambda: threadx.parallel_map(_identity, [1], max_workers=2.0),
        "parallel_map",
        "max_workers",
    ),
    "max_workers=True": (
        lambda: threadx.parallel_map(_identity, [1], max_workers=True),
        "parallel_map",
        "max_workers",
    ),
    "chunksize=0": (
        lambda: threadx.parallel_map(_identity, [1], chunksize=0),
        "parallel_map",
        "chunksize",
    ),
    "chunksize='2'": (
        lambda: threadx.parallel_map(_identity, [1], chunksize="2"),
        "parallel_map",
        "chunksize",
    ),
    "kind='gpu'": (lambda: threadx.optimal_workers(kind="gpu"), "optimal_workers", "kind"),
    "kind=1": (lambda: threadx.optimal_workers(kind=1), "optimal_workers", "kind"),
    "kind with indicator": (
        lambda: threadx.optimal_workers(indicator="sma", kind="cpu"),
        "optimal_workers",
        "indicator",
    ),
    "kind with n_rows": (
        lambda: threadx.optimal_workers(100, kind="io"),
        "optimal_workers",
        "n_rows",
    ),
    "n_items without kind": (
        lambda: threadx.optimal_workers(n_items=5),
        "optimal_workers",
        "n_items",
    ),
    "n_items=-1": (
        lambda: threadx.optimal_workers(kind="cpu", n_items=-1),
        "optimal_workers",
        "n_items",
    ),
    "max_workers=0 (optimal_workers)": (
        lambda: threadx.optimal_workers(kind="io", max_workers=0),
        "optimal_workers",
        "max_workers",
    ),
    "n_rows=-1 (unchanged)": (lambda: threadx.optimal_workers(-1), "optimal_workers", "n_rows"),
}


@pytest.mark.parametrize("case", list(_BAD_CALLS))
def test_bad_arguments_raise_value_error_naming_function_and_parameter(case: str) -> None:
    call, where, param = _BAD_CALLS[case]
    with pytest.raises(ValueError, match=rf"^threadx\.{where}: {param} (must|needs)\b") as info:
        call()
    assert "got" in str(info.value)


# ---- configure_threads ---------------------------------------------------------------------


@pytest.fixture
def clean_thread_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Every thread variable unset; monkeypatch restores the environment afterwards."""
    for variable in parallel.THREAD_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    return monkeypatch


def test_configure_threads_keeps_the_users_values_and_reports(
    clean_thread_env: pytest.MonkeyPatch,
) -> None:
    clean_thread_env.setenv("OMP_NUM_THREADS", "3")
    clean_thread_env.setenv("MKL_NUM_THREADS", "")  # empty: not a value, so it is set
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = threadx.configure_threads()
    physical = str(_physical())
    assert list(report) == [
        "POLARS_MAX_THREADS",
        "RAYON_NUM_THREADS",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "NUMEXPR_MAX_THREADS",
        "NUMEXPR_NUM_THREADS",
    ]
    assert report["OMP_NUM_THREADS"]["value"] == "3" and report["OMP_NUM_THREADS"]["set"] is False
    assert "already set" in report["OMP_NUM_THREADS"]["why"]
    assert os.environ["OMP_NUM_THREADS"] == "3"
    for variable, entry in report.items():
        assert set(entry) == {"value", "set", "why"} and entry["why"]
        if variable != "OMP_NUM_THREADS":
            assert entry == {"value": physical, "set": True, "why": entry["why"]}, variable
            assert os.environ[variable] == physical
    # a second call keeps what the first one set
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = threadx.configure_threads()
    assert not any(e["set"] for e in again.values())


def test_configure_threads_warns_once_when_numpy_is_already_loaded(
    clean_thread_env: pytest.MonkeyPatch,
) -> None:
    assert "numpy" in sys.modules
    with pytest.warns(RuntimeWarning) as record:
        report = threadx.configure_threads()
    assert len(record) == 1
    message = str(record[0].message)
    assert message.startswith("threadx.configure_threads: called too late for ")
    assert "OPENBLAS_NUM_THREADS" in message and "numpy" in message
    assert "NUMEXPR" not in message or "numexpr" in sys.modules
    assert "too late" in report["OPENBLAS_NUM_THREADS"]["why"]


def test_configure_threads_warns_when_polars_pool_is_already_sized() -> None:
    """Polars is imported with threadx: a pool started with another size cannot change."""
    pool = _physical() + 1
    script = textwrap.dedent(
        """
        import os, warnings
        import threadx
        del os.environ["POLARS_MAX_THREADS"]
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            report = threadx.configure_threads()
        assert len(record) == 1, [str(r.message) for r in record]
        print(report["POLARS_MAX_THREADS"]["set"], "|", record[0].message)
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in parallel.THREAD_VARIABLES}
    env["POLARS_MAX_THREADS"] = str(pool)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("True |"), proc.stdout
    assert "POLARS_MAX_THREADS" in proc.stdout and "Polars" in proc.stdout
    assert f"runs {pool} threads (pl.thread_pool_size())" in proc.stdout, proc.stdout


def test_public_names() -> None:
    for name in ("parallel_map", "configure_threads", "ParallelMapError"):
        assert name in threadx.__all__ and hasattr(threadx, name)
    assert issubclass(threadx.ParallelMapError, RuntimeError)
