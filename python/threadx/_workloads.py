"""The workloads autotune and the balance profiler time: every indicator of the registry at its
default parameters on deterministic OHLCV-shaped data."""

from __future__ import annotations

import polars as pl

from threadx import _registry

#: The frame column each registry input reads (``real`` and ``real0`` are the close,
#: ``real1`` the open, MAVP's ``periods`` a column of periods).
COLUMN = {"real": "close", "open": "open", "high": "high", "low": "low", "close": "close",
          "volume": "volume", "real0": "close", "real1": "open",
          "periods": "periods"}  # fmt: skip


def frame(rows: int) -> pl.DataFrame:
    """Deterministic OHLCV-shaped data (no RNG needed: timings do not depend on the values)."""
    i = pl.int_range(rows, eager=True).cast(pl.Float64)
    close = 100.0 + 5.0 * (i * 0.013).cos() + 2.0 * (i * 0.7).sin()
    spread = 0.5 + 0.25 * (i * 0.31).sin().abs()
    return pl.DataFrame(
        {
            "open": close - 0.1 * (i * 0.23).sin(),
            "high": close + spread,
            "low": close - spread,
            "close": close,
            "volume": 1_000.0 + 10.0 * (i * 0.17).sin().abs(),
            # MAVP's periods: every period of its default range [2, 30] in turn.
            "periods": 2.0 + 28.0 * (i * 0.05).sin().abs(),
        }
    )


def expr(indicator: str, device: str = "auto") -> pl.Expr:
    """``indicator`` at its default parameters on :func:`frame`'s columns."""
    ind = _registry.BY_NAME[indicator]
    params = ind.defaults()
    inputs = {n: COLUMN[n] for n in ind.inputs}
    return _registry.call(ind.name, inputs, params, device, None)
