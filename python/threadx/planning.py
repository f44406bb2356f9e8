"""The planner's view from Python: ``explain`` and ``optimal_workers`` (``cpu_info`` is in ``_cpu``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from threadx import _internal, _registry
from threadx import _validate as check
from threadx._registry import find as _find

#: Every indicator's name, in catalog order.
INDICATORS = _registry.NAMES


def optimal_workers(
    n_rows: int | None = None,
    indicator: str | None = None,
    *,
    kind: str | None = None,
    n_items: int | None = None,
    max_workers: int | None = None,
) -> int:
    """The worker count the planner would use for ``n_rows`` rows of ``indicator`` (outside a
    Polars parallel context; inside one it is always 1). ``None`` rows: a large input.

    With ``kind="cpu"`` or ``kind="io"``: the worker count ``threadx.parallel_map`` uses for
    ``n_items`` items (``None``: a large input) with ``use_processes=True`` (``"cpu"``) or ``False``
    (``"io"``) and ``max_workers`` (1 means the items run inline). ``n_rows`` and ``indicator``
    belong to indicator calls and ``n_items`` / ``max_workers`` to ``kind``; mixing them is a
    ValueError."""
    where = "optimal_workers"
    if kind is None:
        for name, value in (("n_items", n_items), ("max_workers", max_workers)):
            if value is not None:
                raise ValueError(
                    f"threadx.{where}: {name} needs kind='cpu' or kind='io', got kind=None"
                )
    else:
        from threadx import parallel

        if not isinstance(kind, str) or kind not in parallel.KINDS:
            raise ValueError(f"threadx.{where}: kind must be 'cpu', 'io' or None, got {kind!r}")
        for name, value in (("n_rows", n_rows), ("indicator", indicator)):
            if value is not None:
                raise ValueError(
                    f"threadx.{where}: {name} must be None with kind={kind!r} (use n_items), "
                    f"got {value!r}"
                )
        if n_items is not None:
            n_items = check.integer(where, "n_items", n_items, 0, check.MAX_ROWS)
        if max_workers is not None:
            max_workers = check.integer(where, "max_workers", max_workers, 1, parallel.MAX_WORKERS)
        return parallel.plan_workers(kind, n_items, max_workers)
    if n_rows is not None:
        n_rows = check.integer(where, "n_rows", n_rows, 0, check.MAX_ROWS)
    if indicator is not None:
        indicator = _find(where, indicator).name
    return _internal.optimal_workers(n_rows, indicator)


@dataclass(frozen=True)
class Candidate:
    backend: str
    workers: int
    predicted_ms: float | None
    samples: int


@dataclass(frozen=True)
class Explanation:
    """The plan for one call: the pick, why, every candidate with its prediction, and the profile
    entries the predictions came from."""

    indicator: str
    rows: int
    size_bucket: str
    backend: str
    workers: int
    reason: str
    candidates: list[Candidate] = field(default_factory=list)
    profile_entries: list[str] = field(default_factory=list)
    #: The GPU ordinal when the pick is a GPU.
    gpu: int | None = None
    #: Why no GPU is a candidate (``None`` when GPUs were considered or discovery has not run).
    gpu_note: str | None = None
    explored: bool = False
    #: For a multi-device plan: each member (``device``: ``cpu`` / ``gpu:<i>``, ``key``: its name
    #: in the profile) and its ``share`` of the rows.
    split: list[dict[str, Any]] = field(default_factory=list)

    def __repr__(self) -> str:
        lines = [
            f"threadx plan for {self.indicator} on {self.rows:,} rows (size bucket {self.size_bucket})",
            f"  pick:   {self.backend}  ({self.workers} worker{'s' if self.workers != 1 else ''})",
            f"  reason: {self.reason}",
            "  candidates:",
            f"    {'backend':<10} {'predicted':>12} {'samples':>8}",
        ]
        for c in self.candidates:
            pred = "-" if c.predicted_ms is None else f"{c.predicted_ms:.3f} ms"
            mark = "  <- pick" if c.backend == self.backend else ""
            lines.append(f"    {c.backend:<10} {pred:>12} {c.samples:>8}{mark}")
        if self.split:
            parts = ", ".join(f"{m['device']} {m['share']:.1%}" for m in self.split)
            lines.append(f"  split:  {parts}")
        if self.gpu_note:
            lines.append(f"  gpu:    {self.gpu_note}")
        if self.profile_entries:
            lines.append("  profile entries used:")
            lines += [f"    {e}" for e in self.profile_entries]
        else:
            lines.append(
                "  profile entries used: none (no samples for this indicator and size yet)"
            )
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        rows = "\n".join(
            f"| {c.backend} | {'-' if c.predicted_ms is None else f'{c.predicted_ms:.3f} ms'} "
            f"| {c.samples} | {'**pick**' if c.backend == self.backend else ''} |"
            for c in self.candidates
        )
        split = (
            " (split: " + ", ".join(f"{m['device']} {m['share']:.1%}" for m in self.split) + ")"
            if self.split
            else ""
        )
        return (
            f"**{self.indicator}** on {self.rows:,} rows → **{self.backend}**{split}: "
            f"{self.reason}\n\n"
            f"| backend | predicted | samples | |\n|---|---|---|---|\n{rows}\n"
        )


def _gpu_note(device: str, n: int) -> str | None:
    """Why the candidates hold no GPU, when discovery already ran (explain never starts CUDA
    itself unless the call it describes would)."""
    d = device.strip().lower()
    if d == "cpu":
        return "not considered (device='cpu')"
    if d == "auto" and n < GPU_AUTO_MIN_ROWS:
        return f"not considered below {GPU_AUTO_MIN_ROWS:,} rows with device='auto'"
    from threadx import gpu

    st = gpu.status()
    if not st["available"]:
        return f"no usable GPU: {st['reason']}"
    names = ", ".join(f"gpu:{g['index']} {g['name']}" for g in st["devices"])
    return f"usable: {names}"


#: device="auto" considers a GPU (and starts CUDA to find one) from this many rows on.
GPU_AUTO_MIN_ROWS = 1 << 20


def explain(indicator: str, n: int, device: str = "auto", **params: Any) -> Explanation:
    """How threadx would run ``indicator`` on ``n`` rows right now, without running it.

    ``params`` are the indicator's parameters (validated like a real call), ``workload_tag``
    included (it selects the stored split ratios of a multi-device plan). The plan never
    explores here; a real call may, now and then, while the profile is incomplete.
    """
    ind = _find("explain", indicator)
    indicator = ind.name
    n = check.integer("explain", "n", n, 0, check.MAX_ROWS)
    device = check.device(indicator, device)
    tag = params.pop("workload_tag", None)
    if params:
        _registry.check_some_params("explain", ind, params)  # validated like a real call
    check.placement(indicator, device, tag)
    data = json.loads(_internal.explain(indicator, n, device, tag.strip() if tag else None))
    data["candidates"] = [Candidate(**c) for c in data["candidates"]]
    data["gpu_note"] = _gpu_note(device, n)
    data.pop("explored", None)
    return Explanation(**data)
