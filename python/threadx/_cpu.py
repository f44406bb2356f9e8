"""The CPU as the planner sees it (``threadx.cpu_info``): shared by the planner's Python view and
the threading helpers, which apply the same worker rules to a pipeline's own work."""

from __future__ import annotations

import json
from dataclasses import dataclass

from threadx import _internal


@dataclass(frozen=True)
class CpuInfo:
    model: str
    physical_cores: int
    logical_cores: int
    hyperthreading: bool


def cpu_info() -> CpuInfo:
    """The CPU model, physical and logical cores, and whether hyperthreading is on."""
    return CpuInfo(**json.loads(_internal.cpu_info()))
