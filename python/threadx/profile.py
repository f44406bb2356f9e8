"""The persisted performance profile (see docs/gpu_auto_profiling.md).

``threadx`` records how long each call took, per indicator, size bucket (powers of two) and
backend (``cpu:<workers>``), as an exponentially weighted moving average, and plans later calls
from it. The file is JSON at ``$THREADX_PROFILE`` or ``~/.cache/threadx/profile.json``, keyed by a
fingerprint of the machine and build; it is written atomically under a lock, in batches and at
exit. These functions inspect and manage it.
"""

from __future__ import annotations

import json
from typing import Any

from threadx import _internal
from threadx import _validate as check


def path() -> str | None:
    """Where the profile is stored, or ``None`` when profiling in memory only."""
    return _internal.profile_path()


def memory_only_reason() -> str | None:
    """Why the profile is kept in memory only (unwritable location, …), if it is."""
    return _internal.profile_memory_only()


def fingerprint() -> dict[str, Any]:
    """This machine's fingerprint (what must match for timings to be reused) and its ``id``."""
    fid, text = _internal.fingerprint()
    return {"id": fid, **json.loads(text)}


def flush() -> bool:
    """Write pending samples now (they are otherwise written every few seconds and at exit).

    Returns True when everything recorded is on disk (or persistence is off on request:
    ``THREADX_PROFILE=/dev/null``). Returns False when the write failed or the location is
    unusable: threadx has then printed a warning, keeps the samples (a bounded number) and retries
    on later flushes; ``memory_only_reason()`` says why."""
    return _internal.profile_flush() is None


def prune(days: int | None = None) -> list[str]:
    """Remove entries of other machines and builds not updated for ``days`` days (default:
    ``THREADX_PROFILE_EXPIRY_DAYS``, 90; 0 removes nothing). This machine's entry is never removed. Returns the
    removed entries' ids."""
    if days is not None and (
        isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= 10**6
    ):
        raise ValueError(f"days must be an integer in [0, 1000000], got {days!r}")
    return list(_internal.profile_prune(days))


def show() -> dict[str, Any]:
    """The whole profile as this process sees it (every machine's entry)."""
    return json.loads(_internal.profile_show())


def machine() -> dict[str, Any]:
    """This machine's entry: timings per indicator / size bucket / backend, links, balance."""
    entry = show()["machines"].get(fingerprint()["id"])
    return entry or {"timings": {}, "links": {}, "balance": {}}


def reset() -> None:
    """Forget this machine's measurements (entries of other machines in the file stay)."""
    error = _internal.profile_reset()
    if error:
        raise OSError(f"threadx.profile.reset: {error}")


def reload() -> None:
    """Re-read ``THREADX_PROFILE`` / the cache location and load that profile."""
    _internal.profile_reload()


def record(indicator: str, rows: int, backend: str, seconds: float) -> None:
    """Add one measurement by hand (``autotune`` and tests use this). A ``seconds`` that is not a
    positive finite number is ignored, as a measured call's would be."""
    check.text("profile.record", "indicator", indicator)
    rows = check.integer("profile.record", "rows", rows, 0, check.MAX_ROWS)
    check.text("profile.record", "backend", backend)
    _internal.profile_record(
        indicator, rows, backend, check.number("profile.record", "seconds", seconds)
    )
