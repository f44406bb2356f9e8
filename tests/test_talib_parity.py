"""threadx against TA-Lib 0.8.2 on long random walks: values and warm-up length.

Every indicator with a TA-Lib twin is run through a Polars ``DataFrame.select`` (struct outputs
unnested) on two (elementwise and statistic functions: three) 100_000-row OHLCV random walks and
compared with TA-Lib on the same NumPy arrays:

* ``walk``: a geometric random walk (0.1 % per-row volatility, prices between about 40 and 110,
  a narrow enough range that TA-Lib's own running sums stay accurate), continuous prices,
  log-normal float volumes;
* ``big`` (elementwise and statistic functions, AVGDEV, PERCENTILE, PERCENTRANK): prices near 1e6
  with per-row moves near 1e-6 (relative), where sums of four nearly equal large prices round
  differently in any other order of additions (LINEARREG_SLOPE and _ANGLE, whose TA-Lib sums
  lose the offset's digits, are compared with TA-Lib on the closes minus their median, an exact
  subtraction: ``_offset``);
* ``tick``: the same kind of walk with every price rounded to a 0.01 tick, so ties are common
  (equal consecutive closes, ``open == close``, ``high == low`` bars, flat windows) and the
  zero-change / zero-range branches of RSI, OBV, STOCH, ATR and STDDEV are exercised (4 % of
  consecutive closes are equal, 40 bars have ``high == low``); prices about 80 to 120; integer
  volumes.

For each output column, after the warm-up, ``|threadx - talib| / max(|talib|, floor) <= 1e-9``.
The floor is indicator-specific and only matters where the TA-Lib value is (close to) zero; each
one is derived from the scale of the series and justified next to its definition below.
Cases marked ``exact`` (the elementwise functions, which replicate TA-Lib's operations in its
order) must moreover equal TA-Lib bit for bit after the warm-up.
Warm-up: the number of leading nulls in threadx's column equals the number of leading NaNs in
TA-Lib's (and TA-Lib's documented lookback), and threadx has no other null and no NaN.

The data stay clear of the documented, intended differences: all prices are far above 1e-8 (RSI /
NATR epsilon), MACD always has ``fast < slow`` and Bollinger ``std_dev >= 0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import polars as pl
import pytest
import talib
import threadx
from helpers import assert_bits_equal
from talib import abstract as talib_abstract

N_ROWS = 100_000
SEED = 20240611
RTOL = 1e-9


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Market:
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    frame: pl.DataFrame

    @property
    def price_scale(self) -> float:
        """Typical price level (median close), the unit for the absolute floors below."""
        return float(np.median(self.close))


def _make_market(seed: int, tick: float | None, level: float = 100.0, scale: float = 1.0) -> Market:
    """`level`: the starting price; `scale` multiplies every per-row move (returns, gaps, wicks)."""
    rng = np.random.default_rng(seed)
    n = N_ROWS
    close = level * np.exp(np.cumsum(rng.normal(0.0, 0.001 * scale, n)))
    # Open: previous close with a small gap; the first open is a gap off the first close.
    gap = np.exp(rng.normal(0.0, 0.0003 * scale, n))
    open_ = np.concatenate(([close[0]], close[:-1])) * gap
    # Wicks: non-negative excursions beyond the body (about half of them exactly 0 on ticks).
    up = np.abs(rng.normal(0.0, 0.0008 * scale, n))
    down = np.abs(rng.normal(0.0, 0.0008 * scale, n))
    if tick is not None:
        close = np.round(close / tick) * tick
        open_ = np.round(open_ / tick) * tick
        body_hi = np.maximum(open_, close)
        body_lo = np.minimum(open_, close)
        high = body_hi + np.floor(up * body_hi / tick) * tick
        low = body_lo - np.floor(down * body_lo / tick) * tick
        volume = rng.integers(1, 1_000_000, n).astype(np.float64)
    else:
        body_hi = np.maximum(open_, close)
        body_lo = np.minimum(open_, close)
        high = body_hi * (1.0 + up)
        low = body_lo * (1.0 - down)
        volume = rng.lognormal(10.0, 1.0, n)
    # The contract the brief asks for (and that TA-Lib assumes).
    assert np.all(high >= np.maximum(open_, close))
    assert np.all(low <= np.minimum(open_, close))
    assert np.all(low > 0.0) and np.all(volume > 0.0)
    frame = pl.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}
    )
    return Market(open_, high, low, close, volume, frame)


_MARKETS: dict[str, Market] = {}


def _market(name: str) -> Market:
    if name not in _MARKETS:
        if name == "walk":
            _MARKETS[name] = _make_market(SEED, None)
        elif name == "tick":
            _MARKETS[name] = _make_market(SEED + 1, 0.01)
        elif name == "big":
            # Prices near 1e6 with tiny moves (1e-6 per row): sums of near-equal large values.
            _MARKETS[name] = _make_market(SEED + 2, None, level=1e6, scale=1e-3)
        else:  # pragma: no cover - test-definition error
            raise KeyError(name)
    return _MARKETS[name]


#: Every case runs on the three data sets: a random walk, quantised tick prices (flat runs and ties,
#: where extrema and index functions differ) and prices near 1e6 with tiny moves (sums of
#: near-equal large values, where TA-Lib's raw-price arithmetic loses digits).
DATASETS = ["walk", "tick", "big"]


# --------------------------------------------------------------------------------------------
# Floors
# --------------------------------------------------------------------------------------------
#
# Each function maps a Market (and the TA-Lib output) to the absolute floor of the denominator.


def _price_floor(m: Market, ta: np.ndarray) -> float:
    # SMA / EMA / WMA / Bollinger bands: price-level values, always far from 0 on this data (the
    # bands are within a few percent of the price). The floor never binds; it is a millionth of the
    # price level only so that the formula is defined everywhere.
    return 1e-6 * m.price_scale


def _dispersion_floor(m: Market, ta: np.ndarray) -> float:
    # STDDEV: a window's sigma can be tiny (period 2 with two nearly equal closes) or exactly 0
    # (flat tick windows). TA-Lib's STDDEV carries an absolute rounding error of order
    # 1e-14 * price that does not shrink with sigma (it works on the raw, un-shifted prices), so
    # relative to a tiny sigma it is no longer "TA-Lib's value". One basis point of the price level
    # (1e-4 * price, ~0.01 here, a tenth of a typical per-row move) puts that noise ~1e-10 below
    # the tolerance while keeping the check relative for every ordinary window.
    return 1e-4 * m.price_scale


def _range_floor(m: Market, ta: np.ndarray) -> float:
    # ATR: true ranges are >= 0 and can be exactly 0 on flat tick bars (period 1 ATR is the TR
    # itself). TA-Lib's Wilder recursion is accurate to a few ulps of the ATR, so only an exactly-0
    # ATR needs the floor: a millionth of the price level.
    return 1e-6 * m.price_scale


def _natr_floor(m: Market, ta: np.ndarray) -> float:
    # NATR = ATR / close * 100 (percent): the ATR floor expressed in percent of the price.
    return 1e-6 * 100.0


def _oscillator_floor(m: Market, ta: np.ndarray) -> float:
    # RSI / STOCH live in [0, 100] and are exactly 0 on all-down (RSI) or close-at-low (STOCH)
    # windows, which are frequent on tick data. TA-Lib smooths STOCH's %K / %D with a running-sum
    # SMA whose total is never recomputed, so its rounding drift (absolute, ~5e-13 after 100_000
    # rows, e.g. -2.4e-13 where the exact value is 0) sits on every value. Floor: 1e-4 of the full
    # scale (0.01 RSI / STOCH points), which keeps that drift ~50x below the tolerance.
    return 1e-4 * 100.0


def _roc_floor(m: Market, ta: np.ndarray) -> float:
    # ROC = (x / x[t-n] - 1) * 100 is a small percentage that crosses 0; forming it cancels the
    # leading digits of x / x[t-n], so both libraries' results carry an absolute error of order
    # 100 * 2**-52 ~ 2e-14 percent. The floor is 1e-6 of the series' typical |ROC| (median), so
    # the check stays relative for all but the near-zero values.
    finite = ta[np.isfinite(ta)]
    return max(1e-6 * float(np.median(np.abs(finite))), 1e-9)


def _macd_floor(m: Market, ta: np.ndarray) -> float:
    # MACD line / signal / histogram are differences of price-level EMAs and cross 0. TA-Lib's
    # EMA and threadx's are different (equally valid) rounding sequences of a recursive filter;
    # they agree to ~1e-14 of the price (EMA(1000) above: 2.5e-14), so the difference carries an
    # absolute error of order 1e-12 * price. Floor: one basis point of the price level (1e-4 *
    # price; typical |MACD| here is ~1e-3 of the price), leaving that noise ~1e-8 below it.
    return 1e-4 * m.price_scale


def _obv_floor(m: Market, ta: np.ndarray) -> float:
    # OBV is a running signed sum of volumes that crosses 0. Summation rounding is absolute: with
    # float volumes TA-Lib's left-to-right double sum drifts by up to ~1e-14 of max|OBV| over
    # 100_000 rows (threadx's is closer to an extended-precision sum); integer volumes are exact.
    # Relative to a value near a zero crossing that drift is meaningless, so the floor is 1e-4 of
    # the largest |OBV| of the series (keeps the drift ~1e-10, 10x below the tolerance).
    return 1e-4 * float(np.max(np.abs(ta)))


# --------------------------------------------------------------------------------------------
# Cases: one per indicator and parameter set
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    # threadx: name -> expression (aliased to that name inside the test; structs are unnested)
    threadx: Callable[[], pl.Expr]
    # TA-Lib: Market -> {output name: array}; names are the threadx struct field names
    talib: Callable[[Market], dict[str, np.ndarray]]
    # documented lookback (number of warm-up rows)
    lookback: int
    # output name -> floor function
    floors: dict[str, Callable[[Market, np.ndarray], float]]
    is_struct: bool = False
    # bit-identical to TA-Lib after the warm-up (TA-Lib's arithmetic replicated operation by
    # operation), on top of the relative-error check
    exact: bool = False
    datasets: tuple[str, ...] = tuple(DATASETS)


def _sma(p: int) -> Case:
    return Case(
        lambda: threadx.sma("close", p),
        lambda m: {"value": talib.SMA(m.close, p)},
        p - 1,
        {"value": _price_floor},
    )


def _ema(p: int) -> Case:
    return Case(
        lambda: threadx.ema("close", p),
        lambda m: {"value": talib.EMA(m.close, p)},
        p - 1,
        {"value": _price_floor},
    )


def _wma(p: int) -> Case:
    return Case(
        lambda: threadx.wma("close", p),
        lambda m: {"value": talib.WMA(m.close, p)},
        p - 1,
        {"value": _price_floor},
    )


def _stddev(p: int) -> Case:
    return Case(
        lambda: threadx.rolling_std("close", p, ddof=0),
        lambda m: {"value": talib.STDDEV(m.close, p, 1.0)},
        p - 1,
        {"value": _dispersion_floor},
    )


def _bbands(p: int, k: float) -> Case:
    def ta(m: Market) -> dict[str, np.ndarray]:
        upper, middle, lower = talib.BBANDS(m.close, p, k, k, 0)
        return {"middle": middle, "upper": upper, "lower": lower}

    return Case(
        lambda: pl.col("close").threadx.bollinger(period=p, std_dev=k),
        ta,
        p - 1,
        {"middle": _price_floor, "upper": _price_floor, "lower": _price_floor},
        is_struct=True,
    )


def _rsi(p: int) -> Case:
    return Case(
        lambda: threadx.rsi("close", p),
        lambda m: {"value": talib.RSI(m.close, p)},
        p,
        {"value": _oscillator_floor},
    )


def _roc(p: int) -> Case:
    return Case(
        lambda: threadx.roc("close", p),
        lambda m: {"value": talib.ROC(m.close, p)},
        p,
        {"value": _roc_floor},
    )


def _macd(fast: int, slow: int, signal: int) -> Case:
    def ta(m: Market) -> dict[str, np.ndarray]:
        line, sig, hist = talib.MACD(m.close, fast, slow, signal)
        return {"macd": line, "signal": sig, "hist": hist}

    return Case(
        lambda: threadx.macd("close", fast=fast, slow=slow, signal=signal),
        ta,
        slow + signal - 2,
        {"macd": _macd_floor, "signal": _macd_floor, "hist": _macd_floor},
        is_struct=True,
    )


def _atr(p: int) -> Case:
    return Case(
        lambda: pl.col("close").threadx.atr(high="high", low="low", period=p),
        lambda m: {"value": talib.ATR(m.high, m.low, m.close, p)},
        p,
        {"value": _range_floor},
    )


def _natr_reference(m: Market, p: int) -> np.ndarray:
    """TA-Lib's NATR, except period 1: there TA-Lib 0.8 returns the plain TRANGE (not divided by
    the close, not in percent). threadx keeps the documented definition ATR/close*100 for every
    period (an intended difference, see README), so period 1 is checked against TRANGE/close*100."""
    if p == 1:
        return talib.TRANGE(m.high, m.low, m.close) / m.close * 100.0
    return talib.NATR(m.high, m.low, m.close, p)


def _natr(p: int) -> Case:
    return Case(
        lambda: threadx.natr("high", "low", "close", p),
        lambda m: {"value": _natr_reference(m, p)},
        p,
        {"value": _natr_floor},
    )


def _stoch(fk: int, sk: int, sd: int) -> Case:
    def ta(m: Market) -> dict[str, np.ndarray]:
        k, d = talib.STOCH(
            m.high,
            m.low,
            m.close,
            fastk_period=fk,
            slowk_period=sk,
            slowk_matype=0,
            slowd_period=sd,
            slowd_matype=0,
        )
        return {"slowk": k, "slowd": d}

    return Case(
        lambda: threadx.stoch("high", "low", "close", fk, sk, sd),
        ta,
        fk + sk + sd - 3,
        {"slowk": _oscillator_floor, "slowd": _oscillator_floor},
        is_struct=True,
    )


def _obv(volume_col: str) -> Case:
    # OBV has no parameter; its three "parameter sets" are three volume inputs (float volumes,
    # volumes scaled to ~1e12 so sums exceed 2**53 and round, and volumes scaled to ~1e-6).
    scale = {"volume": 1.0, "volume_big": 1e7, "volume_small": 1e-10}[volume_col]
    return Case(
        lambda: threadx.obv("close", pl.col("volume") * scale),
        lambda m: {"value": talib.OBV(m.close, m.volume * scale)},
        0,
        {"value": _obv_floor},
    )


def _exact_floor(m: Market, ta: np.ndarray) -> float:
    # Bit-exact cases: any difference fails the bit check anyway, so the floor only keeps the
    # relative error defined where TA-Lib's value is 0 (SUB of equal ticks, a 0 true range).
    return 1e-300


#: The market arrays by registry input column.
def _arrays(m: Market, cols: tuple[str, ...]) -> list[np.ndarray]:
    return [getattr(m, c) for c in cols]


def _elementwise(name: str, cols: tuple[str, ...], lookback: int = 0) -> Case:
    """``threadx.<name>(*cols)`` against ``talib.<NAME>`` on the same columns, bit for bit."""
    fn = getattr(talib, name.upper())
    return Case(
        lambda: getattr(threadx, name)(*cols),
        lambda m: {"value": fn(*_arrays(m, cols))},
        lookback,
        {"value": _exact_floor},
        exact=True,
    )


# --- Statistic functions (BETA, CORREL, LINEARREG family, TSF, VAR), AVGDEV, PERCENTILE,
# PERCENTRANK. These run on all three datasets.
STAT_DATASETS = ("walk", "tick", "big")


def _offset(m: Market) -> float:
    """The price level ``c`` (median close) that the LINEARREG_SLOPE / _ANGLE references subtract.
    Every close lies in ``[c/2, 2c]``, so ``x - c`` is exact (Sterbenz) and the slope is the same
    number. TA-Lib's slope carries an absolute error of a few hundred ulps of the values it is
    given (measured against long-double sums: 1.6e-11 on walk at period 2 and 1.6e-7 on big,
    where the exact slope is the plain difference x_t - x_{t-1}); given the shifted closes its
    error drops to <= 3.2e-12 on walk and tick and ~0 on big."""
    c = m.price_scale
    assert np.all((m.close >= c / 2) & (m.close <= 2 * c))
    return c


def _correl_floor(m: Market, ta: np.ndarray) -> float:
    # CORREL lies in [-1, 1] and crosses 0. TA-Lib's running sums give it an absolute error up
    # to ~2e-11 at periods >= 10 on these datasets (measured against long-double two-pass sums);
    # a floor of 0.1 keeps that ~5x below the tolerance. (At period 2 TA-Lib's error reaches
    # 2e-8 where the exact value is +-1, above any sensible tolerance, so period 2 is not a
    # case; the Rust tests check threadx's period-2 values against a two-pass reference.)
    return 0.1


def _beta_floor(m: Market, ta: np.ndarray) -> float:
    # BETA is unbounded but of order 0.1-1 here; TA-Lib's absolute error is <= ~4e-12
    # (measured against long-double two-pass sums of the returns), so a floor of 0.01 keeps it
    # ~3x below the tolerance for betas near 0 while every ordinary beta is checked relatively.
    return 1e-2


def _slope_floor(m: Market, ta: np.ndarray) -> float:
    # LINEARREG_SLOPE (price per row) crosses 0. Even on the shifted closes (_offset) TA-Lib's
    # slope carries an absolute error up to 3.2e-12 (walk, period 5; measured against
    # long-double sums), which is relative noise for slopes near 0. Floor: a fifth of the
    # median per-row move |dx| (9e-3 on walk, 1.4e-2 on tick, 0.13 on big; the median |slope|
    # is 0.045 at period 2 and 0.013 at period 14 on walk), which keeps that noise below 4e-10.
    return 0.2 * float(np.median(np.abs(np.diff(m.close))))


def _angle_floor(m: Market, ta: np.ndarray) -> float:
    # LINEARREG_ANGLE = atan(slope) in degrees: near 0 it is slope * 180/pi, so the slope's
    # floor in degrees.
    return _slope_floor(m, ta) * 180.0 / np.pi


def _beta(p: int) -> Case:
    # BETA of the open's returns on the close's (real0 = close, real1 = open).
    return Case(
        lambda: threadx.beta("close", "open", p),
        lambda m: {"value": talib.BETA(m.close, m.open, p)},
        p,
        {"value": _beta_floor},
        datasets=STAT_DATASETS,
    )


def _correl(p: int) -> Case:
    return Case(
        lambda: threadx.correl("close", "open", p),
        lambda m: {"value": talib.CORREL(m.close, m.open, p)},
        p - 1,
        {"value": _correl_floor},
        datasets=STAT_DATASETS,
    )


# name -> (TA-Lib function, shift-invariant output, floor). The fitted values (price level) are
# compared with TA-Lib on the closes themselves; the slope and angle with TA-Lib on the exactly
# shifted closes (_offset).
_LINREG = {
    "linearreg": (talib.LINEARREG, False, _price_floor),
    "linearreg_angle": (talib.LINEARREG_ANGLE, True, _angle_floor),
    "linearreg_intercept": (talib.LINEARREG_INTERCEPT, False, _price_floor),
    "linearreg_slope": (talib.LINEARREG_SLOPE, True, _slope_floor),
    "tsf": (talib.TSF, False, _price_floor),
}


def _linreg(name: str, p: int) -> Case:
    fn, shift, floor = _LINREG[name]

    def ta(m: Market) -> dict[str, np.ndarray]:
        return {"value": fn(m.close - _offset(m) if shift else m.close, p)}

    return Case(
        lambda: getattr(threadx, name)("close", p),
        ta,
        p - 1,
        {"value": floor},
        datasets=STAT_DATASETS,
    )


def _var(p: int) -> Case:
    # TA-Lib's VAR takes nbdev and ignores it.
    return Case(
        lambda: threadx.rolling_var("close", p),
        lambda m: {"value": talib.VAR(m.close, p, 1.0)},
        p - 1,
        {"value": _variance_floor},
        datasets=STAT_DATASETS,
    )


def _variance_floor(m: Market, ta: np.ndarray) -> float:
    # VAR: STDDEV's floor squared (a variance's relative error is about twice its square root's),
    # so TA-Lib's rounding stays as far below the tolerance as for STDDEV (flat tick windows have
    # a variance of exactly 0).
    return (1e-4 * m.price_scale) ** 2


def _avgdev(p: int) -> Case:
    return Case(
        lambda: threadx.avgdev("close", p),
        lambda m: {"value": talib.AVGDEV(m.close, p)},
        p - 1,
        {"value": _dispersion_floor},
        datasets=STAT_DATASETS,
    )


def _percentile(p: int, q: float) -> Case:
    # Order statistics: values of the window, so bit for bit.
    return Case(
        lambda: threadx.percentile("close", p, q),
        lambda m: {"value": talib.PERCENTILE(m.close, p, q)},
        p - 1,
        {"value": _exact_floor},
        exact=True,
        datasets=STAT_DATASETS,
    )


def _percentrank(p: int) -> Case:
    # count / p * 100 with an integer count: bit for bit.
    return Case(
        lambda: threadx.percentrank("close", p),
        lambda m: {"value": talib.PERCENTRANK(m.close, p)},
        p,
        {"value": _exact_floor},
        exact=True,
        datasets=STAT_DATASETS,
    )


ALL_DATASETS = ("walk", "tick", "big")


def _sum_floor(m: Market, ta: np.ndarray) -> float:
    # SUM / CUMSUM of positive prices: values are at least one price, never near 0, so the floor
    # never binds (a millionth of the price level keeps the formula defined). TA-Lib's running
    # sum carries an absolute drift of order sqrt(rows) * eps * |sum|, ~1e-13 relative here.
    return 1e-6 * m.price_scale


def _window(name: str, p: int | None, floor=_price_floor, exact: bool = False) -> Case:
    """``threadx.<name>("close", p)`` against ``talib.<NAME>(close, p)`` (``p`` None: no
    parameter); a tuple result is mapped onto the registry's output names in TA-Lib's order.
    Integer outputs (MAXINDEX's rows) are compared exactly whatever ``exact`` says."""
    fn = getattr(talib, name.upper())
    args = () if p is None else (p,)
    outs = threadx.catalog().filter(pl.col("name") == name)["outputs"][0].to_list()
    ta_names = threadx.catalog().filter(pl.col("name") == name)["talib_outputs"][0].to_list()
    info = talib_abstract.Function(name.upper()).info["output_names"]
    order = [outs[ta_names.index(t)] for t in info]

    def ta(m: Market) -> dict[str, np.ndarray]:
        res = fn(m.close, *args)
        if isinstance(res, tuple):
            return dict(zip(order, res))
        return {"value": res}

    return Case(
        lambda: getattr(threadx, name)("close", *args),
        ta,
        0 if p is None else p - 1,
        {o: floor for o in (order if len(order) > 1 else ["value"])},
        is_struct=len(order) > 1,
        exact=exact,
        datasets=ALL_DATASETS,
    )


def _hl(name: str, p: int) -> Case:
    """MIDPRICE / DONCHIAN on (high, low): TA-Lib's arithmetic, so bit for bit."""
    fn = getattr(talib, name.upper())

    def ta(m: Market) -> dict[str, np.ndarray]:
        res = fn(m.high, m.low, p)
        if isinstance(res, tuple):
            return dict(zip(("upper", "middle", "lower"), res))
        return {"value": res}

    struct = name == "donchian"
    return Case(
        lambda: getattr(threadx, name)("high", "low", p),
        ta,
        p - 1,
        {k: _price_floor for k in (("upper", "middle", "lower") if struct else ("value",))},
        is_struct=struct,
        exact=True,
        datasets=ALL_DATASETS,
    )


def _cumsum(col: str) -> Case:
    # CUMSUM has no parameter: its two "parameter sets" are two inputs (prices and volumes).
    return Case(
        lambda: threadx.cumsum(col),
        lambda m: {"value": talib.CUMSUM(getattr(m, col))},
        0,
        {"value": _sum_floor},
        datasets=ALL_DATASETS,
    )


def _magnitude_floor(m: Market, ta: np.ndarray) -> float:
    # ADR (a mean of high - low) and MASSI (a sum of EMA ratios near 1): positive values of their
    # own scale (ADR is ~1e-3 of the price, so the price floor would loosen it a thousandfold).
    # A millionth of the series' median keeps the check relative on every row; it never binds.
    finite = ta[np.isfinite(ta)]
    return 1e-6 * float(np.median(np.abs(finite)))


def _cvi_floor(m: Market, ta: np.ndarray) -> float:
    # CVI = 100 * (E_t - E_{t-r}) / E_{t-r} (percent) crosses 0. Forming E_t - E_{t-r} cancels the
    # leading digits of two EMAs of the range that each library rounds differently (TA-Lib with
    # FMA, threadx by the block scan), ~1e-15 of E apart, so both carry an absolute error of
    # ~100 * 1e-15 ~ 1e-13 percent points. Floor: a hundredth of a percent point (typical |CVI|
    # here is tens of percent), which keeps that noise ~1e-11, 100x below the tolerance.
    return 1e-2


def _cvi(p: int, r: int) -> Case:
    return Case(
        lambda: threadx.cvi("high", "low", p, r),
        lambda m: {"value": talib.CVI(m.high, m.low, p, r)},
        p - 1 + r,
        {"value": _cvi_floor},
    )


def _accbands(p: int) -> Case:
    def ta(m: Market) -> dict[str, np.ndarray]:
        upper, middle, lower = talib.ACCBANDS(m.high, m.low, m.close, p)
        return {"upper": upper, "middle": middle, "lower": lower}

    return Case(
        lambda: threadx.accbands("high", "low", "close", p),
        ta,
        p - 1,
        {"upper": _price_floor, "middle": _price_floor, "lower": _price_floor},
        is_struct=True,
    )


def _kc(p: int, atr_p: int, k: float) -> Case:
    def ta(m: Market) -> dict[str, np.ndarray]:
        upper, middle, lower = talib.KC(m.high, m.low, m.close, p, atr_p, k)
        return {"upper": upper, "middle": middle, "lower": lower}

    return Case(
        lambda: pl.col("close").threadx.kc(
            high="high", low="low", period=p, atr_period=atr_p, multiplier=k
        ),
        ta,
        max(p - 1, atr_p),
        {"upper": _price_floor, "middle": _price_floor, "lower": _price_floor},
        is_struct=True,
    )


def _ha(cols: tuple[str, str, str, str]) -> Case:
    # HA has no parameter; its second "parameter set" is the columns in other roles.
    def ta(m: Market) -> dict[str, np.ndarray]:
        o, h, lo, c = talib.HA(*_arrays(m, cols))
        return {"haopen": o, "hahigh": h, "halow": lo, "haclose": c}

    return Case(
        lambda: threadx.ha(*cols),
        ta,
        0,
        {k: _price_floor for k in ("haopen", "hahigh", "halow", "haclose")},
        is_struct=True,
    )


def _adr(p: int) -> Case:
    return Case(
        lambda: threadx.adr("high", "low", p),
        lambda m: {"value": talib.ADR(m.high, m.low, p)},
        p - 1,
        {"value": _magnitude_floor},
    )


def _massi(fast: int, slow: int) -> Case:
    return Case(
        lambda: threadx.massi("high", "low", fast, slow),
        lambda m: {"value": talib.MASSI(m.high, m.low, fast, slow)},
        2 * (fast - 1) + slow - 1,
        {"value": _magnitude_floor},
    )


def _rvi(p: int, sd: int) -> Case:
    return Case(
        lambda: threadx.rvi("close", p, sd),
        lambda m: {"value": talib.RVI(m.close, p, sd)},
        sd - 1 + p - 1,
        {"value": _oscillator_floor},
    )


#: Inputs of the math transforms: label -> (threadx expression, the same on the NumPy arrays).
#: Each function gets two whose values are in its domain (TA-Lib's output has no NaN) and finite
#: under it (exp / cosh / sinh of a price near 1e6 overflow).
_TRANSFORM_INPUTS: dict[str, tuple[Callable[[], pl.Expr], Callable[[Market], np.ndarray]]] = {
    "close": (lambda: pl.col("close"), lambda m: m.close),
    "volume": (lambda: pl.col("volume"), lambda m: m.volume),
    "ch": (lambda: pl.col("close") / pl.col("high"), lambda m: m.close / m.high),
    "lh": (lambda: pl.col("low") / pl.col("high"), lambda m: m.low / m.high),
    "co": (lambda: pl.col("close") - pl.col("open"), lambda m: m.close - m.open),
}


def _transform(name: str, label: str) -> Case:
    """``threadx.<name>(x)`` against ``talib.<NAME>(x)``, bit for bit: both call the C library's
    function of that name (Rust's f64 methods call the platform libm, like TA-Lib's C)."""
    fn = getattr(talib, name.upper())
    expr, arr = _TRANSFORM_INPUTS[label]
    return Case(
        lambda: getattr(threadx, name)(expr()),
        lambda m: {"value": fn(arr(m))},
        0,
        {"value": _exact_floor},
        exact=True,
    )


_TRANSFORMS = {
    "acos": ("ch", "lh"),
    "asin": ("ch", "lh"),
    "atan": ("close", "co"),
    "ceil": ("close", "co"),
    "cos": ("close", "co"),
    "cosh": ("ch", "co"),
    "exp": ("ch", "co"),
    "floor": ("close", "co"),
    "ln": ("close", "volume"),
    "log10": ("close", "volume"),
    "sin": ("close", "co"),
    "sinh": ("ch", "co"),
    "sqrt": ("close", "volume"),
    "tan": ("close", "co"),
    "tanh": ("ch", "co"),
}


# --------------------------------------------------------------------------------------------
# Moving averages (wave A): DEMA, TEMA, TRIMA, T3, KAMA, RMA, ZLEMA, HMA, VWMA, MA, MAVP, and
# BBANDS with a matype. All on the three datasets; their values are price levels, far from 0, so
# the price floor never binds.
# --------------------------------------------------------------------------------------------

MA_DATASETS = ("walk", "tick", "big")


def _ma_like(name: str, p: int, lookback: int, *extra) -> Case:
    """``threadx.<name>("close", p, *extra)`` against ``talib.<NAME>(close, p, *extra)``."""
    fn = getattr(talib, name.upper())
    return Case(
        lambda: getattr(threadx, name)("close", p, *extra),
        lambda m: {"value": fn(m.close, p, *extra)},
        lookback,
        {"value": _price_floor},
        datasets=MA_DATASETS,
    )


def _isqrt(n: int) -> int:
    r = int(n**0.5)
    while r * r > n:
        r -= 1
    while (r + 1) * (r + 1) <= n:
        r += 1
    return r


#: TA-Lib's lookback of each matype code (MA_Type) at period p (0 at period 1, and for 10).
_MA_LOOKBACK = {
    0: lambda p: p - 1, 1: lambda p: p - 1, 2: lambda p: p - 1, 3: lambda p: 2 * (p - 1),
    4: lambda p: 3 * (p - 1), 5: lambda p: p - 1, 6: lambda p: p, 8: lambda p: 6 * (p - 1),
    9: lambda p: p - 1 + _isqrt(p) - 1, 10: lambda p: 0, 11: lambda p: p - 1,
    12: lambda p: (p - 1) // 2 + p - 1, 13: lambda p: p - 1,
}  # fmt: skip


def _ma_lookback(matype: int, p: int) -> int:
    return 0 if p == 1 else _MA_LOOKBACK[matype](p)


def _vwma(p: int) -> Case:
    return Case(
        lambda: pl.col("close").threadx.vwma(volume="volume", period=p),
        lambda m: {"value": talib.VWMA(m.close, m.volume, p)},
        max(p - 1, 0),
        {"value": _price_floor},
        datasets=MA_DATASETS,
    )


def _ma(p: int, matype: int | str) -> Case:
    code = matype if isinstance(matype, int) else talib_code(matype)
    return Case(
        lambda: threadx.ma("close", p, matype),
        lambda m: {"value": talib.MA(m.close, p, code)},
        _ma_lookback(code, p),
        {"value": _price_floor},
        datasets=MA_DATASETS,
    )


def talib_code(name: str) -> int:
    return int(getattr(talib.MA_Type, name.upper()))


def _mavp_periods(volume: np.ndarray) -> np.ndarray:
    # Periods 0.75 .. 39.75 (truncated: 0 .. 39, then clamped), exact in NumPy and Polars alike.
    return np.floor(volume) % 40.0 + 0.75


def _mavp(lo: int, hi: int, matype: int) -> Case:
    return Case(
        lambda: threadx.mavp("close", pl.col("volume").floor() % 40.0 + 0.75, lo, hi, matype),
        lambda m: {"value": talib.MAVP(m.close, _mavp_periods(m.volume), lo, hi, matype)},
        _ma_lookback(matype, hi),
        {"value": _price_floor},
        datasets=MA_DATASETS,
    )


def _bbands_ma(p: int, up: float, down: float, matype: int) -> Case:
    def ta(m: Market) -> dict[str, np.ndarray]:
        upper, middle, lower = talib.BBANDS(m.close, p, up, down, matype)
        return {"middle": middle, "upper": upper, "lower": lower}

    return Case(
        lambda: threadx.bbands("close", p, up, down, matype),
        ta,
        max(_ma_lookback(matype, p), p - 1),
        {"middle": _price_floor, "upper": _price_floor, "lower": _price_floor},
        is_struct=True,
        datasets=MA_DATASETS,
    )


CASES: dict[str, Case] = {
    # SMA/EMA/WMA: default 30, the minimum 2, a small and a large period.
    "sma-30": _sma(30),
    "sma-2": _sma(2),
    "sma-7": _sma(7),
    "sma-2000": _sma(2000),
    "ema-30": _ema(30),
    "ema-2": _ema(2),
    "ema-9": _ema(9),
    "ema-1000": _ema(1000),
    "wma-30": _wma(30),
    "wma-2": _wma(2),
    "wma-10": _wma(10),
    "wma-500": _wma(500),
    # STDDEV (threadx.rolling_std, ddof=0): default 5, the minimum 2, 20, a large period.
    "stddev-5": _stddev(5),
    "stddev-2": _stddev(2),
    "stddev-20": _stddev(20),
    "stddev-1000": _stddev(1000),
    # BBANDS (matype 0 = SMA, nbdevup = nbdevdn): default (20, 2.0) and others, std_dev 0 included.
    "bbands-20-2.0": _bbands(20, 2.0),
    "bbands-2-1.0": _bbands(2, 1.0),
    "bbands-5-0.5": _bbands(5, 0.5),
    "bbands-50-0.0": _bbands(50, 0.0),
    "bbands-300-3.0": _bbands(300, 3.0),
    "rsi-14": _rsi(14),
    "rsi-2": _rsi(2),
    "rsi-5": _rsi(5),
    "rsi-200": _rsi(200),
    "roc-10": _roc(10),
    "roc-1": _roc(1),
    "roc-3": _roc(3),
    "roc-500": _roc(500),
    # MACD (fast, slow, signal): default, the smallest legal, a small and a large set.
    "macd-12-26-9": _macd(12, 26, 9),
    "macd-2-3-1": _macd(2, 3, 1),
    "macd-5-35-5": _macd(5, 35, 5),
    "macd-50-200-30": _macd(50, 200, 30),
    "atr-14": _atr(14),
    "atr-1": _atr(1),
    "atr-5": _atr(5),
    "atr-300": _atr(300),
    "natr-14": _natr(14),
    "natr-1": _natr(1),
    "natr-7": _natr(7),
    "natr-150": _natr(150),
    # STOCH (fastk, slowk, slowd), SMA smoothing (matype 0).
    "stoch-5-3-3": _stoch(5, 3, 3),
    "stoch-1-1-1": _stoch(1, 1, 1),
    "stoch-14-3-5": _stoch(14, 3, 5),
    "stoch-100-10-20": _stoch(100, 10, 20),
    "obv-volume": _obv("volume"),
    "obv-volume_big": _obv("volume_big"),
    "obv-volume_small": _obv("volume_small"),
    # Elementwise functions (no parameters): their inputs in TA-Lib's roles, and a second input
    # set with the columns in other roles (sums in another order of magnitude of the terms).
    "avgprice-ohlc": _elementwise("avgprice", ("open", "high", "low", "close")),
    "avgprice-clho": _elementwise("avgprice", ("close", "low", "high", "open")),
    "medprice-hl": _elementwise("medprice", ("high", "low")),
    "medprice-oc": _elementwise("medprice", ("open", "close")),
    "typprice-hlc": _elementwise("typprice", ("high", "low", "close")),
    "typprice-col": _elementwise("typprice", ("close", "open", "low")),
    "wclprice-hlc": _elementwise("wclprice", ("high", "low", "close")),
    "wclprice-lho": _elementwise("wclprice", ("low", "high", "open")),
    "trange-hlc": _elementwise("trange", ("high", "low", "close"), 1),
    "trange-olc": _elementwise("trange", ("open", "low", "close"), 1),
    "add-co": _elementwise("add", ("close", "open")),
    "add-hv": _elementwise("add", ("high", "volume")),
    "sub-co": _elementwise("sub", ("close", "open")),
    "sub-lh": _elementwise("sub", ("low", "high")),
    "mult-co": _elementwise("mult", ("close", "open")),
    "mult-vl": _elementwise("mult", ("volume", "low")),
    "div-co": _elementwise("div", ("close", "open")),
    "div-vh": _elementwise("div", ("volume", "high")),
    # Statistic functions: the default period first, then the minimum and others.
    # BETA: no period 2. Two returns that differ by a tiny amount make TA-Lib's un-shifted sums
    # lose up to 1e-8 (walk row 79582: TA-Lib -1053.982506815876, a long-double two-pass
    # -1053.982493808862, threadx -1053.98249380893); the Rust tests check period 2.
    "beta-5": _beta(5),
    "beta-1": _beta(1),
    "beta-10": _beta(10),
    "beta-30": _beta(30),
    "beta-300": _beta(300),
    "correl-30": _correl(30),
    "correl-1": _correl(1),
    "correl-10": _correl(10),
    "correl-200": _correl(200),
    **{
        f"{name}-{p}": _linreg(name, p)
        for name in (
            "linearreg",
            "linearreg_angle",
            "linearreg_intercept",
            "linearreg_slope",
            "tsf",
        )
        for p in (14, 2, 5, 50, 500)
    },
    # VAR (threadx.rolling_var): default 5, the minimum 1, 20, a large period.
    "var-5": _var(5),
    "var-1": _var(1),
    "var-20": _var(20),
    "var-1000": _var(1000),
    "avgdev-14": _avgdev(14),
    "avgdev-2": _avgdev(2),
    "avgdev-5": _avgdev(5),
    "avgdev-100": _avgdev(100),
    # PERCENTILE (period, percentile): default (30, 50), the extremes 0 and 100, others.
    "percentile-30-50": _percentile(30, 50.0),
    "percentile-2-100": _percentile(2, 100.0),
    "percentile-5-0": _percentile(5, 0.0),
    "percentile-10-90": _percentile(10, 90.0),
    "percentile-14-33.3": _percentile(14, 33.3),
    "percentile-101-25": _percentile(101, 25.0),
    "percentile-1000-50": _percentile(1000, 50.0),
    "percentrank-100": _percentrank(100),
    "percentrank-2": _percentrank(2),
    "percentrank-10": _percentrank(10),
    "percentrank-500": _percentrank(500),
    # SUM: a block-grid window sum, TA-Lib a running sum (not bit-exact).
    "sum-30": _window("sum", 30, _sum_floor),
    "sum-2": _window("sum", 2, _sum_floor),
    "sum-500": _window("sum", 500, _sum_floor),
    # MAX / MIN / MINMAX: exact values, so bit for bit; default 30, the minimum 2, a large one.
    "max-30": _window("max", 30, exact=True),
    "max-2": _window("max", 2, exact=True),
    "max-200": _window("max", 200, exact=True),
    "min-30": _window("min", 30, exact=True),
    "min-2": _window("min", 2, exact=True),
    "min-200": _window("min", 200, exact=True),
    # MAXINDEX / MININDEX / MINMAXINDEX: identical rows, including TA-Lib's choice among the ties
    # of the tick data.
    "maxindex-30": _window("maxindex", 30),
    "maxindex-2": _window("maxindex", 2),
    "maxindex-14": _window("maxindex", 14),
    "maxindex-500": _window("maxindex", 500),
    "minindex-30": _window("minindex", 30),
    "minindex-2": _window("minindex", 2),
    "minindex-500": _window("minindex", 500),
    "minmax-30": _window("minmax", 30, exact=True),
    "minmax-2": _window("minmax", 2, exact=True),
    "minmax-99": _window("minmax", 99, exact=True),
    "minmaxindex-30": _window("minmaxindex", 30),
    "minmaxindex-2": _window("minmaxindex", 2),
    "minmaxindex-77": _window("minmaxindex", 77),
    # MIDPOINT / MIDPRICE / DONCHIAN: (highest + lowest) / 2.0 as TA-Lib computes it.
    "midpoint-14": _window("midpoint", 14, exact=True),
    "midpoint-2": _window("midpoint", 2, exact=True),
    "midpoint-100": _window("midpoint", 100, exact=True),
    "midprice-14": _hl("midprice", 14),
    "midprice-2": _hl("midprice", 2),
    "midprice-100": _hl("midprice", 100),
    "donchian-20": _hl("donchian", 20),
    "donchian-2": _hl("donchian", 2),
    "donchian-55": _hl("donchian", 55),
    "cumsum-close": _cumsum("close"),
    "cumsum-volume": _cumsum("volume"),
    # ACCBANDS: default 20, the minimum 2, a large period.
    "accbands-20": _accbands(20),
    "accbands-2": _accbands(2),
    "accbands-300": _accbands(300),
    # KC (period, atr_period, multiplier): default, an ATR longer than the EMA (both legs seeded at
    # the ATR's lookback), the minima, and a zero width.
    "kc-20-10-2.0": _kc(20, 10, 2.0),
    "kc-5-30-1.5": _kc(5, 30, 1.5),
    "kc-2-1-3.0": _kc(2, 1, 3.0),
    "kc-50-50-0.0": _kc(50, 50, 0.0),
    "ha-ohlc": _ha(("open", "high", "low", "close")),
    "ha-clho": _ha(("close", "low", "high", "open")),
    "adr-14": _adr(14),
    "adr-1": _adr(1),
    "adr-500": _adr(500),
    "cvi-10-10": _cvi(10, 10),
    "cvi-2-1": _cvi(2, 1),
    "cvi-30-100": _cvi(30, 100),
    "massi-9-25": _massi(9, 25),
    "massi-2-2": _massi(2, 2),
    "massi-20-60": _massi(20, 60),
    "rvi-14-10": _rvi(14, 10),
    "rvi-1-2": _rvi(1, 2),
    "rvi-30-50": _rvi(30, 50),
    # The math transforms: two inputs each (see _TRANSFORMS).
    **{
        f"{name}-{label}": _transform(name, label)
        for name, labels in _TRANSFORMS.items()
        for label in labels
    },
    # Moving averages: the default period, the identity period 1, a short and a long period.
    "dema-30": _ma_like("dema", 30, 58),
    "dema-1": _ma_like("dema", 1, 0),
    "dema-2": _ma_like("dema", 2, 2),
    "dema-200": _ma_like("dema", 200, 398),
    "tema-30": _ma_like("tema", 30, 87),
    "tema-1": _ma_like("tema", 1, 0),
    "tema-3": _ma_like("tema", 3, 6),
    "tema-150": _ma_like("tema", 150, 447),
    # TRIMA: odd and even periods (different triangular weights). TA-Lib's odd-period TRIMA keeps
    # running sums that drift: at row ~100_000 of `walk` TRIMA(7) is 6.8e-10 off the exact
    # rational value, threadx (an SMA of an SMA) 1.4e-16; the drift grows with the length.
    "trima-30": _ma_like("trima", 30, 29),
    "trima-1": _ma_like("trima", 1, 0),
    "trima-2": _ma_like("trima", 2, 1),
    "trima-7": _ma_like("trima", 7, 6),
    "trima-501": _ma_like("trima", 501, 500),
    # T3: default (5, 0.7), other volume factors (0 and 1 are the bounds).
    "t3-5-0.7": _ma_like("t3", 5, 24, 0.7),
    "t3-1-0.7": _ma_like("t3", 1, 0, 0.7),
    "t3-2-0.0": _ma_like("t3", 2, 6, 0.0),
    "t3-20-1.0": _ma_like("t3", 20, 114, 1.0),
    "t3-60-0.35": _ma_like("t3", 60, 354, 0.35),
    "kama-30": _ma_like("kama", 30, 30),
    "kama-1": _ma_like("kama", 1, 0),
    "kama-2": _ma_like("kama", 2, 2),
    "kama-10": _ma_like("kama", 10, 10),
    "kama-300": _ma_like("kama", 300, 300),
    "rma-30": _ma_like("rma", 30, 29),
    "rma-1": _ma_like("rma", 1, 0),
    "rma-2": _ma_like("rma", 2, 1),
    "rma-500": _ma_like("rma", 500, 499),
    # ZLEMA: odd and even periods (lag (p - 1) // 2).
    "zlema-30": _ma_like("zlema", 30, 43),
    "zlema-1": _ma_like("zlema", 1, 0),
    "zlema-2": _ma_like("zlema", 2, 1),
    "zlema-7": _ma_like("zlema", 7, 9),
    "zlema-400": _ma_like("zlema", 400, 598),
    # HMA: 2 and 3 (half and sqrt periods of 1), a perfect square, large.
    "hma-20": _ma_like("hma", 20, 22),
    "hma-1": _ma_like("hma", 1, 0),
    "hma-2": _ma_like("hma", 2, 1),
    "hma-3": _ma_like("hma", 3, 2),
    "hma-16": _ma_like("hma", 16, 18),
    "hma-1000": _ma_like("hma", 1000, 1029),
    "vwma-30": _vwma(30),
    "vwma-1": _vwma(1),
    "vwma-2": _vwma(2),
    "vwma-250": _vwma(250),
    # MA: every matype (codes and names; 10 is the identity, 11 the function's default, SMA).
    **{f"ma-30-{c}": _ma(30, c) for c in (0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13)},
    "ma-1-3": _ma(1, 3),
    "ma-9-kama": _ma(9, "kama"),
    "ma-50-t3": _ma(50, "t3"),
    "ma-2-hma": _ma(2, "hma"),
    # MAVP: the default, other ranges (min = max, min 1), recursive and windowed types.
    "mavp-2-30-0": _mavp(2, 30, 0),
    "mavp-5-35-1": _mavp(5, 35, 1),
    "mavp-1-20-6": _mavp(1, 20, 6),
    "mavp-3-30-3": _mavp(3, 30, 3),
    "mavp-10-10-2": _mavp(10, 10, 2),
    "mavp-2-25-8": _mavp(2, 25, 8),
    "mavp-4-30-9": _mavp(4, 30, 9),
    "mavp-2-30-10": _mavp(2, 30, 10),
    "mavp-2-30-12": _mavp(2, 30, 12),
    "mavp-2-30-13": _mavp(2, 30, 13),
    # BBANDS with a matype and unequal band widths (nbdevup != nbdevdn).
    "bbands-20-2.0-1.0-0": _bbands_ma(20, 2.0, 1.0, 0),
    "bbands-20-2.0-2.0-1": _bbands_ma(20, 2.0, 2.0, 1),
    "bbands-10-1.5-2.5-3": _bbands_ma(10, 1.5, 2.5, 3),
    "bbands-30-2.0-2.0-6": _bbands_ma(30, 2.0, 2.0, 6),
    "bbands-5-1.0-1.0-8": _bbands_ma(5, 1.0, 1.0, 8),
    "bbands-20-2.0-2.0-9": _bbands_ma(20, 2.0, 2.0, 9),
    "bbands-20-2.0-0.0-10": _bbands_ma(20, 2.0, 0.0, 10),
    "bbands-14-1.0-2.0-12": _bbands_ma(14, 1.0, 2.0, 12),
    "bbands-2-3.0-3.0-13": _bbands_ma(2, 3.0, 3.0, 13),
}


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _leading(mask: np.ndarray) -> int:
    """Number of leading True values."""
    falses = np.flatnonzero(~mask)
    return int(falses[0]) if falses.size else int(mask.size)


def _threadx_outputs(case: Case, m: Market) -> pl.DataFrame:
    out = m.frame.select(case.threadx().alias("value"))
    if case.is_struct:
        out = out.unnest("value")
    return out


def _max_rel_error(tx: np.ndarray, ta: np.ndarray, floor: float) -> tuple[float, int]:
    denom = np.maximum(np.abs(ta), floor)
    rel = np.abs(tx - ta) / denom
    # NaN anywhere (a NaN from threadx, or a NaN mismatch) must fail, so map it to +inf.
    rel = np.where(np.isnan(rel), np.inf, rel)
    i = int(np.argmax(rel))
    return float(rel[i]), i


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case_id", "dataset"), [(c, d) for c, case in CASES.items() for d in case.datasets]
)
def test_matches_talib(case_id: str, dataset: str) -> None:
    case = CASES[case_id]
    m = _market(dataset)
    out = _threadx_outputs(case, m)
    expected = case.talib(m)

    assert out.height == N_ROWS
    assert sorted(out.columns) == sorted(expected), (out.columns, list(expected))
    report = []
    for name, ta in expected.items():
        col = out.get_column(name)
        assert ta.shape == (N_ROWS,)
        if ta.dtype.kind == "i":
            # An integer output (MAXINDEX's rows): Int32, null through TA-Lib's lookback (TA-Lib
            # writes 0 there), and the same integers after it.
            assert col.dtype == pl.Int32, (name, col.dtype)
            tx_warmup = _leading(col.is_null().to_numpy())
            assert tx_warmup == case.lookback, (name, tx_warmup, case.lookback)
            assert col.null_count() == tx_warmup, f"{name}: nulls after the warm-up"
            tx_int = col.to_numpy()[tx_warmup:]
            differ = np.flatnonzero(tx_int != ta[tx_warmup:])
            assert differ.size == 0, (
                f"{case_id}/{dataset} {name}: {differ.size} rows differ from TA-Lib, first at row "
                f"{differ[0] + tx_warmup}: {tx_int[differ[0]]} vs {ta[tx_warmup + differ[0]]}"
            )
            report.append(f"{name}=identical")
            continue
        assert col.dtype == pl.Float64, (name, col.dtype)

        # Warm-up: same length as TA-Lib's NaN prefix, and as the documented lookback.
        ta_warmup = _leading(np.isnan(ta))
        tx_null = col.is_null().to_numpy()
        tx_warmup = _leading(tx_null)
        assert ta_warmup == case.lookback, (name, ta_warmup, case.lookback)
        assert tx_warmup == ta_warmup, f"{name}: {tx_warmup} leading nulls, TA-Lib {ta_warmup}"
        assert col.null_count() == tx_warmup, f"{name}: nulls after the warm-up"
        # TA-Lib has no NaN after its warm-up on this data (guards the comparison itself).
        assert not np.isnan(ta[ta_warmup:]).any()

        tx = col.to_numpy()[tx_warmup:].astype(np.float64)
        tb = ta[ta_warmup:]
        assert not np.isnan(tx).any(), f"{name}: NaN after the warm-up"
        floor = case.floors[name](m, ta)
        err, i = _max_rel_error(tx, tb, floor)
        report.append(f"{name}={err:.3g}")
        assert err <= RTOL, (
            f"{case_id}/{dataset} {name}: max rel error {err:.3g} at row {i + tx_warmup}: "
            f"threadx {tx[i]!r} vs TA-Lib {tb[i]!r} (floor {floor:.3g})"
        )
        if case.exact:
            differ = np.flatnonzero(tx.view(np.uint64) != tb.view(np.uint64))
            assert differ.size == 0, (
                f"{case_id}/{dataset} {name}: {differ.size} rows differ from TA-Lib in their bits, "
                f"first at row {differ[0] + tx_warmup}: {tx[differ[0]]!r} vs {tb[differ[0]]!r}"
            )
            report.append("bit-exact")
    print(f"\n[parity] {case_id:<18} {dataset:<5} max rel err: " + ", ".join(report))


def test_namespace_matches_functions() -> None:
    """The ``pl.Expr.threadx`` namespace and the functions give the same bits (defaults)."""
    m = _market("walk")
    c = pl.col("close")
    pairs = {
        "sma": (threadx.sma("close"), c.threadx.sma()),
        "ema": (threadx.ema("close"), c.threadx.ema()),
        "wma": (threadx.wma("close"), c.threadx.wma()),
        "rolling_std": (threadx.rolling_std("close"), c.threadx.rolling_std()),
        "rsi": (threadx.rsi("close"), c.threadx.rsi()),
        "roc": (threadx.roc("close"), c.threadx.roc()),
        "natr": (threadx.natr("high", "low", "close"), c.threadx.natr(high="high", low="low")),
        "obv": (threadx.obv("close", "volume"), c.threadx.obv(volume="volume")),
    }
    for name, (f, ns) in pairs.items():
        out = m.frame.select(f.alias("f"), ns.alias("ns"))
        assert_bits_equal(out["ns"], out["f"], name)


def test_math_transforms_out_of_domain_give_nan_like_talib() -> None:
    """Arguments outside a function's domain give IEEE NaN (acos(2), ln(-1), sqrt(-4)), and
    ln(0) = -inf, exactly as TA-Lib's C library calls; every other row keeps TA-Lib's bits."""
    x = np.array([0.5, 2.0, -1.5, 0.0, -1.0, 1e6, -4.0, 1.0, np.inf, -np.inf, np.nan])
    frame = pl.DataFrame({"x": x})
    for name in _TRANSFORMS:
        with np.errstate(all="ignore"):
            ta = getattr(talib, name.upper())(x)
        got = frame.select(getattr(threadx, name)("x")).to_series()
        assert got.null_count() == 0, name
        tx = got.to_numpy()
        np.testing.assert_array_equal(np.isnan(tx), np.isnan(ta), err_msg=name)
        ok = ~np.isnan(ta)
        assert (tx[ok].view(np.uint64) == ta[ok].view(np.uint64)).all(), (name, tx, ta)
    for name, arg in (("acos", 2.0), ("asin", -1.5), ("ln", -1.0), ("log10", -1.0), ("sqrt", -4.0)):
        one = pl.DataFrame({"x": [arg]})
        assert np.isnan(one.select(getattr(threadx, name)("x")).item()), name
    assert pl.DataFrame({"x": [0.0]}).select(threadx.ln("x")).item() == -np.inf
