"""``threadx.autotune``: measure every candidate backend over a range of sizes and store the
timings in the profile, so that later calls are planned from measurements instead of defaults."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import polars as pl

from threadx import _internal
from threadx import profile as _profile
from threadx.planning import INDICATORS, explain

DEFAULT_SIZES = (1_000, 10_000, 100_000, 1_000_000)


def _frame(rows: int) -> pl.DataFrame:
    """Deterministic OHLCV-shaped data (no RNG needed: timings do not depend on the values)."""
    i = pl.int_range(rows, eager=True).cast(pl.Float64)
    close = 100.0 + 5.0 * (i * 0.013).cos() + 2.0 * (i * 0.7).sin()
    spread = 0.5 + 0.25 * (i * 0.31).sin().abs()
    return pl.DataFrame(
        {
            "close": close,
            "high": close + spread,
            "low": close - spread,
            "volume": 1_000.0 + 10.0 * (i * 0.17).sin().abs(),
        }
    )


def _expr(indicator: str) -> pl.Expr:
    import threadx

    fn = getattr(threadx, indicator)
    if indicator in ("atr", "natr", "stoch"):
        return fn("high", "low", "close")
    if indicator == "obv":
        return fn("close", "volume")
    return fn("close")


@dataclass
class TuneSummary:
    """What ``autotune`` measured: per indicator and size, the median wall time of every backend
    and the fastest one; ``crossovers`` lists the sizes at which the fastest backend changes."""

    sizes: list[int]
    runs: int
    timings_ms: dict[str, dict[int, dict[str, float]]] = field(default_factory=dict)
    crossovers: dict[str, list[tuple[int, str, str]]] = field(default_factory=dict)
    profile_path: str | None = None

    def best(self, indicator: str, size: int) -> str:
        t = self.timings_ms[indicator][size]
        return min(t, key=t.__getitem__)

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
    out = sorted(set(sizes))
    if not out or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in out):
        raise ValueError(f"threadx.autotune: sizes must be positive integers, got {sizes!r}")
    return out


def autotune(
    sizes: Sequence[int] = DEFAULT_SIZES,
    runs: int = 3,
    indicators: Sequence[str] | None = None,
    devices: Sequence[str] | None = None,
    *,
    progress: bool = True,
) -> TuneSummary:
    """Time every candidate backend of every indicator at every size and write the profile.

    Each (indicator, size, backend) runs once to warm up and ``runs`` more times; every run is a
    sample in the profile. ``devices`` are the placements to measure: ``"cpu"`` (all worker counts
    the planner considers); GPU placements need the GPU backend. Returns a :class:`TuneSummary`.
    """
    sizes = _check_sizes(sizes)
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise ValueError(f"threadx.autotune: runs must be an integer >= 1, got {runs!r}")
    chosen = list(indicators) if indicators is not None else list(INDICATORS)
    unknown = [i for i in chosen if i not in INDICATORS]
    if unknown or not chosen:
        raise ValueError(
            f"threadx.autotune: indicators must be among {', '.join(INDICATORS)}, got {indicators!r}"
        )
    for d in devices or ["cpu"]:
        if d not in ("cpu", "auto"):
            raise ValueError(
                f"threadx.autotune: device {d!r} cannot be profiled: no GPU backend is available "
                "in this build (devices: 'cpu')"
            )

    plans = {(ind, n): explain(ind, n).candidates for ind in chosen for n in sizes}
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
        for n in sizes:
            df = _frame(n)
            for ind in chosen:
                expr = _expr(ind)
                per_backend: dict[str, float] = {}
                for cand in plans[(ind, n)]:
                    _internal.set_threads(cand.workers)
                    times = []
                    for r in range(runs + 1):
                        t0 = time.perf_counter()
                        df.select(expr)
                        if r:
                            times.append(time.perf_counter() - t0)
                        if bar is not None:
                            bar.set_postfix_str(f"{ind} {n:,} {cand.backend}", refresh=False)
                            bar.update(1)
                    per_backend[cand.backend] = statistics.median(times) * 1e3
                summary.timings_ms.setdefault(ind, {})[n] = per_backend
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
