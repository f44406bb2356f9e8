"""``threadx.autotune``: measure every candidate backend over a range of sizes and store the
timings in the profile, so that later calls are planned from measurements instead of defaults."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from threadx import _internal
from threadx import profile as _profile
from threadx._registry import NAMES as INDICATORS
from threadx._workloads import expr as _expr
from threadx._workloads import frame as _frame
from threadx.planning import explain

DEFAULT_SIZES = (1_000, 10_000, 100_000, 1_000_000)
#: Each measurement repeats the call until it has lasted this long, and reports the time per call:
#: a 1,000-row call takes microseconds, and one such reading is mostly timer and scheduler noise.
MIN_MEASURE_SECONDS = 0.02

# Indirections the noise tests replace with a synthetic clock (tests/test_autotune_noise.py).
_clock = time.perf_counter


def _run(df, expr) -> None:
    df.select(expr)


def _measure(call, min_seconds: float = MIN_MEASURE_SECONDS) -> tuple[float, int]:
    """Seconds per call of ``call()`` repeated until ``min_seconds`` have passed, and how many
    calls that took."""
    calls, t0 = 0, _clock()
    while True:
        call()
        calls += 1
        elapsed = _clock() - t0
        if elapsed >= min_seconds:
            return elapsed / calls, calls


def _spread(times: Sequence[float]) -> float:
    """The noise of a set of measurements: half their range (0 for one measurement; a lone
    reading then has to be beaten outright)."""
    return (max(times) - min(times)) / 2 if len(times) > 1 else 0.0


def _cost(backend: str) -> tuple[int, int]:
    """Preference order when times tie within the noise: fewer CPU workers first, GPUs last."""
    kind, _, n = backend.partition(":")
    return (0, int(n)) if kind == "cpu" and n.isdigit() else (1, 0)


def pick(medians: dict[str, float], spreads: dict[str, float]) -> str:
    """The backend to prefer: in order of cost (fewer workers first), a costlier candidate
    replaces the current pick only when it is faster by more than both their spreads."""
    order = sorted(medians, key=lambda b: (_cost(b), b))
    best = order[0]
    for b in order[1:]:
        if medians[best] - medians[b] > spreads.get(best, 0.0) + spreads.get(b, 0.0):
            best = b
    return best


#: The largest size autotune accepts: it builds a frame of this many rows (8 bytes per column).
MAX_SIZE = 2**32


def _gpu_targets(devices: Sequence[str] | None) -> list[int]:
    """GPU ordinals to profile: every usable GPU by default, the listed ones when asked."""
    from threadx import gpu

    st = gpu.status()
    usable = [d["index"] for d in st["devices"]]
    if devices is None:
        return usable
    wanted: list[int] = []
    for d in devices:
        if d in ("cpu", "auto"):
            continue
        if d == "gpu":
            ids = usable
        elif d.startswith("gpu:") and all(p.strip().isdigit() for p in d[4:].split(",")):
            ids = [int(p) for p in d[4:].split(",")]
        else:
            raise ValueError(
                f"threadx.autotune: devices must be 'cpu', 'gpu' or 'gpu:<i>', got {d!r}"
            )
        missing = [i for i in ids if i not in usable]
        if not usable or missing:
            raise ValueError(
                f"threadx.autotune: device {d!r} cannot be profiled: no usable GPU "
                f"{missing or ''} ({st['reason'] or 'usable GPUs: ' + str(usable)})"
            )
        wanted += [i for i in ids if i not in wanted]
    return wanted


@dataclass
class TuneSummary:
    """What ``autotune`` measured: per indicator and size, the median time per call of every
    backend (``timings_ms``) and the noise of those measurements (``spread_ms``, half their
    range). ``best`` prefers fewer workers unless more win by more than the noise, and
    ``crossovers`` lists the sizes at which that choice changes."""

    sizes: list[int]
    runs: int
    timings_ms: dict[str, dict[int, dict[str, float]]] = field(default_factory=dict)
    crossovers: dict[str, list[tuple[int, str, str]]] = field(default_factory=dict)
    profile_path: str | None = None
    #: Per GPU (``"gpu:<i>"``): the measured link (GB/s each way, latency in µs).
    links: dict[str, dict[str, float]] = field(default_factory=dict)
    spread_ms: dict[str, dict[int, dict[str, float]]] = field(default_factory=dict)

    def best(self, indicator: str, size: int) -> str:
        spreads = self.spread_ms.get(indicator, {}).get(size, {})
        return pick(self.timings_ms[indicator][size], spreads)

    def __repr__(self) -> str:
        head = (
            f"threadx autotune: {len(self.timings_ms)} indicators x sizes {self.sizes}, "
            f"{self.runs} runs each; profile: {self.profile_path or 'in memory'}"
        )
        lines = [head]
        for ind, by_size in self.timings_ms.items():
            picks = ", ".join(f"{s:,}: {self.best(ind, s)}" for s in by_size)
            lines.append(f"  {ind:<12} fastest  {picks}")
            for size, old, new in self.crossovers.get(ind, []):
                lines.append(f"  {'':<12} crossover at {size:,} rows: {old} -> {new}")
        return "\n".join(lines)


def _check_sizes(sizes: Iterable[int]) -> list[int]:
    given = sizes
    try:
        sizes = [] if isinstance(sizes, (str, bytes)) else list(sizes)
    except TypeError:
        sizes = []
    if not sizes or any(
        isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= MAX_SIZE for s in sizes
    ):
        raise ValueError(
            f"threadx.autotune: sizes must be integers in [1, {MAX_SIZE}], got {given!r}"
        )
    return sorted(set(sizes))


def autotune(
    sizes: Sequence[int] = DEFAULT_SIZES,
    runs: int = 3,
    indicators: Sequence[str] | None = None,
    devices: Sequence[str] | None = None,
    *,
    progress: bool = True,
) -> TuneSummary:
    """Time every candidate backend of every indicator at every size and write the profile.

    Each (indicator, size, backend) is measured once to warm up and ``runs`` more times; each
    measurement repeats the call until it has lasted ``MIN_MEASURE_SECONDS`` (20 ms) and counts
    the time per call, and every call is a sample in the profile. The fastest backend per size is
    chosen with the measurements' spread: more workers (or a GPU) must win by more than the noise
    (see :func:`pick`), so noise alone never reports a crossover. ``devices`` are the placements to measure: ``"cpu"`` (all worker counts
    the planner considers), ``"gpu"`` (every usable GPU) or ``"gpu:<i>"``; by default the CPU and
    every usable GPU. For each GPU the host<->device link is measured first and stored too (the
    planner predicts unmeasured sizes from it). Returns a :class:`TuneSummary`.
    """
    sizes = _check_sizes(sizes)
    if isinstance(runs, bool) or not isinstance(runs, int) or not 1 <= runs <= 1_000_000:
        raise ValueError(f"threadx.autotune: runs must be an integer in [1, 1000000], got {runs!r}")
    chosen = list(indicators) if indicators is not None else list(INDICATORS)
    unknown = [i for i in chosen if i not in INDICATORS]
    if unknown or not chosen:
        raise ValueError(
            f"threadx.autotune: indicators must be among {', '.join(INDICATORS)}, got {indicators!r}"
        )
    if devices is not None and (isinstance(devices, str) or not devices):
        raise ValueError(f"threadx.autotune: devices must be a non-empty list, got {devices!r}")
    with_cpu = devices is None or any(d in ("cpu", "auto") for d in devices)
    gpus = _gpu_targets(devices)

    # (backend label, worker count or None, device string) per indicator and size.
    def targets(ind: str, n: int) -> list[tuple[str, int | None, str]]:
        cpu = [(c.backend, c.workers, "auto") for c in explain(ind, n, device="cpu").candidates]
        return (cpu if with_cpu else []) + [(f"gpu:{i}", None, f"gpu:{i}") for i in gpus]

    plans = {(ind, n): targets(ind, n) for ind in chosen for n in sizes}
    total = sum(len(c) for c in plans.values()) * (runs + 1)
    try:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, disable=not progress, desc="threadx autotune", unit="call")
    except ImportError:  # pragma: no cover - tqdm is a dependency
        bar = None

    env_threads = os.environ.get("THREADX_NUM_THREADS")
    previous = _internal.get_threads()
    summary = TuneSummary(sizes=sizes, runs=runs)
    try:
        if gpus:
            from threadx import gpu

            simulated = {d["index"] for d in gpu.devices() if d["simulated"]}
            for i in gpus:
                if i not in simulated:  # a simulated GPU has no host<->device link
                    summary.links[f"gpu:{i}"] = gpu.measure_link(i)
        for n in sizes:
            df = _frame(n)
            for ind in chosen:
                per_backend: dict[str, float] = {}
                spreads: dict[str, float] = {}
                for backend, workers, device in plans[(ind, n)]:
                    expr = _expr(ind, device)
                    _internal.set_threads(workers)
                    times = []
                    for r in range(runs + 1):
                        seconds, _ = _measure(lambda: _run(df, expr))  # noqa: B023
                        if r:  # the first is the warm-up
                            times.append(seconds)
                        if bar is not None:
                            bar.set_postfix_str(f"{ind} {n:,} {backend}", refresh=False)
                            bar.update(1)
                    per_backend[backend] = statistics.median(times) * 1e3
                    spreads[backend] = _spread(times) * 1e3
                summary.timings_ms.setdefault(ind, {})[n] = per_backend
                summary.spread_ms.setdefault(ind, {})[n] = spreads
    finally:
        restore = None if (previous is not None and str(previous) == env_threads) else previous
        _internal.set_threads(restore)
        if bar is not None:
            bar.close()
        _profile.flush()

    for ind in summary.timings_ms:
        last = None
        for n in sizes:
            best = summary.best(ind, n)
            if last is not None and best != last:
                summary.crossovers.setdefault(ind, []).append((n, last, best))
            last = best
    summary.profile_path = _profile.path()
    return summary
