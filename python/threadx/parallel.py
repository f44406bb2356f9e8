"""Threading helpers for the rest of a pipeline: ``parallel_map`` and ``configure_threads``.

threadx sizes its own indicator calls (physical cores, one core left to the system from 8 cores
up, one worker for small inputs). The Python code around those calls — loading files, calling
services, per-symbol feature code — and the other numeric libraries a pipeline loads have no such
planner, and a pipeline that runs a process pool whose workers each start a full-size thread pool
runs ``workers × cores`` threads on ``cores`` cores. This module applies the same rules there:

* ``parallel_map(fn, items)`` maps ``fn`` over ``items`` on threads (I/O-bound work) or processes
  (``use_processes=True``, CPU-bound Python), returns the results in input order, runs small
  inputs inline, and sizes each process worker's threadx threads so that ``workers × threads``
  stays within the physical cores.
* ``configure_threads()`` sets the thread-count variables of Polars, rayon, OpenMP, MKL, OpenBLAS
  and NumExpr to the physical-core count where the user has not set them, and warns when a library
  has already read its variable.

The worker counts are also reported by ``threadx.optimal_workers(kind="cpu"|"io", n_items=...)``.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import sys
import traceback
import warnings
from collections.abc import Iterable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Callable, TypeVar

from threadx import _internal
from threadx import _validate as check
from threadx._cpu import cpu_info

T = TypeVar("T")
R = TypeVar("R")

#: The largest ``max_workers`` accepted (the bound ``threadx.set_threads`` uses).
MAX_WORKERS = 1024
#: CPU-bound work: fewer items than this per worker is not worth another process.
CPU_MIN_ITEMS_PER_WORKER = 2
#: Process workers get about this many chunks each (``chunksize`` default), so a slow chunk near
#: the end does not leave the other workers idle for long.
CHUNKS_PER_WORKER = 4
#: I/O-bound work: threads mostly wait, so their count may exceed the cores, up to this cap ...
IO_MAX_WORKERS = 32
#: ... and this many threads per logical core.
IO_WORKERS_PER_CORE = 4

KINDS = ("cpu", "io")


class ParallelMapError(RuntimeError):
    """``fn`` raised on one item. ``index`` is the item's position in ``items``; ``__cause__`` is
    the exception ``fn`` raised (from a process worker: a copy, whose own ``__cause__`` holds the
    worker's traceback as text).

    A separate type rather than the original one, so that the item's index always travels with the
    error and an error from ``fn`` is never mistaken for one of ``parallel_map``'s own.
    """

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.index = index

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.args[0], self.index))


class _RemoteTraceback(Exception):
    """The traceback of an exception raised in a process worker, as text."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


def _cpu_cap() -> int:
    """The most CPU workers: the physical cores, one left to the system from 8 cores up (the
    indicator planner's rule, ``src/exec/planner/workers.rs``)."""
    p = max(cpu_info().physical_cores, 1)
    return p - 1 if p >= 8 else p


def _io_cap() -> int:
    return min(IO_MAX_WORKERS, IO_WORKERS_PER_CORE * max(cpu_info().logical_cores, 1))


def plan_workers(kind: str, n_items: int | None, max_workers: int | None = None) -> int:
    """The worker count ``parallel_map`` uses for ``n_items`` items (``None``: a large input).

    ``"cpu"`` (processes): at most the physical cores less the reserved one, and at most one worker
    per ``CPU_MIN_ITEMS_PER_WORKER`` items; ``max_workers`` can only lower it (more processes than
    cores only oversubscribe them). ``"io"`` (threads): at most ``min(32, 4 × logical cores)`` —
    or ``max_workers`` instead, when given — and at most one per item. One worker means inline: the
    items run in the caller, no pool is started.
    """
    if kind == "cpu":
        cap = _cpu_cap() if max_workers is None else min(_cpu_cap(), max_workers)
        per_worker = CPU_MIN_ITEMS_PER_WORKER
    else:
        cap = _io_cap() if max_workers is None else max_workers
        per_worker = 1
    if n_items is None:
        return max(cap, 1)
    return max(1, min(cap, n_items // per_worker))


def _chunksize(n_items: int, workers: int) -> int:
    return max(1, -(-n_items // (workers * CHUNKS_PER_WORKER)))


def _process_context() -> Any:
    """The multiprocessing context for process workers: the start method the program chose with
    ``multiprocessing.set_start_method`` (``"fork"`` included), else the platform default, except
    that an unchosen ``"fork"`` becomes ``"spawn"``: a child forked after Polars has run its thread
    pool inherits that pool without its threads and can hang or crash in Polars code (threadx's own
    kernels rebuild their pool after a fork, Polars' do not)."""
    chosen = multiprocessing.get_start_method(allow_none=True)
    if chosen is not None:
        return multiprocessing.get_context(chosen)
    default = multiprocessing.get_all_start_methods()[0]
    return multiprocessing.get_context("spawn" if default == "fork" else default)


def _init_process_worker(threads: int) -> None:
    """Each process worker's initializer: threadx uses ``threads`` workers there."""
    import threadx

    threadx.set_threads(threads)


def _describe(exc: BaseException) -> tuple[str, str]:
    return type(exc).__qualname__, str(exc)


def _run_chunk(
    fn: Callable[[Any], Any], start: int, chunk: list[Any], remote: bool
) -> tuple[Any, ...]:
    """Runs ``fn`` over ``chunk`` (items ``start``, ``start + 1``, ...): ``("ok", results)``, or
    ``("err", index, type name, message, exception, traceback text)`` for the first item that
    raised. In a process (``remote``) the traceback is sent as text (pickling drops it), and an
    exception that does not survive pickling is replaced by a RuntimeError with its text."""
    out = []
    for offset, item in enumerate(chunk):
        try:
            out.append(fn(item))
        except Exception as exc:  # noqa: BLE001  (any error of fn's is reported with its index)
            name, message = _describe(exc)
            tb = None
            if remote:
                tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                try:
                    pickle.loads(pickle.dumps(exc))
                except Exception:  # noqa: BLE001  (whatever pickling raises, send the text)
                    exc = RuntimeError(f"{name}: {message} (the exception could not be pickled)")
            return ("err", start + offset, name, message, exc, tb)
    return ("ok", out)


def _raise_item_error(
    index: int, name: str, message: str, exc: BaseException, tb: str | None
) -> None:
    if tb is not None:  # the worker's traceback, shown under the copied exception
        exc.__cause__ = _RemoteTraceback(f'\n"""\n{tb}"""')
    raise ParallelMapError(
        f"threadx.parallel_map: fn raised {name}: {message} on item {index}", index
    ) from exc


def _check_process_fn(fn: Callable[[Any], Any], context: Any) -> None:
    try:
        pickle.dumps(fn)
    except Exception as e:  # noqa: BLE001  (whatever pickling raises becomes the ValueError)
        raise ValueError(
            "threadx.parallel_map: fn must be picklable with use_processes=True (a module-level "
            f"function, not a lambda or a local function), got {fn!r}: {e}"
        ) from None
    main = sys.modules.get("__main__")
    interactive = main is not None and not getattr(main, "__file__", None)
    if (
        context.get_start_method() != "fork"
        and getattr(fn, "__module__", None) == "__main__"
        and interactive
    ):
        raise ValueError(
            "threadx.parallel_map: fn must be importable by the process workers with "
            f"use_processes=True, got {fn!r}, defined in an interactive session (__main__ has no "
            f"file) that {context.get_start_method()!r}-started workers cannot import; move it to "
            "a module"
        )


def parallel_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    use_processes: bool = False,
    max_workers: int | None = None,
    chunksize: int | None = None,
) -> list[R]:
    """``[fn(item) for item in items]`` on a thread or process pool, in input order.

    ``use_processes=False`` (default) runs ``fn`` on threads, for I/O-bound work (files, network,
    or code that releases the GIL, as threadx's indicators do): up to ``min(32, 4 × logical
    cores)`` threads, or ``max_workers``, and never more than the items. ``use_processes=True`` runs
    ``fn`` in worker processes, for CPU-bound Python: at most the physical cores (one left to the
    system from 8 cores up) and one worker per 2 items; ``max_workers`` can only lower that. Each
    process worker runs threadx with ``max(1, physical cores // workers)`` threads (no more than a
    count forced in the caller with ``threadx.set_threads``), so the workers do not oversubscribe
    the cores. ``threadx.optimal_workers(kind="io"|"cpu", n_items=...)`` reports these counts.

    When the rule gives one worker (0 or 1 item, 2–3 items with processes, ``max_workers=1``) the
    items run inline in the caller: no pool is started.

    ``items`` is read into a list first. ``chunksize`` items go to a worker at a time (default:
    1 for threads; for processes, enough that each worker gets about 4 chunks); a given
    ``chunksize`` also caps the workers at the number of chunks.

    Process workers use the start method chosen with ``multiprocessing.set_start_method``, else the
    platform's default, except that an unchosen ``"fork"`` becomes ``"spawn"`` (Polars is not
    fork-safe once its thread pool has run); ``fn`` and the items must then be picklable and
    ``fn`` importable (a module-level function; a script needs the ``if __name__ == "__main__":``
    guard).

    If ``fn`` raises, ``ParallelMapError`` is raised in the caller for the first failing item in
    input order: its message reads ``threadx.parallel_map: fn raised <Type>: <message> on item
    <index>``, ``.index`` is that index, and it is chained ``from`` the original exception. Items
    not yet started are cancelled.
    """
    where = "parallel_map"
    if not callable(fn):
        # ValueError for every bad argument, as everywhere in threadx
        raise ValueError(f"threadx.{where}: fn must be callable, got {fn!r}")  # noqa: TRY004
    if not isinstance(use_processes, bool):
        raise ValueError(  # noqa: TRY004
            f"threadx.{where}: use_processes must be True or False, got {use_processes!r}"
        )
    if max_workers is not None:
        max_workers = check.integer(where, "max_workers", max_workers, 1, MAX_WORKERS)
    if chunksize is not None:
        chunksize = check.integer(where, "chunksize", chunksize, 1, check.MAX_ROWS)
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise ValueError(  # noqa: TRY004
            f"threadx.{where}: items must be an iterable of items (not a string), got {items!r}"
        )
    items = list(items)
    n = len(items)
    context = _process_context() if use_processes else None
    if context is not None:
        _check_process_fn(fn, context)

    workers = plan_workers("cpu" if use_processes else "io", n, max_workers)
    if chunksize is not None:  # no more workers than chunks
        workers = min(workers, -(-n // chunksize))
    if workers <= 1:
        status = _run_chunk(fn, 0, items, remote=False)
        if status[0] == "err":
            _raise_item_error(*status[1:])
        return status[1]

    if use_processes:
        size = chunksize or _chunksize(n, workers)
        physical = max(cpu_info().physical_cores, 1)
        threads = max(1, physical // workers)
        forced = _internal.get_threads()
        if forced is not None:
            threads = min(threads, forced)
        executor: Any = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=_init_process_worker,
            initargs=(threads,),
        )
    else:
        size = chunksize or 1
        executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="threadx-map")

    # Starting a spawn worker fixes multiprocessing's default start method as a side effect
    # (multiprocessing.spawn.get_preparation_data calls get_start_method()); undo that afterwards,
    # so that the next call still sees an unchosen start method and does not fork.
    unchosen = multiprocessing.get_start_method(allow_none=True) is None
    results: list[Any] = []
    try:
        futures: list[Future] = [
            executor.submit(_run_chunk, fn, start, items[start : start + size], use_processes)
            for start in range(0, n, size)
        ]
        for future in futures:  # in input order: the first failing item in order is reported
            status = future.result()
            if status[0] == "err":
                _raise_item_error(*status[1:])
            results.extend(status[1])
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        if use_processes and unchosen:
            multiprocessing.set_start_method(None, force=True)
    return results


# --------------------------------------------------------------------------------------------
# configure_threads
# --------------------------------------------------------------------------------------------

#: Each variable and the library that reads it (once, when it starts its threads).
THREAD_VARIABLES: dict[str, str] = {
    "POLARS_MAX_THREADS": "Polars",
    "RAYON_NUM_THREADS": "rayon (threadx's kernels)",
    "OMP_NUM_THREADS": "OpenMP",
    "MKL_NUM_THREADS": "MKL",
    "OPENBLAS_NUM_THREADS": "OpenBLAS",
    "NUMEXPR_MAX_THREADS": "NumExpr",
    "NUMEXPR_NUM_THREADS": "NumExpr",
}

# Shared libraries that, once mapped into the process, have read a variable (Linux only).
_LIBRARY_FILES: dict[str, tuple[str, ...]] = {
    "OMP_NUM_THREADS": ("libgomp", "libiomp", "libomp"),
    "MKL_NUM_THREADS": ("libmkl",),
    "OPENBLAS_NUM_THREADS": ("openblas",),
}
# Python modules that, once imported, have read a variable.
_MODULES: dict[str, tuple[str, ...]] = {
    "OMP_NUM_THREADS": ("numpy",),  # NumPy's BLAS falls back to OMP_NUM_THREADS
    "MKL_NUM_THREADS": ("numpy", "mkl"),
    "OPENBLAS_NUM_THREADS": ("numpy",),
    "NUMEXPR_MAX_THREADS": ("numexpr",),
    "NUMEXPR_NUM_THREADS": ("numexpr",),
}


def _mapped_libraries() -> set[str]:
    try:
        with open("/proc/self/maps") as f:
            return {os.path.basename(line.split()[-1]) for line in f if ".so" in line}
    except OSError:
        return set()


def _polars_pool_size() -> int:
    import polars

    return int(polars.thread_pool_size())


def _too_late(variable: str, value: str, libs: set[str]) -> str | None:
    """Why setting ``variable`` now cannot reach this process any more, or ``None``."""
    if variable == "POLARS_MAX_THREADS":
        size = _polars_pool_size()
        if str(size) == value:
            return None
        return (
            f"Polars (imported with threadx, before any call could set the variable) runs "
            f"{size} threads (pl.thread_pool_size())"
        )
    loaded = [m for m in _MODULES.get(variable, ()) if m in sys.modules]
    loaded += sorted(
        f for f in libs if any(f.startswith(p) or p in f for p in _LIBRARY_FILES.get(variable, ()))
    )
    if loaded:
        return f"{THREAD_VARIABLES[variable]} already loaded ({', '.join(loaded)})"
    return None


def configure_threads() -> dict[str, dict[str, Any]]:
    """Sets each numeric library's thread-count variable to the physical-core count, unless the
    user has set it (a non-empty value is never overwritten).

    The variables are ``POLARS_MAX_THREADS``, ``RAYON_NUM_THREADS``, ``OMP_NUM_THREADS``,
    ``MKL_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``NUMEXPR_MAX_THREADS`` and
    ``NUMEXPR_NUM_THREADS``. Each library reads its variable once, when it loads or starts its
    threads, so call this first thing (before importing NumPy), or rely on it for the child
    processes started afterwards, which inherit the environment. Polars is imported with threadx,
    so ``POLARS_MAX_THREADS`` set here reaches only child processes: set it in the environment
    before Python starts to size this process's Polars pool.

    One ``RuntimeWarning`` names the libraries that have already read a variable set here with a
    different value. rayon's variable is read when threadx first runs an indicator on several
    workers, which Python cannot observe, so it never warns.

    Returns ``{variable: {"value": str, "set": bool, "why": str}}``: the value in the environment
    now, whether this call set it, and why.
    """
    physical = str(max(cpu_info().physical_cores, 1))
    libs = _mapped_libraries()
    report: dict[str, dict[str, Any]] = {}
    late: list[str] = []
    for variable, library in THREAD_VARIABLES.items():
        current = os.environ.get(variable, "")
        if current.strip():
            report[variable] = {
                "value": current,
                "set": False,
                "why": f"already set to {current!r} (the user's value is kept)",
            }
            continue
        os.environ[variable] = physical
        why = f"set to the physical-core count ({physical}) for {library}"
        reason = _too_late(variable, physical, libs)
        if variable == "POLARS_MAX_THREADS" and reason is None:
            why += (
                "; Polars, imported with threadx, already runs that many threads "
                "(pl.thread_pool_size()), and child processes inherit the variable"
            )
        if reason is not None:
            why += f"; too late for this process: {reason}, so it reaches only child processes"
            late.append(f"{variable} ({reason})")
        elif variable == "RAYON_NUM_THREADS":
            why += "; takes effect unless threadx already ran a multi-worker indicator call"
        report[variable] = {"value": physical, "set": True, "why": why}
    if late:
        warnings.warn(
            "threadx.configure_threads: called too late for "
            + "; ".join(late)
            + ". These variables reach only child processes started from now on; set them in the "
            "environment before Python starts (or call configure_threads() before importing "
            "those libraries).",
            RuntimeWarning,
            stacklevel=2,
        )
    return report
