"""Validation of the placement arguments every indicator takes (``device``, ``workload_tag``).

Indicator parameters are validated from their registry declarations (``threadx._registry``).
Messages read ``threadx.<indicator>: <param> must be <expected>, got <value>``.
"""

from __future__ import annotations

import re

_DEVICE = re.compile(r"^(auto|cpu|gpu|gpus|all|gpu:\d+(,\d+)*)$", re.IGNORECASE)


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
