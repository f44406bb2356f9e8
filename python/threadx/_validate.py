"""Parameter validation before a plan is built (Rust validates again for other front ends).

Messages mirror the Rust ones: ``threadx.<indicator>: <param> must be <expected>, got <value>``.
"""

from __future__ import annotations

import math
import numbers
import re

MAX_PERIOD = 100_000
_DEVICE = re.compile(r"^(auto|cpu|gpu|gpus|all|gpu:\d+(,\d+)*)$", re.IGNORECASE)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def period(indicator: str, name: str, value: object, minimum: int) -> int:
    if not _is_int(value) or not (minimum <= int(value) <= MAX_PERIOD):  # type: ignore[arg-type]
        raise ValueError(
            f"threadx.{indicator}: {name} must be an integer in [{minimum}, {MAX_PERIOD}], "
            f"got {value!r}"
        )
    return int(value)  # type: ignore[arg-type]


def ddof(indicator: str, value: object, period_value: int) -> int:
    if not _is_int(value) or not (0 <= int(value) < period_value):  # type: ignore[arg-type]
        raise ValueError(
            f"threadx.{indicator}: ddof must be an integer in [0, {period_value - 1}] "
            f"(below period), got {value!r}"
        )
    return int(value)  # type: ignore[arg-type]


def non_negative(indicator: str, name: str, value: object) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or float(value) < 0:  # type: ignore[arg-type]
        raise ValueError(f"threadx.{indicator}: {name} must be a finite number >= 0, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def less_than(indicator: str, name: str, value: int, other_name: str, other: int) -> None:
    if value >= other:
        raise ValueError(
            f"threadx.{indicator}: {name} must be less than {other_name} ({other}), got {value}"
        )


def device(indicator: str, value: object) -> str:
    ids = value.strip().lower().removeprefix("gpu:").split(",") if isinstance(value, str) else []
    if len(ids) > 1 and len(set(ids)) < len(ids):
        raise ValueError(f"threadx.{indicator}: device lists a GPU twice, got {value!r}")
    if not isinstance(value, str) or not _DEVICE.match(value.strip()):
        raise ValueError(
            f"threadx.{indicator}: device must be 'auto', 'cpu', 'gpu', 'gpu:<i>[,<j>...]', "
            "'gpus' or 'all', "
            f"got {value!r}"
        )
    return value.strip().lower()


def placement(indicator: str, where: object, workload_tag: object) -> dict:
    """The ``device`` and ``workload_tag`` kwargs every indicator passes to the plugin."""
    out = {"device": device(indicator, where)}
    if workload_tag is not None:
        if not isinstance(workload_tag, str) or not workload_tag.strip():
            raise ValueError(
                f"threadx.{indicator}: workload_tag must be a non-empty string or None, "
                f"got {workload_tag!r}"
            )
        out["workload_tag"] = workload_tag.strip()
    return out
