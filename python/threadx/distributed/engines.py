"""Where the tasks run: a Ray cluster, or a process pool on this machine.

Both engines run the same task functions (``tasks``) with the same retry rule: a task whose worker
process dies, or that raises ``OSError`` (a file system hiccup), is run again, up to
``max_retries`` times; any other exception is the job's error. Each worker runs threadx and Polars
on ``threads`` threads, set through ``THREADX_NUM_THREADS`` and ``POLARS_MAX_THREADS`` in the
worker's environment (Polars reads its variable once, at import, so it must be there before the
worker starts), so that workers x threads stays within the cores.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import socket
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, ClassVar

from threadx import _internal
from threadx import parallel as _parallel
from threadx._cpu import cpu_info

WHERE = "threadx.distributed.compute"

#: How long the driver waits for a TCP answer from a Ray address before calling it unreachable.
CONNECT_TIMEOUT_S = 5.0


def thread_env(threads: int) -> dict[str, str]:
    """The variables that size a worker's threadx and Polars pools."""
    return {"THREADX_NUM_THREADS": str(threads), "POLARS_MAX_THREADS": str(threads)}


# --------------------------------------------------------------------------------------------
# Ray
# --------------------------------------------------------------------------------------------


def _host_port(address: str) -> tuple[str, int] | None:
    """The host and port a Ray address names (``host:port`` or ``ray://host:port``), or ``None``
    for the addresses Ray resolves itself (``auto``, ``local``)."""
    text = address.strip()
    if text in ("auto", "local"):
        return None
    text = text.split("://", 1)[-1].rstrip("/")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(
            f"{WHERE}: address must be 'host:port', 'ray://host:port', 'auto' or None, "
            f"got {address!r}"
        )
    return host.strip("[]"), int(port)


def check_address(address: str | None) -> None:
    """Refuses an address nothing answers at, before Ray would retry it for a minute."""
    if address is None:
        return
    if not isinstance(address, str):
        raise ValueError(  # noqa: TRY004  (ValueError for every bad argument, as in threadx)
            f"{WHERE}: address must be a string or None, got {address!r}"
        )
    target = _host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as e:
        raise ConnectionError(
            f"{WHERE}: cannot reach a Ray cluster at {address!r} ({e.strerror or e}); start "
            "one there (`ray start --head`), check the address and port, or pass address=None "
            "to start a local cluster"
        ) from None


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ImportError(
            f"{WHERE}: engine='ray' needs Ray: pip install 'threadx[ray]' (or engine='local')"
        ) from None
    return ray


def _same_cluster(ray: Any, address: str) -> bool:
    target = _host_port(address)
    if target is None or address == RayEngine.connected:
        return True
    if address.strip().startswith("ray://"):
        return False  # a client address cannot be compared with the GCS address
    current = ray.get_runtime_context().gcs_address or ""
    host, _, port = current.rpartition(":")
    try:
        same_host = socket.gethostbyname(host) == socket.gethostbyname(target[0])
    except OSError:
        same_host = host == target[0]
    return same_host and port == str(target[1])


class RayEngine:
    """Tasks as Ray remote functions: Ray places them (CPUs, GPUs), retries them when a worker
    dies, and moves the shared ``Spec`` once per node through its object store."""

    name = "ray"
    #: The address this engine last passed to ``ray.init``: a Ray Client connection (``ray://``)
    #: reports the cluster's GCS address, not the one it was opened with.
    connected: ClassVar[str | None] = None

    def __init__(
        self, address: str | None, cpus_per_task: int, gpus_per_task: float, max_retries: int
    ) -> None:
        ray = self._ray = _import_ray()
        if ray.is_initialized():
            # One Ray connection per process: use it, unless the caller named another cluster.
            if address is not None and not _same_cluster(ray, address):
                raise ValueError(
                    f"{WHERE}: this process is already connected to the Ray cluster at "
                    f"{ray.get_runtime_context().gcs_address}, not {address!r}; call "
                    "ray.shutdown() first, or pass address=None to use the connected one"
                )
        else:
            ray.init(address=address)
            RayEngine.connected = address
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.parallelism = max(1, cpus // cpus_per_task)
        self.workers = self.parallelism
        self._options = {
            "num_cpus": cpus_per_task,
            "num_gpus": gpus_per_task,
            "max_retries": max_retries,
            "retry_exceptions": [OSError],
            "runtime_env": {"env_vars": thread_env(cpus_per_task)},
        }

    def map(self, fn: Callable[..., Any], shared: Any, calls: Sequence[tuple[Any, ...]]) -> list:
        ray = self._ray
        remote = ray.remote(fn).options(**self._options)
        shared_ref = ray.put(shared)
        refs = [remote.remote(shared_ref, *args) for args in calls]
        try:
            return ray.get(refs)
        except BaseException:
            for ref in refs:  # a failed job: stop what has not finished
                with contextlib.suppress(Exception):
                    ray.cancel(ref)
            raise

    def close(self) -> None:
        """The Ray connection stays up for the next job (``ray.shutdown()`` ends it)."""


# --------------------------------------------------------------------------------------------
# local process pool
# --------------------------------------------------------------------------------------------

_ENV_LOCK = threading.Lock()


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """``env`` set in this process while spawned workers start (they copy the environment)."""
    with _ENV_LOCK:
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


class LocalEngine:
    """Tasks on a process pool of this machine, sized like ``threadx.parallel_map``'s: at most
    the physical cores (one left to the system from 8 up) and ``physical // workers`` threads
    each, so workers x threads <= physical cores."""

    name = "local"

    def __init__(self, n_tasks: int, max_workers: int | None, max_retries: int) -> None:
        self.parallelism = _parallel.plan_workers("cpu", None, max_workers)
        self.workers = max(1, min(self.parallelism, n_tasks))
        threads = max(1, max(cpu_info().physical_cores, 1) // self.workers)
        forced = _internal.get_threads()
        self.threads = min(threads, forced) if forced is not None else threads
        self._max_retries = max_retries
        self._pool: ProcessPoolExecutor | None = None

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn: a forked child inherits Polars' thread pool without its threads (see
        # threadx.parallel), and a forkserver would not pass the thread variables on.
        return ProcessPoolExecutor(
            max_workers=self.workers, mp_context=multiprocessing.get_context("spawn")
        )

    def map(self, fn: Callable[..., Any], shared: Any, calls: Sequence[tuple[Any, ...]]) -> list:
        if self.workers == 1:  # inline, as parallel_map does: no pool for one worker
            return [self._inline(fn, shared, args) for args in calls]
        results: list[Any] = [None] * len(calls)
        pending = set(range(len(calls)))
        failures = [0] * len(calls)
        strikes = 0  # pool deaths in a row without a finished task
        while pending:
            if self._pool is None:
                self._pool = self._new_pool()
            with _environment(thread_env(self.threads)):
                futures: dict[Future, int] = {
                    self._pool.submit(fn, shared, *calls[i]): i for i in sorted(pending)
                }
            broken = False
            progressed = False
            waiting = set(futures)
            while waiting:
                done, waiting = wait(waiting, return_when=FIRST_COMPLETED)
                for future in done:
                    i = futures[future]
                    try:
                        results[i] = future.result()
                    except BrokenProcessPool:
                        broken = True
                        continue
                    except OSError:
                        failures[i] += 1
                        if failures[i] > self._max_retries:
                            self._abort()
                            raise
                        continue  # still pending: submitted again in the next round
                    except BaseException:
                        self._abort()
                        raise
                    pending.discard(i)
                    progressed = True
            if broken:
                self._abort()
                strikes = 0 if progressed else strikes + 1
                if strikes > self._max_retries:
                    raise RuntimeError(
                        f"{WHERE}: a worker process died {strikes} times in a row (the last "
                        f"{len(pending)} task(s) never finished); max_retries={self._max_retries}. "
                        "A script that runs engine='local' needs the `if __name__ == "
                        '"__main__":` guard: the spawned workers import it'
                    )
        return results

    def _inline(self, fn: Callable[..., Any], shared: Any, args: tuple[Any, ...]) -> Any:
        for attempt in range(self._max_retries + 1):
            try:
                return fn(shared, *args)
            except OSError:
                if attempt == self._max_retries:
                    raise
        raise AssertionError("unreachable")

    def _abort(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        self._abort()
