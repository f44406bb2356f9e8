"""threadx: technical-analysis indicators as a Polars expression plugin.

``import threadx`` registers the ``pl.Expr.threadx`` namespace::

    df.with_columns(bb=pl.col("close").threadx.bollinger(period=20, std_dev=2.0))
    df.with_columns(threadx.atr("high", "low", "close", period=14).over("symbol"))

Values are TA-Lib 0.8.1's; warm-up rows are null; nulls are skipped; NaN propagates; the bits do
not depend on thread count or chunking.
"""

from __future__ import annotations

import atexit

from threadx._isa import check_cpu as _check_cpu

_check_cpu()  # before the compiled kernels load: they need AVX2 on x86-64

from threadx import _internal, gpu, profile
from threadx import indicators as _indicators
from threadx import namespace as _namespace  # noqa: F401  (registers pl.Expr.threadx)
from threadx._cpu import CpuInfo, cpu_info
from threadx._registry import catalog, lookback
from threadx.indicators import *
from threadx.parallel import ParallelMapError, configure_threads, parallel_map
from threadx.planning import Explanation, explain, optimal_workers
from threadx.tuning import TuneSummary, autotune

__version__: str = _internal.version()

# Samples are flushed in batches while running; write the rest when the interpreter exits.
atexit.register(_internal.profile_flush)


def set_threads(n: int | None = None) -> None:
    """Force ``n`` CPU workers for every later call (``None``: let the optimizer decide).

    The environment variable ``THREADX_NUM_THREADS`` does the same for a whole process;
    ``set_threads`` takes precedence. Results are bit-identical for every worker count.
    """
    if n is not None and not (isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 1024):
        raise ValueError(
            f"threadx.set_threads: n must be an integer in [1, 1024] or None, got {n!r}"
        )
    _internal.set_threads(n)


def get_threads() -> int | None:
    """The forced worker count, or ``None`` when the optimizer decides."""
    return _internal.get_threads()


__all__ = [
    "CpuInfo",
    "Explanation",
    "ParallelMapError",
    "TuneSummary",
    "__version__",
    "autotune",
    "catalog",
    "configure_threads",
    "cpu_info",
    "explain",
    "get_threads",
    "gpu",
    "lookback",
    "optimal_workers",
    "parallel_map",
    "profile",
    "set_threads",
]
__all__ += _indicators.__all__  # every indicator and TA-Lib alias
