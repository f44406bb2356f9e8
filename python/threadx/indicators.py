"""The functional API: ``threadx.<name>(column_or_expr, ...)``.

Every function returns a ``pl.Expr`` producing Float64 (or a Struct of Float64 for multi-output
indicators), as long as its input, with TA-Lib's warm-up rows as null. Nulls are skipped (the value
at a non-null row is the indicator of the series with its nulls dropped); NaN is a value and
propagates per IEEE. ``device`` is ``"auto"`` (default), ``"cpu"``, ``"gpu"``, ``"gpu:<i>"``, or a
device set: ``"gpu:<i>,<j>"``, ``"gpus"`` (every GPU) or ``"all"`` (every GPU and the CPU), whose
rows are split in the ratios stored for ``workload_tag`` (default: the indicator's name; see
``threadx.gpu.profile_auto_balance``).
"""

from __future__ import annotations

import polars as pl

from threadx import _validate as check
from threadx._plugin import IntoExpr, call, to_expr


def _single(
    name: str, expr: IntoExpr, kwargs: dict, device: str, workload_tag: str | None
) -> pl.Expr:
    kwargs.update(check.placement(name, device, workload_tag))
    return call(name, [to_expr(name, "expr", expr)], kwargs)


def sma(
    expr: IntoExpr, period: int = 30, *, device: str = "auto", workload_tag: str | None = None
) -> pl.Expr:
    """Simple moving average (TA-Lib SMA). Warm-up: ``period - 1`` rows."""
    return _single(
        "sma", expr, {"period": check.period("sma", "period", period, 2)}, device, workload_tag
    )


def ema(
    expr: IntoExpr, period: int = 30, *, device: str = "auto", workload_tag: str | None = None
) -> pl.Expr:
    """Exponential moving average, ``k = 2/(period+1)``, seeded with the SMA of the first
    ``period`` values (TA-Lib EMA). Warm-up: ``period - 1`` rows."""
    return _single(
        "ema", expr, {"period": check.period("ema", "period", period, 2)}, device, workload_tag
    )


def wma(
    expr: IntoExpr, period: int = 30, *, device: str = "auto", workload_tag: str | None = None
) -> pl.Expr:
    """Linearly weighted moving average, newest value weighted ``period`` (TA-Lib WMA)."""
    return _single(
        "wma", expr, {"period": check.period("wma", "period", period, 2)}, device, workload_tag
    )


def rolling_std(
    expr: IntoExpr,
    period: int = 5,
    ddof: int = 0,
    *,
    device: str = "auto",
    workload_tag: str | None = None,
) -> pl.Expr:
    """Rolling standard deviation; ``ddof=0`` is TA-Lib's STDDEV (population)."""
    p = check.period("rolling_std", "period", period, 2)
    d = check.ddof("rolling_std", ddof, p)
    return _single("rolling_std", expr, {"period": p, "ddof": d}, device, workload_tag)


def zscore(
    expr: IntoExpr, period: int = 20, *, device: str = "auto", workload_tag: str | None = None
) -> pl.Expr:
    """``(x - rolling mean) / rolling population std`` over ``period`` rows; a window of identical
    values gives NaN (0/0)."""
    return _single(
        "zscore",
        expr,
        {"period": check.period("zscore", "period", period, 2)},
        device,
        workload_tag,
    )


def bollinger(
    expr: IntoExpr,
    period: int = 20,
    std_dev: float = 2.0,
    *,
    device: str = "auto",
    workload_tag: str | None = None,
) -> pl.Expr:
    """Bollinger bands (TA-Lib BBANDS with SMA): Struct{middle, upper, lower},
    ``upper/lower = middle ± std_dev · population std``."""
    kwargs = {
        "period": check.period("bollinger", "period", period, 2),
        "std_dev": check.non_negative("bollinger", "std_dev", std_dev),
    }
    return _single("bollinger", expr, kwargs, device, workload_tag)


def rsi(
    expr: IntoExpr, period: int = 14, *, device: str = "auto", workload_tag: str | None = None
) -> pl.Expr:
    """Wilder's relative strength index (TA-Lib RSI). Warm-up: ``period`` rows."""
    return _single(
        "rsi", expr, {"period": check.period("rsi", "period", period, 2)}, device, workload_tag
    )


def roc(
    expr: IntoExpr, period: int = 10, *, device: str = "auto", workload_tag: str | None = None
) -> pl.Expr:
    """Rate of change ``(x / x[t-period] - 1) · 100`` (TA-Lib ROC; 0 when the base is 0)."""
    return _single(
        "roc", expr, {"period": check.period("roc", "period", period, 1)}, device, workload_tag
    )


def macd(
    expr: IntoExpr,
    fast: int = 12,
    slow: int = 26,
    signal: int = 9,
    *,
    device: str = "auto",
    workload_tag: str | None = None,
) -> pl.Expr:
    """MACD (TA-Lib): Struct{macd, signal, hist}. Warm-up: ``slow + signal - 2`` rows."""
    f = check.period("macd", "fast", fast, 2)
    s = check.period("macd", "slow", slow, 2)
    g = check.period("macd", "signal", signal, 1)
    check.less_than("macd", "fast", f, "slow", s)
    return _single("macd", expr, {"fast": f, "slow": s, "signal": g}, device, workload_tag)


def _hlc(name: str, high: IntoExpr, low: IntoExpr, close: IntoExpr) -> list[pl.Expr]:
    # The plugin takes the close first so Polars names the output after it (not after `high`).
    return [to_expr(name, "close", close), to_expr(name, "high", high), to_expr(name, "low", low)]


def atr(
    high: IntoExpr,
    low: IntoExpr,
    close: IntoExpr,
    period: int = 14,
    *,
    device: str = "auto",
    workload_tag: str | None = None,
) -> pl.Expr:
    """Average true range (TA-Lib ATR, Wilder smoothing). Warm-up: ``period`` rows."""
    kwargs = {
        "period": check.period("atr", "period", period, 1),
        **check.placement("atr", device, workload_tag),
    }
    return call("atr", _hlc("atr", high, low, close), kwargs)


def natr(
    high: IntoExpr,
    low: IntoExpr,
    close: IntoExpr,
    period: int = 14,
    *,
    device: str = "auto",
    workload_tag: str | None = None,
) -> pl.Expr:
    """Normalized ATR, ``ATR / close · 100`` (TA-Lib NATR)."""
    kwargs = {
        "period": check.period("natr", "period", period, 1),
        **check.placement("natr", device, workload_tag),
    }
    return call("natr", _hlc("natr", high, low, close), kwargs)


def stoch(
    high: IntoExpr,
    low: IntoExpr,
    close: IntoExpr,
    fastk_period: int = 5,
    slowk_period: int = 3,
    slowd_period: int = 3,
    *,
    device: str = "auto",
    workload_tag: str | None = None,
) -> pl.Expr:
    """Stochastic oscillator with SMA smoothing (TA-Lib STOCH): Struct{slowk, slowd}."""
    kwargs = {
        "fastk_period": check.period("stoch", "fastk_period", fastk_period, 1),
        "slowk_period": check.period("stoch", "slowk_period", slowk_period, 1),
        "slowd_period": check.period("stoch", "slowd_period", slowd_period, 1),
        **check.placement("stoch", device, workload_tag),
    }
    return call("stoch", _hlc("stoch", high, low, close), kwargs)


def obv(
    close: IntoExpr, volume: IntoExpr, *, device: str = "auto", workload_tag: str | None = None
) -> pl.Expr:
    """On-balance volume (TA-Lib OBV). No warm-up."""
    args = [to_expr("obv", "close", close), to_expr("obv", "volume", volume)]
    return call("obv", args, check.placement("obv", device, workload_tag))


__all__ = [
    "atr",
    "bollinger",
    "ema",
    "macd",
    "natr",
    "obv",
    "roc",
    "rolling_std",
    "rsi",
    "sma",
    "stoch",
    "wma",
    "zscore",
]
