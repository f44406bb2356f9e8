"""Validation of the placement arguments every indicator takes (``device``, ``workload_tag``).

Indicator parameters are validated from their registry declarations (``threadx._registry``).
Messages read ``threadx.<indicator>: <param> must be <expected>, got <value>``.
"""

from __future__ import annotations

import numbers
import re

_DEVICE = re.compile(r"^(auto|cpu|gpu|gpus|all|gpu:\d+(,\d+)*)$", re.IGNORECASE)

#: The largest row count any entry point accepts (the native side counts rows in 64 bits).
MAX_ROWS = 2**63 - 1
#: The largest GPU ordinal (CUDA numbers devices with a C ``int``).
MAX_GPU_ORDINAL = 2**31 - 1


def integer(where: str, name: str, value: object, lo: int, hi: int) -> int:
    """``value`` as an int in ``[lo, hi]``, or a ValueError naming ``where`` and ``name``.

    Huge Python ints are compared exactly, so they never reach the native side (where they
    would raise OverflowError instead)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and lo <= value <= hi:
        return int(value)
    raise ValueError(f"threadx.{where}: {name} must be an integer in [{lo}, {hi}], got {value!r}")


def number(where: str, name: str, value: object) -> float:
    """``value`` as a float (NaN and infinities included), or a ValueError naming ``name``."""
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    try:
        if real:
            return float(value)  # type: ignore[arg-type]
    except OverflowError:
        pass
    raise ValueError(f"threadx.{where}: {name} must be a number, got {value!r}")


def text(where: str, name: str, value: object) -> str:
    """``value`` if it is a non-empty string, else a ValueError naming ``where`` and ``name``."""
    if isinstance(value, str) and value.strip():
        return value
    raise ValueError(f"threadx.{where}: {name} must be a non-empty string, got {value!r}")


def device(indicator: str, value: object) -> str:
    if not isinstance(value, str) or not _DEVICE.match(value.strip()):
        raise ValueError(
            f"threadx.{indicator}: device must be 'auto', 'cpu', 'gpu', 'gpu:<i>[,<j>...]', "
            "'gpus' or 'all', "
            f"got {value!r}"
        )
    t = value.strip().lower()
    if t.startswith("gpu:"):
        ids = [int(p) for p in t.removeprefix("gpu:").split(",")]
        if max(ids) > MAX_GPU_ORDINAL:
            raise ValueError(
                f"threadx.{indicator}: device GPU ordinals must be in [0, {MAX_GPU_ORDINAL}], "
                f"got {value!r}"
            )
        if len(set(ids)) < len(ids):
            raise ValueError(f"threadx.{indicator}: device lists a GPU twice, got {value!r}")
        t = "gpu:" + ",".join(str(i) for i in ids)
    return t


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
