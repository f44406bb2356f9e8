"""The ``pl.Expr.threadx`` namespace: ``pl.col("close").threadx.rsi(14)``.

Each method is the functional API with this expression as the (close) input; the other columns of
multi-input indicators are keyword arguments (``str`` column names or expressions).
"""

from __future__ import annotations

import polars as pl

from threadx import indicators as ind
from threadx._plugin import IntoExpr


@pl.api.register_expr_namespace("threadx")
class ThreadxNamespace:
    def __init__(self, expr: pl.Expr) -> None:
        self._expr = expr

    def sma(
        self, period: int = 30, *, device: str = "auto", workload_tag: str | None = None
    ) -> pl.Expr:
        """Simple moving average (TA-Lib SMA)."""
        return ind.sma(self._expr, period, device=device, workload_tag=workload_tag)

    def ema(
        self, period: int = 30, *, device: str = "auto", workload_tag: str | None = None
    ) -> pl.Expr:
        """Exponential moving average (TA-Lib EMA)."""
        return ind.ema(self._expr, period, device=device, workload_tag=workload_tag)

    def wma(
        self, period: int = 30, *, device: str = "auto", workload_tag: str | None = None
    ) -> pl.Expr:
        """Weighted moving average (TA-Lib WMA)."""
        return ind.wma(self._expr, period, device=device, workload_tag=workload_tag)

    def rolling_std(
        self,
        period: int = 5,
        ddof: int = 0,
        *,
        device: str = "auto",
        workload_tag: str | None = None,
    ) -> pl.Expr:
        """Rolling standard deviation (ddof=0: TA-Lib STDDEV)."""
        return ind.rolling_std(self._expr, period, ddof, device=device, workload_tag=workload_tag)

    def zscore(
        self, period: int = 20, *, device: str = "auto", workload_tag: str | None = None
    ) -> pl.Expr:
        """Rolling z-score against the population std."""
        return ind.zscore(self._expr, period, device=device, workload_tag=workload_tag)

    def bollinger(
        self,
        period: int = 20,
        std_dev: float = 2.0,
        *,
        device: str = "auto",
        workload_tag: str | None = None,
    ) -> pl.Expr:
        """Bollinger bands: Struct{middle, upper, lower}."""
        return ind.bollinger(self._expr, period, std_dev, device=device, workload_tag=workload_tag)

    def rsi(
        self, period: int = 14, *, device: str = "auto", workload_tag: str | None = None
    ) -> pl.Expr:
        """Relative strength index (TA-Lib RSI)."""
        return ind.rsi(self._expr, period, device=device, workload_tag=workload_tag)

    def roc(
        self, period: int = 10, *, device: str = "auto", workload_tag: str | None = None
    ) -> pl.Expr:
        """Rate of change in percent (TA-Lib ROC)."""
        return ind.roc(self._expr, period, device=device, workload_tag=workload_tag)

    def macd(
        self,
        fast: int = 12,
        slow: int = 26,
        signal: int = 9,
        *,
        device: str = "auto",
        workload_tag: str | None = None,
    ) -> pl.Expr:
        """MACD: Struct{macd, signal, hist}."""
        return ind.macd(self._expr, fast, slow, signal, device=device, workload_tag=workload_tag)

    def atr(
        self,
        high: IntoExpr,
        low: IntoExpr,
        period: int = 14,
        *,
        device: str = "auto",
        workload_tag: str | None = None,
    ) -> pl.Expr:
        """Average true range of this close with the given high/low columns."""
        return ind.atr(high, low, self._expr, period, device=device, workload_tag=workload_tag)

    def natr(
        self,
        high: IntoExpr,
        low: IntoExpr,
        period: int = 14,
        *,
        device: str = "auto",
        workload_tag: str | None = None,
    ) -> pl.Expr:
        """Normalized average true range (percent of close)."""
        return ind.natr(high, low, self._expr, period, device=device, workload_tag=workload_tag)

    def stoch(
        self,
        high: IntoExpr,
        low: IntoExpr,
        fastk_period: int = 5,
        slowk_period: int = 3,
        slowd_period: int = 3,
        *,
        device: str = "auto",
        workload_tag: str | None = None,
    ) -> pl.Expr:
        """Stochastic oscillator of this close: Struct{slowk, slowd}."""
        return ind.stoch(
            high,
            low,
            self._expr,
            fastk_period,
            slowk_period,
            slowd_period,
            device=device,
            workload_tag=workload_tag,
        )

    def obv(
        self, volume: IntoExpr, *, device: str = "auto", workload_tag: str | None = None
    ) -> pl.Expr:
        """On-balance volume of this close with the given volume column."""
        return ind.obv(self._expr, volume, device=device, workload_tag=workload_tag)
