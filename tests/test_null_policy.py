"""Null and NaN policy of every threadx indicator.

* null = missing observation: the value at a non-null row equals the indicator computed on the
  series with the missing rows dropped, scattered back (bit for bit); missing rows are null; a row
  is missing when any input of a multi-input indicator is null; the warm-up counts non-null rows.
* NaN is a value: windowed indicators give NaN exactly for the windows holding it, recursive ones
  are poisoned from it onward, roc at t only looks at x[t] and x[t - n].

Values are also checked against naive numpy/Python references written here (TA-Lib's loops).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import polars as pl
import pytest
import threadx
from helpers import (
    INPUTS,
    MA_CODES,
    NAMES,
    PARAMS,
    assert_bits_equal,
    fields,
    indicator_expr,
    lookback,
    null_where,
    ohlcv,
    present_mask,
    run,
    scatter_back,
)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

# --------------------------------------------------------------------------------------------
# naive references (warm-up rows are NaN here; the tests slice them off)
# --------------------------------------------------------------------------------------------


def _windows(x: np.ndarray, n: int) -> np.ndarray:
    return np.lib.stride_tricks.sliding_window_view(x, n)


def _nan(n: int) -> np.ndarray:
    return np.full(n, np.nan)


def ref_sma(x, period):
    out = _nan(len(x))
    if len(x) >= period:
        out[period - 1 :] = _windows(x, period).mean(axis=1)
    return out


def ref_wma(x, period):
    out = _nan(len(x))
    if len(x) >= period:
        w = np.arange(1, period + 1, dtype=np.float64)
        out[period - 1 :] = (_windows(x, period) * w).sum(axis=1) / w.sum()
    return out


def ref_std(x, period, ddof=0):
    out = _nan(len(x))
    if len(x) >= period:
        out[period - 1 :] = _windows(x, period).std(axis=1, ddof=ddof)
    return out


def ref_zscore(x, period):
    out = _nan(len(x))
    if len(x) >= period:
        win = _windows(x, period)
        out[period - 1 :] = (x[period - 1 :] - win.mean(axis=1)) / win.std(axis=1)
    return out


def ref_bollinger(x, period, std_dev):
    mid, sd = ref_sma(x, period), ref_std(x, period)
    return {"middle": mid, "upper": mid + std_dev * sd, "lower": mid - std_dev * sd}


def _ema_from(x, k, seed_row, seed, out):
    prev = seed
    out[seed_row] = prev
    for t in range(seed_row + 1, len(x)):
        prev = (x[t] - prev) * k + prev
        out[t] = prev
    return out


def _plain_sum(values) -> float:
    s = 0.0
    for v in values:
        s += v
    return s


def ref_ema(x, period):
    out = _nan(len(x))
    if len(x) < period:
        return out
    return _ema_from(x, 2.0 / (period + 1), period - 1, _plain_sum(x[:period]) / period, out)


def ref_rsi(x, period):
    n = len(x)
    out = _nan(n)
    if n <= period:
        return out
    gain = loss = 0.0
    for t in range(1, period + 1):
        d = x[t] - x[t - 1]
        if d < 0:
            loss -= d
        else:
            gain += d
    gain /= period
    loss /= period

    def value(g, lo):
        return 0.0 if g + lo == 0 else 100.0 * (g / (g + lo))

    out[period] = value(gain, loss)
    for t in range(period + 1, n):
        d = x[t] - x[t - 1]
        gain *= period - 1
        loss *= period - 1
        if d < 0:
            loss -= d
        else:
            gain += d
        gain /= period
        loss /= period
        out[t] = value(gain, loss)
    return out


def ref_roc(x, period):
    out = _nan(len(x))
    for t in range(period, len(x)):
        prev = x[t - period]
        out[t] = ((x[t] / prev) - 1.0) * 100.0 if prev != 0 else 0.0
    return out


def ref_macd(x, fast, slow, signal):
    n = len(x)
    start = slow + signal - 2
    m, sig = _nan(n), _nan(n)
    if n <= start:
        return {"macd": m, "signal": sig, "hist": _nan(n)}
    ef = _ema_from(x, 2.0 / (fast + 1), slow - 1, _plain_sum(x[slow - fast : slow]) / fast, _nan(n))
    es = _ema_from(x, 2.0 / (slow + 1), slow - 1, _plain_sum(x[:slow]) / slow, _nan(n))
    m = ef - es
    seed = _plain_sum(m[slow - 1 : start + 1]) / signal
    sig = _ema_from(m, 2.0 / (signal + 1), start, seed, sig)
    m[:start] = np.nan
    return {"macd": m, "signal": sig, "hist": m - sig}


def _true_range(h, lo, c):
    tr = _nan(len(h))
    for t in range(1, len(h)):
        # np.max propagates NaN, like TA-Lib's comparisons on NaN-free data
        tr[t] = np.max([h[t] - lo[t], abs(c[t - 1] - h[t]), abs(c[t - 1] - lo[t])])
    return tr


def ref_atr(h, lo, c, period):
    n = len(h)
    out = _nan(n)
    if n <= period:
        return out
    tr = _true_range(h, lo, c)
    prev = _plain_sum(tr[1 : period + 1]) / period
    out[period] = prev
    for t in range(period + 1, n):
        prev = (prev * (period - 1) + tr[t]) / period
        out[t] = prev
    return out


def ref_natr(h, lo, c, period):
    a = ref_atr(h, lo, c, period)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(c != 0, (a / c) * 100.0, 0.0)


def ref_stoch(h, lo, c, fastk_period, slowk_period, slowd_period):
    n = len(h)
    fk, sk, sd = fastk_period, slowk_period, slowd_period
    slowk, slowd = _nan(n), _nan(n)
    if n >= fk:
        hh = _windows(h, fk).max(axis=1)  # NaN-propagating
        ll = _windows(lo, fk).min(axis=1)
        fast = np.empty(n - fk + 1)
        for i in range(len(fast)):
            diff = (hh[i] - ll[i]) / 100.0
            fast[i] = (c[fk - 1 + i] - ll[i]) / diff if diff != 0 else 0.0
        k = ref_sma(fast, sk) if sk > 1 else fast.copy()
        slowk[fk - 1 :] = k
        if n > fk + sk - 2:
            kk = k[sk - 1 :]
            slowd[fk + sk - 2 :] = ref_sma(kk, sd) if sd > 1 else kk
    return {"slowk": slowk, "slowd": slowd}


def ref_obv(c, v):
    """TA-Lib's loop, except that a NaN close poisons the running total like any other NaN (the
    contract: obv is recursive, a NaN reaches every later row; IEEE comparisons alone would
    silently treat a NaN close as "unchanged")."""
    out = _nan(len(c))
    if len(c) == 0:
        return out
    prev = v[0]
    out[0] = prev
    for t in range(1, len(c)):
        if np.isnan(c[t]) or np.isnan(c[t - 1]):
            prev = np.nan
        elif c[t] > c[t - 1]:
            prev += v[t]
        elif c[t] < c[t - 1]:
            prev -= v[t]
        out[t] = prev
    return out


# Elementwise functions: TA-Lib's expressions, in its order of operations (NumPy adds left to
# right, like C).
def ref_avgprice(o, h, lo, c):
    return (h + lo + c + o) / 4.0


def ref_medprice(h, lo):
    return (h + lo) / 2.0


def ref_typprice(h, lo, c):
    return (h + lo + c) / 3.0


def ref_wclprice(h, lo, c):
    return (h + lo + c * 2.0) / 4.0


def ref_trange(h, lo, c):
    return _true_range(h, lo, c)


def ref_add(a, b):
    return a + b


def ref_sub(a, b):
    return a - b


def ref_mult(a, b):
    return a * b


def ref_div(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return a / b


# Statistic functions: two-pass NumPy formulas over each window.
def _returns(v):
    """One-row returns (v_t - v_{t-1}) / v_{t-1}; 0 where the base is exactly 0 (and at row 0)."""
    r = np.zeros(len(v))
    if len(v) > 1:
        base = v[:-1]
        with np.errstate(all="ignore"):
            r[1:] = np.where(base == 0.0, 0.0, (v[1:] - base) / np.where(base == 0.0, 1.0, base))
    return r


def _cov_windows(a, b, period):
    """(centred sum of squares of a, of b, of cross-products) per window of `period` rows."""
    wa, wb = _windows(a, period), _windows(b, period)
    da = wa - wa.mean(axis=1, keepdims=True)
    db = wb - wb.mean(axis=1, keepdims=True)
    return (da * da).sum(axis=1), (db * db).sum(axis=1), (da * db).sum(axis=1)


def ref_beta(x, y, period):
    out = _nan(len(x))
    if len(x) > period:
        sxx, _, sxy = _cov_windows(_returns(x), _returns(y), period)
        with np.errstate(all="ignore"):
            beta = np.where(sxx == 0.0, 0.0, sxy / sxx)
        out[period:] = beta[1:]
    return out


def ref_correl(x, y, period):
    out = _nan(len(x))
    if len(x) >= period:
        sxx, syy, sxy = _cov_windows(x, y, period)
        den = sxx * syy
        with np.errstate(all="ignore"):
            out[period - 1 :] = np.where(den == 0.0, 0.0, sxy / np.sqrt(den))
    return out


def _linreg_ref(x, period, what):
    out = _nan(len(x))
    if len(x) >= period:
        j = np.arange(period, dtype=np.float64)
        dj = j - j.mean()
        win = _windows(x, period)
        slope = ((win - win.mean(axis=1, keepdims=True)) * dj).sum(axis=1) / (dj * dj).sum()
        b = win.mean(axis=1) - slope * j.mean()  # the fitted value at the oldest row
        out[period - 1 :] = {
            "value": b + slope * (period - 1),
            "angle": np.degrees(np.arctan(slope)),
            "intercept": b,
            "slope": slope,
            "tsf": b + slope * period,
        }[what]
    return out


def ref_linearreg(x, period):
    return _linreg_ref(x, period, "value")


def ref_linearreg_angle(x, period):
    return _linreg_ref(x, period, "angle")


def ref_linearreg_intercept(x, period):
    return _linreg_ref(x, period, "intercept")


def ref_linearreg_slope(x, period):
    return _linreg_ref(x, period, "slope")


def ref_tsf(x, period):
    return _linreg_ref(x, period, "tsf")


def ref_var(x, period):
    out = _nan(len(x))
    if len(x) >= period:
        out[period - 1 :] = _windows(x, period).var(axis=1)
    return out


def ref_avgdev(x, period):
    out = _nan(len(x))
    if len(x) >= period:
        win = _windows(x, period)
        out[period - 1 :] = np.abs(win - win.mean(axis=1, keepdims=True)).mean(axis=1)
    return out


def ref_percentile(x, period, percentile):
    """The ceil(percentile * period / 100)-th smallest value of each window (nearest rank)."""
    out = _nan(len(x))
    if len(x) >= period:
        rank = min(max(int(np.ceil(percentile * period / 100.0)), 1), period)
        win = _windows(x, period)
        vals = np.sort(win, axis=1)[:, rank - 1]
        out[period - 1 :] = np.where(np.isnan(win).any(axis=1), np.nan, vals)
    return out


def ref_percentrank(x, period):
    """Percent of the `period` previous values strictly below the current one."""
    out = _nan(len(x))
    for t in range(period, len(x)):
        prev = x[t - period : t]
        if np.isnan(prev).any() or np.isnan(x[t]):
            continue
        out[t] = np.count_nonzero(prev < x[t]) / period * 100.0
    return out


def ref_sum(x, period):
    out = _nan(len(x))
    if len(x) >= period:
        out[period - 1 :] = _windows(x, period).sum(axis=1)
    return out


def ref_max(x, period):
    out = _nan(len(x))
    if len(x) >= period:
        out[period - 1 :] = _windows(x, period).max(axis=1)  # NaN propagates
    return out


def ref_min(x, period):
    out = _nan(len(x))
    if len(x) >= period:
        out[period - 1 :] = _windows(x, period).min(axis=1)
    return out


def _talib_index(x, period, better):
    """TA-Lib's MAXINDEX / MININDEX loop: when the remembered row leaves the window, rescan it
    for the first strictly best row; else an incoming row that ties or beats it is taken. NaN
    ranks above every number (a window holding one reports a NaN's row, as MAX reports NaN)."""

    def above(a, b):
        return better(a, b) or (math.isnan(a) and not math.isnan(b))

    out = _nan(len(x))
    h = -1
    for t in range(period - 1, len(x)):
        trailing = t - period + 1
        if h < trailing:
            h = trailing
            for i in range(trailing + 1, t + 1):
                if above(x[i], x[h]):
                    h = i
        elif not above(x[h], x[t]):
            h = t
        out[t] = h
    return out


def ref_maxindex(x, period):
    return _talib_index(x, period, lambda a, b: a > b)


def ref_minindex(x, period):
    return _talib_index(x, period, lambda a, b: a < b)


def ref_minmax(x, period):
    return {"min": ref_min(x, period), "max": ref_max(x, period)}


def ref_minmaxindex(x, period):
    return {"minidx": ref_minindex(x, period), "maxidx": ref_maxindex(x, period)}


def ref_midpoint(x, period):
    return (ref_max(x, period) + ref_min(x, period)) / 2.0


def ref_midprice(h, lo, period):
    return (ref_max(h, period) + ref_min(lo, period)) / 2.0


def ref_donchian(h, lo, period):
    upper, lower = ref_max(h, period), ref_min(lo, period)
    return {"upper": upper, "middle": (upper + lower) / 2.0, "lower": lower}


def ref_cumsum(x):
    return np.cumsum(x)


def ref_accbands(h, lo, c, period):
    n = len(h)
    up, dn = np.empty(n), np.empty(n)
    for t in range(n):
        s = h[t] + lo[t]
        if s != 0:  # TA-Lib: |s| >= 1e-8 (an exact-zero test here, as threadx)
            r = 4.0 * (h[t] - lo[t]) / s
            up[t], dn[t] = h[t] * (1.0 + r), lo[t] * (1.0 - r)
        else:
            up[t], dn[t] = h[t], lo[t]
    return {
        "upper": ref_sma(up, period),
        "middle": ref_sma(c, period),
        "lower": ref_sma(dn, period),
    }


def _wilder_from(v, period, seed_row, seed, out):
    prev = seed
    out[seed_row] = prev
    for t in range(seed_row + 1, len(v)):
        prev = (prev * (period - 1) + v[t]) / period
        out[t] = prev
    return out


# Moving averages (TA-Lib's definitions, written plainly; period 1 is the identity everywhere).
def _ema_seeded_from(x, n, start):
    """The EMA of x[start:], seeded with the mean of its first n values, on x's rows."""
    out = _nan(len(x))
    s = start + n - 1
    if s >= len(x):
        return out
    return _ema_from(x, 2.0 / (n + 1), s, _plain_sum(x[start : s + 1]) / n, out)


def ref_dema(x, period):
    if period == 1:
        return x.copy()
    e1 = _ema_seeded_from(x, period, 0)
    return 2.0 * e1 - _ema_seeded_from(e1, period, period - 1)


def ref_tema(x, period):
    if period == 1:
        return x.copy()
    e1 = _ema_seeded_from(x, period, 0)
    e2 = _ema_seeded_from(e1, period, period - 1)
    return 3.0 * e1 - 3.0 * e2 + _ema_seeded_from(e2, period, 2 * (period - 1))


def ref_trima(x, period):
    out = _nan(len(x))
    if period == 1:
        return x.copy()
    if len(x) >= period:
        half = (period + 1) // 2
        w = np.array([min(j + 1, period - j, half) for j in range(period)], dtype=np.float64)
        out[period - 1 :] = (_windows(x, period) * w).sum(axis=1) / w.sum()
    return out


def ref_t3(x, period, vfactor=0.7):
    if period == 1:
        return x.copy()
    e = [x]
    for i in range(6):
        e.append(_ema_seeded_from(e[-1], period, i * (period - 1)))
    a = vfactor
    c1, c2 = -(a**3), 3 * a * a + 3 * a**3
    c3, c4 = -6 * a * a - 3 * a - 3 * a**3, 1 + 3 * a + a**3 + 3 * a * a
    return c1 * e[6] + c2 * e[5] + c3 * e[4] + c4 * e[3]


def ref_kama(x, period):
    if period == 1:
        return x.copy()
    out = _nan(len(x))
    if len(x) <= period:
        return out
    slow, fast = 2.0 / 31.0, 2.0 / 3.0
    prev = x[period - 1]
    for t in range(period, len(x)):
        path = np.abs(np.diff(x[t - period : t + 1])).sum()
        change = x[t] - x[t - period]
        er = 1.0 if (path <= change or abs(path) < 1e-8) else abs(change / path)
        sc = (er * (fast - slow) + slow) ** 2
        prev = (x[t] - prev) * sc + prev
        out[t] = prev
    return out


def ref_kc(h, lo, c, period, atr_period, multiplier):
    n = len(h)
    s = max(period - 1, atr_period)
    mid, atr = _nan(n), _nan(n)
    if n > s:
        tp = (h + lo + c) / 3.0
        tr = _true_range(h, lo, c)
        seed = _plain_sum(tp[s + 1 - period : s + 1]) / period
        _ema_from(tp, 2.0 / (period + 1), s, seed, mid)
        atr_seed = _plain_sum(tr[s + 1 - atr_period : s + 1]) / atr_period
        _wilder_from(tr, atr_period, s, atr_seed, atr)
    d = atr * multiplier
    return {"upper": mid + d, "middle": mid, "lower": mid - d}


def _nan_max3(a, b, c):
    return np.nan if np.isnan([a, b, c]).any() else max(a, b, c)


def _nan_min3(a, b, c):
    return np.nan if np.isnan([a, b, c]).any() else min(a, b, c)


def ref_ha(o, h, lo, c):
    """TA-Lib's loop, with NaN-propagating high and low (TA-Lib's comparisons skip a NaN)."""
    n = len(o)
    out = {k: _nan(n) for k in ("haopen", "hahigh", "halow", "haclose")}
    if n == 0:
        return out
    ho, hc = (o[0] + c[0]) / 2.0, (o[0] + h[0] + lo[0] + c[0]) / 4.0
    for t in range(n):
        if t > 0:
            ho = (ho + hc) / 2.0
            hc = (o[t] + h[t] + lo[t] + c[t]) / 4.0
        out["haopen"][t], out["haclose"][t] = ho, hc
        out["hahigh"][t] = _nan_max3(h[t], ho, hc)
        out["halow"][t] = _nan_min3(lo[t], ho, hc)
    return out


def ref_adr(h, lo, period):
    return ref_sma(h - lo, period)


def _ema_of(x, period):
    out = _nan(len(x))
    if len(x) >= period:
        _ema_from(x, 2.0 / (period + 1), period - 1, _plain_sum(x[:period]) / period, out)
    return out


def ref_cvi(h, lo, period, roc_period):
    e = _ema_of(h - lo, period)
    out = _nan(len(h))
    for t in range(period - 1 + roc_period, len(h)):
        lag = e[t - roc_period]
        out[t] = 100.0 * ((e[t] - lag) / lag) if lag != 0 else 0.0
    return out


def ref_massi(h, lo, fast, slow):
    n = len(h)
    q = 2 * (fast - 1)
    out = _nan(n)
    if n < q + slow:
        return out
    e1 = _ema_of(h - lo, fast)
    e2 = _ema_from(e1, 2.0 / (fast + 1), q, _plain_sum(e1[fast - 1 : q + 1]) / fast, _nan(n))
    ratio = np.array([1.0 if e2[t] == 0 else e1[t] / e2[t] for t in range(n)])
    out[q + slow - 1 :] = _windows(ratio[q:], slow).sum(axis=1)
    return out


def ref_rvi(x, period, std_period):
    """TA-Lib's loop on the population std, except that a NaN change feeds NaN to both legs (a
    NaN has no direction; TA-Lib's comparisons would count it as a tie)."""
    n = len(x)
    s = std_period + period - 2
    out = _nan(n)
    if n <= s:
        return out
    sd = ref_std(x, std_period)

    def up_dn(t):
        d = x[t] - x[t - 1]
        if np.isnan(d):
            return np.nan, np.nan
        return (sd[t] if d > 0 else 0.0), (sd[t] if d < 0 else 0.0)

    legs = [up_dn(t) for t in range(std_period - 1, s + 1)]
    u = _plain_sum([v[0] for v in legs]) / period
    dn = _plain_sum([v[1] for v in legs]) / period
    for t in range(s, n):
        if t > s:
            uv, dv = up_dn(t)
            u = (u * (period - 1) + uv) / period
            dn = (dn * (period - 1) + dv) / period
        out[t] = 50.0 if u + dn == 0 else 100.0 * (u / (u + dn))
    return out


def _transform(f):
    def ref(x):
        with np.errstate(all="ignore"):
            return f(x)

    return ref


def ref_rma(x, period):
    out = _nan(len(x))
    if len(x) < period:
        return out
    prev = _plain_sum(x[:period]) / period
    out[period - 1] = prev
    for t in range(period, len(x)):
        prev = (prev * (period - 1) + x[t]) / period
        out[t] = prev
    return out


def ref_zlema(x, period):
    if period == 1:
        return x.copy()
    lag = (period - 1) // 2
    d = _nan(len(x))
    if len(x) > lag:
        d[lag:] = 2.0 * x[lag:] - x[: len(x) - lag]
    return _ema_seeded_from(d, period, lag)


def _isqrt(n):
    r = int(math.sqrt(n))
    while r * r > n:
        r -= 1
    while (r + 1) * (r + 1) <= n:
        r += 1
    return r


def ref_hma(x, period):
    if period == 1:
        return x.copy()
    d = 2.0 * ref_wma(x, period // 2) - ref_wma(x, period)
    out = _nan(len(x))
    out[period - 1 :] = ref_wma(d[period - 1 :], _isqrt(period))
    return out


def ref_vwma(c, v, period):
    if period == 1:
        return c.copy()
    return ref_sma(c * v, period) / ref_sma(v, period)


_MA_REFS = {
    0: ref_sma, 1: ref_ema, 2: ref_wma, 3: ref_dema, 4: ref_tema, 5: ref_trima, 6: ref_kama,
    8: ref_t3, 9: ref_hma, 10: lambda x, p: x.copy(), 11: ref_sma, 12: ref_zlema, 13: ref_rma,
}  # fmt: skip
_MA_LOOKBACKS = {
    0: lambda p: p - 1, 1: lambda p: p - 1, 2: lambda p: p - 1, 3: lambda p: 2 * (p - 1),
    4: lambda p: 3 * (p - 1), 5: lambda p: p - 1, 6: lambda p: p, 8: lambda p: 6 * (p - 1),
    9: lambda p: p - 1 + _isqrt(p) - 1, 10: lambda p: 0, 11: lambda p: p - 1,
    12: lambda p: (p - 1) // 2 + p - 1, 13: lambda p: p - 1,
}  # fmt: skip


def _code(matype):
    return MA_CODES[matype.lower()] if isinstance(matype, str) else int(matype)


def ref_ma(x, period, matype=0):
    code = _code(matype)
    return x.copy() if period == 1 else _MA_REFS[code](x, period)


def ref_mavp(x, periods, min_period=2, max_period=30, matype=0):
    """TA-Lib's MAVP: from the lookback L of max_period on, each row takes the MA of its period
    (truncated, clamped), computed by TA-Lib from start index L (a recursive MA is seeded from the
    rows ending at L - lookback(q) + q - 1)."""
    code = _code(matype)
    lb = lambda q: 0 if q == 1 else _MA_LOOKBACKS[code](q)
    start = lb(max_period)
    out = _nan(len(x))
    for t in range(start, len(x)):
        v = periods[t]
        q = min_period if np.isnan(v) else int(np.clip(np.trunc(v), min_period, max_period))
        origin = start - lb(q)
        out[t] = ref_ma(x[origin:], q, code)[t - origin]
    return out


# --------------------------------------------------------------------------------------------
# indicator table
# --------------------------------------------------------------------------------------------

# The shared small parameter set, with this file's own rolling_std and bollinger parameters.
NULL_POLICY_PARAMS = {
    **PARAMS,
    "rolling_std": {"period": 6, "ddof": 1},
    "bollinger": {"period": 9, "std_dev": 2.5},
}


@dataclass(frozen=True)
class Ind:
    name: str
    ref: Callable  # (*input arrays, **params) -> array or dict of arrays
    kind: (
        str  # "windowed", "index" (rows of a window's extremum), "recursive", "roc", "elementwise"
    )

    @property
    def inputs(self) -> tuple[str, ...]:
        return INPUTS[self.name]

    @property
    def params(self) -> dict:
        return NULL_POLICY_PARAMS[self.name]

    def expr(self, **params) -> pl.Expr:
        return indicator_expr(self.name, params or self.params)

    def lookback(self, **params) -> int:
        return lookback(self.name, params or self.params)

    def reference(self, arrays: dict, **params) -> dict:
        out = self.ref(*(arrays[c] for c in self.inputs), **(params or self.params))
        return out if isinstance(out, dict) else {"value": out}


INDICATORS = [
    Ind("sma", ref_sma, "windowed"),
    Ind("ema", ref_ema, "recursive"),
    Ind("wma", ref_wma, "windowed"),
    Ind("rolling_std", ref_std, "windowed"),
    Ind("zscore", ref_zscore, "windowed"),
    Ind("bollinger", ref_bollinger, "windowed"),
    Ind("rsi", ref_rsi, "recursive"),
    Ind("roc", ref_roc, "roc"),
    Ind("macd", ref_macd, "recursive"),
    Ind("atr", ref_atr, "recursive"),
    Ind("natr", ref_natr, "recursive"),
    Ind("stoch", ref_stoch, "windowed"),
    Ind("obv", ref_obv, "recursive"),
    Ind("avgprice", ref_avgprice, "elementwise"),
    Ind("medprice", ref_medprice, "elementwise"),
    Ind("typprice", ref_typprice, "elementwise"),
    Ind("wclprice", ref_wclprice, "elementwise"),
    Ind("trange", ref_trange, "elementwise"),
    Ind("add", ref_add, "elementwise"),
    Ind("sub", ref_sub, "elementwise"),
    Ind("mult", ref_mult, "elementwise"),
    Ind("div", ref_div, "elementwise"),
    Ind("beta", ref_beta, "windowed"),
    Ind("correl", ref_correl, "windowed"),
    Ind("linearreg", ref_linearreg, "windowed"),
    Ind("linearreg_angle", ref_linearreg_angle, "windowed"),
    Ind("linearreg_intercept", ref_linearreg_intercept, "windowed"),
    Ind("linearreg_slope", ref_linearreg_slope, "windowed"),
    Ind("tsf", ref_tsf, "windowed"),
    Ind("rolling_var", ref_var, "windowed"),
    Ind("avgdev", ref_avgdev, "windowed"),
    Ind("percentile", ref_percentile, "windowed"),
    Ind("percentrank", ref_percentrank, "windowed"),
    Ind("sum", ref_sum, "windowed"),
    Ind("max", ref_max, "windowed"),
    Ind("min", ref_min, "windowed"),
    Ind("maxindex", ref_maxindex, "index"),
    Ind("minindex", ref_minindex, "index"),
    Ind("minmax", ref_minmax, "windowed"),
    Ind("minmaxindex", ref_minmaxindex, "index"),
    Ind("midpoint", ref_midpoint, "windowed"),
    Ind("midprice", ref_midprice, "windowed"),
    Ind("donchian", ref_donchian, "windowed"),
    Ind("cumsum", ref_cumsum, "recursive"),
    Ind("accbands", ref_accbands, "windowed"),
    Ind("kc", ref_kc, "recursive"),
    Ind("ha", ref_ha, "ha"),
    Ind("adr", ref_adr, "windowed"),
    Ind("cvi", ref_cvi, "recursive"),
    Ind("massi", ref_massi, "recursive"),
    Ind("rvi", ref_rvi, "recursive"),
    Ind("acos", _transform(np.arccos), "elementwise"),
    Ind("asin", _transform(np.arcsin), "elementwise"),
    Ind("atan", _transform(np.arctan), "elementwise"),
    Ind("ceil", _transform(np.ceil), "elementwise"),
    Ind("cos", _transform(np.cos), "elementwise"),
    Ind("cosh", _transform(np.cosh), "elementwise"),
    Ind("exp", _transform(np.exp), "elementwise"),
    Ind("floor", _transform(np.floor), "elementwise"),
    Ind("ln", _transform(np.log), "elementwise"),
    Ind("log10", _transform(np.log10), "elementwise"),
    Ind("sin", _transform(np.sin), "elementwise"),
    Ind("sinh", _transform(np.sinh), "elementwise"),
    Ind("sqrt", _transform(np.sqrt), "elementwise"),
    Ind("tan", _transform(np.tan), "elementwise"),
    Ind("tanh", _transform(np.tanh), "elementwise"),
    Ind("dema", ref_dema, "recursive"),
    Ind("tema", ref_tema, "recursive"),
    Ind("trima", ref_trima, "windowed"),
    Ind("t3", ref_t3, "recursive"),
    Ind("kama", ref_kama, "recursive"),
    Ind("rma", ref_rma, "recursive"),
    Ind("zlema", ref_zlema, "recursive"),
    Ind("hma", ref_hma, "windowed"),
    Ind("vwma", ref_vwma, "windowed"),
    Ind("ma", ref_ma, "windowed"),
    # The periods input picks a row's window: NaN there is a period (the minimum), tested below.
    Ind("mavp", ref_mavp, "mavp"),
]
BY_NAME = {i.name: i for i in INDICATORS}
IDS = [i.name for i in INDICATORS]
MULTI = [i for i in INDICATORS if len(i.inputs) > 1]


def test_every_indicator_has_a_reference():
    """The suites below run over INDICATORS: every catalog entry needs its reference here."""
    assert [i.name for i in INDICATORS] == NAMES


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def field_arrays(s: pl.Series) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{field: (values with nulls as NaN, null mask)}."""
    return {
        k: (v.cast(pl.Float64).to_numpy().astype(np.float64), v.is_null().to_numpy())
        for k, v in fields(s).items()
    }


def scatter_expected(compact: pl.Series, present: np.ndarray, name: str) -> pl.Series:
    """Put the rows of `compact` (indicator `name` on the present rows) back on the rows where
    `present` is True; others null (row outputs renumbered, see helpers.scatter_back)."""
    return scatter_back(compact, present, name)


def assert_matches_reference(got: pl.Series, ref: dict, lookback: int, what: str) -> None:
    """Warm-up null, no other null, same NaN positions as the reference, values close."""
    arrays = field_arrays(got)
    assert list(arrays) == list(ref), what
    for k, (vals, nulls) in arrays.items():
        n = len(vals)
        lb = min(lookback, n)
        assert nulls[:lb].all(), f"{what} {k}: warm-up rows must be null"
        assert not nulls[lb:].any(), f"{what} {k}: unexpected null after the warm-up"
        r = ref[k][lb:]
        v = vals[lb:]
        np.testing.assert_array_equal(
            np.isnan(v), np.isnan(r), err_msg=f"{what} {k}: NaN positions differ"
        )
        ok = ~np.isnan(r)
        np.testing.assert_allclose(v[ok], r[ok], rtol=1e-9, atol=1e-8, err_msg=f"{what} {k}")


def with_nulls(df: pl.DataFrame, col: str, rows) -> pl.DataFrame:
    mask = np.zeros(df.height, dtype=bool)
    mask[np.asarray(rows, dtype=np.int64)] = True
    return null_where(df, col, mask)


def with_nan(df: pl.DataFrame, col: str, row: int) -> pl.DataFrame:
    # Through NumPy: nulls already in `col` come back as NaN (unlike helpers.nan_at).
    vals = df[col].to_numpy().copy()
    vals[row] = np.nan
    return df.with_columns(pl.Series(col, vals))


def arrays_of(df: pl.DataFrame) -> dict[str, np.ndarray]:
    return {c: df[c].cast(pl.Float64).to_numpy() for c in df.columns}


@pytest.fixture(scope="module")
def data() -> pl.DataFrame:
    return ohlcv(600, seed=20240611)


# --------------------------------------------------------------------------------------------
# reference values (no nulls, no NaN)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ind", INDICATORS, ids=IDS)
def test_values_match_naive_reference(ind: Ind, data: pl.DataFrame) -> None:
    got = run(data, ind.expr())
    assert_matches_reference(got, ind.reference(arrays_of(data)), ind.lookback(), ind.name)


def test_hand_computed_values() -> None:
    df = pl.DataFrame({"x": [float(v) for v in range(1, 11)]})
    sma = run(df, threadx.sma("x", 3)).to_list()
    assert sma == [None, None] + [float(v) for v in range(2, 10)]
    wma = run(df, threadx.wma("x", 3)).to_list()  # (1*a + 2*b + 3*c) / 6
    assert wma[2] == pytest.approx((1 + 4 + 9) / 6) and wma[:2] == [None, None]
    up = run(df, threadx.rsi("x", 4)).to_list()
    assert up[:4] == [None] * 4 and all(v == 100.0 for v in up[4:])
    down = run(df.select(-pl.col("x")), threadx.rsi("x", 4)).to_list()
    assert all(v == 0.0 for v in down[4:])
    flat = pl.DataFrame({"x": [5.0] * 8})
    assert run(flat, threadx.rsi("x", 3)).to_list()[3:] == [0.0] * 5
    z = run(flat, threadx.zscore("x", 3)).to_numpy()
    assert np.isnan(z[2:]).all()  # 0/0
    roc = run(pl.DataFrame({"x": [0.0, 1.0, 2.0, 4.0]}), threadx.roc("x", 1)).to_list()
    assert roc == [None, 0.0, 100.0, 100.0]
    obv = pl.DataFrame({"c": [1.0, 2.0, 2.0, 1.0, 3.0], "v": [10.0, 20.0, 30.0, 40.0, 50.0]})
    assert run(obv, threadx.obv("c", "v")).to_list() == [10.0, 30.0, 30.0, -10.0, 40.0]


# --------------------------------------------------------------------------------------------
# nulls: drop, compute, scatter back
# --------------------------------------------------------------------------------------------


def check_null_scatter(df: pl.DataFrame, ind: Ind, params: dict | None = None) -> None:
    params = params or ind.params
    expr = ind.expr(**params)
    got = run(df, expr)
    present = present_mask(df, ind.inputs)
    compact = run(df.filter(pl.Series(present)), expr)
    assert len(got) == df.height
    assert_bits_equal(got, scatter_expected(compact, present, ind.name), f"{ind.name} null scatter")
    # missing rows and the first `lookback` present rows are null, nothing else (no NaN input)
    lb = ind.lookback(**params)
    for k, (vals, nulls) in field_arrays(got).items():
        expect_null = ~present
        first = np.flatnonzero(present)[:lb]
        expect_null[first] = True
        np.testing.assert_array_equal(nulls, expect_null, err_msg=f"{ind.name} {k}")


@pytest.mark.parametrize("ind", INDICATORS, ids=IDS)
def test_random_nulls_in_first_input(ind: Ind, data: pl.DataFrame) -> None:
    rng = np.random.default_rng(7)
    rows = rng.choice(data.height, size=90, replace=False)
    df = with_nulls(data, ind.inputs[0], rows)
    check_null_scatter(df, ind)
    # the compacted values are also the naive reference on the compacted series
    present = present_mask(df, ind.inputs)
    compact_df = df.filter(pl.Series(present))
    assert_matches_reference(
        run(compact_df, ind.expr()),
        ind.reference(arrays_of(compact_df)),
        ind.lookback(),
        ind.name,
    )


@pytest.mark.parametrize("ind", MULTI, ids=[i.name for i in MULTI])
def test_random_nulls_in_every_input(ind: Ind, data: pl.DataFrame) -> None:
    rng = np.random.default_rng(11)
    df = data
    for j, col in enumerate(ind.inputs):
        df = with_nulls(df, col, rng.choice(data.height, size=40 + 10 * j, replace=False))
    present = present_mask(df, ind.inputs)
    assert (~present).sum() > 80  # the nulls are mostly in different rows
    check_null_scatter(df, ind)


@pytest.mark.parametrize("ind", MULTI, ids=[i.name for i in MULTI])
@pytest.mark.parametrize("which", [1, -1])
def test_null_in_one_secondary_input_makes_row_missing(ind: Ind, which: int) -> None:
    df = ohlcv(80, seed=3)
    col = ind.inputs[which]
    df = with_nulls(df, col, [20, 21, 50])
    got = field_arrays(run(df, ind.expr()))
    for k, (_, nulls) in got.items():
        assert nulls[[20, 21, 50]].all(), f"{ind.name}.{k}: null {col} must give null"
    check_null_scatter(df, ind)


@pytest.mark.parametrize("ind", INDICATORS, ids=IDS)
def test_warmup_counts_non_null_rows(ind: Ind) -> None:
    """Nulls interleaved with the first rows: the warm-up ends after `lookback` present rows."""
    df = ohlcv(120, seed=5)
    rows = list(range(0, 60, 2))  # every other row of the first 60 is missing
    df = with_nulls(df, ind.inputs[-1], rows)
    got = field_arrays(run(df, ind.expr()))
    present_rows = np.flatnonzero(present_mask(df, ind.inputs))
    lb = ind.lookback()
    for k, (_, nulls) in got.items():
        assert nulls[present_rows[:lb]].all(), f"{ind.name}.{k}"
        assert not nulls[present_rows[lb:]].any(), f"{ind.name}.{k}"
        assert nulls[rows].all(), f"{ind.name}.{k}"
        assert nulls.sum() == len(rows) + lb


@pytest.mark.parametrize("ind", INDICATORS, ids=IDS)
def test_all_null_and_mostly_null_inputs(ind: Ind) -> None:
    df = ohlcv(50, seed=9)
    all_null = with_nulls(df, ind.inputs[0], range(50))
    for k, (_, nulls) in field_arrays(run(all_null, ind.expr())).items():
        assert nulls.all() and len(nulls) == 50, f"{ind.name}.{k}"
    # fewer present rows than the warm-up: every row null; exactly lookback + 1 present: one value
    lb = ind.lookback()
    for present_count, expected_values in ((lb, 0), (lb + 1, 1)):
        keep = np.linspace(0, 49, num=present_count, dtype=np.int64) if present_count else []
        missing = np.setdiff1d(np.arange(50), keep)
        df2 = with_nulls(df, ind.inputs[0], missing)
        for k, (_, nulls) in field_arrays(run(df2, ind.expr())).items():
            assert (~nulls).sum() == expected_values, f"{ind.name}.{k} with {present_count}"
            if expected_values:
                assert not nulls[keep[-1]]


def test_index_outputs_are_rows_of_the_input_column() -> None:
    """MAXINDEX skips nulls like every indicator, and its values are rows of the column the user
    passed (TA-Lib on the non-null rows, renumbered), Int32, with TA-Lib's choice among ties."""
    import talib

    x = [1.0, None, 5.0, 5.0, None, 5.0, 5.0, 5.0, 9.0, 1.0]
    df = pl.DataFrame({"x": x})
    got = run(df, threadx.maxindex("x", 3))
    assert got.dtype == pl.Int32
    assert got.to_list() == [None, None, None, 2, None, 5, 6, 7, 8, 8]
    rows = np.array([i for i, v in enumerate(x) if v is not None])
    ta = talib.MAXINDEX(np.array([v for v in x if v is not None]), 3)
    assert [v for v in got.to_list() if v is not None] == rows[ta[2:]].tolist()
    both = run(df, threadx.minmaxindex("x", 3))
    assert both.struct.field("maxidx").to_list() == got.to_list()
    assert both.struct.field("minidx").to_list() == [None, None, None, 0, None, 2, 3, 5, 6, 9]


def test_null_and_nan_are_different() -> None:
    """A null is skipped, a NaN is a value: sma over [1, null, 3, 5] vs [1, NaN, 3, 5]."""
    null_df = pl.DataFrame({"x": [1.0, None, 3.0, 5.0]})
    nan_df = pl.DataFrame({"x": [1.0, float("nan"), 3.0, 5.0]})
    assert run(null_df, threadx.sma("x", 2)).to_list() == [None, None, 2.0, 4.0]
    got = run(nan_df, threadx.sma("x", 2)).to_list()
    assert got[0] is None and math.isnan(got[1]) and math.isnan(got[2]) and got[3] == 4.0


# --------------------------------------------------------------------------------------------
# NaN
# --------------------------------------------------------------------------------------------

WINDOWED = [i for i in INDICATORS if i.kind == "windowed"]
RECURSIVE = [i for i in INDICATORS if i.kind == "recursive"]


#: (indicator, output field) -> the inputs it reads, where not every input reaches every field.
_FIELD_INPUTS = {
    ("accbands", "middle"): ("close",),
    ("accbands", "upper"): ("high", "low"),
    ("accbands", "lower"): ("high", "low"),
    ("donchian", "upper"): ("high",),
    ("donchian", "lower"): ("low",),
}


def _nan_span(ind: Ind, col: str, field: str) -> int:
    """Rows after a NaN in input `col` whose windows (behind output `field`) still hold it; -1
    when the field does not read `col` at all."""
    if col not in _FIELD_INPUTS.get((ind.name, field), ind.inputs):
        return -1
    if ind.name != "stoch":
        return ind.lookback()
    p = ind.params
    fk = 1 if col == "close" else p["fastk_period"]  # close enters only the current fastk
    span = fk - 1 + p["slowk_period"] - 1
    return span + (p["slowd_period"] - 1 if field == "slowd" else 0)


@pytest.mark.parametrize("ind", WINDOWED, ids=[i.name for i in WINDOWED])
@pytest.mark.parametrize("row", [137, 180, 5])  # 180: the first row of a block for every period
def test_windowed_nan_only_in_windows_holding_it(ind: Ind, row: int, data: pl.DataFrame) -> None:
    clean = arrays_of(data)
    lb = ind.lookback()
    for col in ind.inputs:
        got = field_arrays(run(with_nan(data, col, row), ind.expr()))
        ref = ind.reference(clean)  # the NaN-free values
        for k, (vals, nulls) in got.items():
            span = _nan_span(ind, col, k)
            assert nulls[:lb].all() and not nulls[lb:].any()
            t = np.arange(len(vals))
            holds = (t >= row) & (t <= row + span) & (t >= lb)
            np.testing.assert_array_equal(
                np.isnan(vals) & ~nulls, holds, err_msg=f"{ind.name}.{k} NaN in {col}@{row}"
            )
            unaffected = ~holds & ~nulls
            np.testing.assert_allclose(
                vals[unaffected], ref[k][unaffected], rtol=1e-9, atol=1e-8, err_msg=ind.name
            )


INDEX = [i for i in INDICATORS if i.kind == "index"]


@pytest.mark.parametrize("ind", INDEX, ids=[i.name for i in INDEX])
@pytest.mark.parametrize("row", [137, 180, 5])
def test_index_of_a_window_holding_nan_is_the_nan_row(
    ind: Ind, row: int, data: pl.DataFrame
) -> None:
    """MAX gives NaN for the windows holding a NaN, so MAXINDEX gives the NaN's row there (an
    Int32 has no NaN); every other row is the NaN-free answer."""
    clean = arrays_of(data)
    lb = ind.lookback()
    got = field_arrays(run(with_nan(data, ind.inputs[0], row), ind.expr()))
    ref = ind.reference(clean)
    for k, (vals, nulls) in got.items():
        assert nulls[:lb].all() and not nulls[lb:].any()
        t = np.arange(len(vals))
        holds = (t >= row) & (t <= row + lb) & (t >= lb)
        assert (vals[holds] == row).all(), f"{ind.name}.{k} NaN@{row}"
        # Rows after the NaN left the window: TA-Lib's loop rescans where it would have kept a
        # tied row, so only the rows before the NaN are compared with the NaN-free run.
        before = ~holds & ~nulls & (t < row)
        np.testing.assert_array_equal(vals[before], ref[k][before], err_msg=ind.name)


def _first_poisoned(ind: Ind, col: str, row: int) -> int:
    """First output row a NaN at `row` of `col` reaches (the seed window is poisoned whole)."""
    if ind.name in ("atr", "natr") and col == "close":
        # close[t] enters tr[t+1]; natr also divides by close[t]
        return row if ind.name == "natr" else row + 1
    return row


@pytest.mark.parametrize("ind", RECURSIVE, ids=[i.name for i in RECURSIVE])
@pytest.mark.parametrize("row", [3, 250, 1])
def test_recursive_nan_poisons_every_later_row(ind: Ind, row: int, data: pl.DataFrame) -> None:
    clean = run(data, ind.expr())
    lb = ind.lookback()
    cols = ("volume",) if ind.name == "obv" else ind.inputs  # obv close: dedicated test below
    for col in cols:
        got = run(with_nan(data, col, row), ind.expr())
        first = max(_first_poisoned(ind, col, row), lb)
        for (k, (vals, nulls)), (_, (cvals, _)) in zip(
            field_arrays(got).items(), field_arrays(clean).items()
        ):
            assert nulls[:lb].all() and not nulls[lb:].any()
            assert np.isnan(vals[first:]).all(), f"{ind.name}.{k}: NaN in {col}@{row}"
            # earlier rows do not depend on the NaN: identical to the NaN-free run
            before = slice(lb, first)
            np.testing.assert_array_equal(
                vals[before].view(np.uint64), cvals[before].view(np.uint64), err_msg=ind.name
            )


def test_obv_nan_close_poisons_every_later_row(data: pl.DataFrame) -> None:
    """obv is recursive: a NaN close reaches every later row like a NaN volume does (the TA-Lib
    loop would compare false both ways and silently count the NaN bar as "unchanged")."""
    clean = run(data, threadx.obv("close", "volume")).to_numpy()
    vals = run(with_nan(data, "close", 250), threadx.obv("close", "volume")).to_numpy()
    np.testing.assert_array_equal(vals[:250].view(np.uint64), clean[:250].view(np.uint64))
    assert np.isnan(vals[250:]).all(), f"rows 250.. hold {vals[250:253]} ..."


@pytest.mark.parametrize("row", [2, 300])
def test_roc_nan_reaches_only_t_and_t_plus_n(row: int, data: pl.DataFrame) -> None:
    ind = BY_NAME["roc"]
    n = ind.params["period"]
    clean = run(data, ind.expr()).to_numpy()
    vals = run(with_nan(data, "close", row), ind.expr()).to_numpy()
    expect = np.zeros(len(vals), dtype=bool)
    expect[[r for r in (row, row + n) if r >= n]] = True
    got_nan = np.isnan(vals)
    got_nan[:n] = False  # warm-up (null)
    np.testing.assert_array_equal(got_nan, expect)
    keep = ~expect
    keep[:n] = False
    np.testing.assert_array_equal(vals[keep].view(np.uint64), clean[keep].view(np.uint64))


ELEMENTWISE = [i for i in INDICATORS if i.kind == "elementwise"]


@pytest.mark.parametrize("ind", ELEMENTWISE, ids=[i.name for i in ELEMENTWISE])
@pytest.mark.parametrize("row", [1, 137, 599])
def test_elementwise_nan_reaches_only_the_rows_reading_it(
    ind: Ind, row: int, data: pl.DataFrame
) -> None:
    """A NaN in an input reaches exactly the rows whose map reads it: row t for every input,
    except TRANGE's close, which enters row t + 1 only (as the previous close). Rows that are NaN
    without it stay NaN (acos and asin of prices are out of their domain)."""
    clean = run(data, ind.expr()).to_numpy()
    lb = ind.lookback()
    for col in ind.inputs:
        got = run(with_nan(data, col, row), ind.expr())
        assert got.null_count() == lb
        vals = got.to_numpy()
        hit = row + 1 if (ind.name == "trange" and col == ind.inputs[-1]) else row
        expect = np.isnan(clean)
        if lb <= hit < len(vals):
            expect[hit] = True
        expect[:lb] = False
        got_nan = np.isnan(vals)
        got_nan[:lb] = False
        np.testing.assert_array_equal(got_nan, expect, err_msg=f"{ind.name}: NaN in {col}@{row}")
        keep = ~expect
        keep[:lb] = False
        np.testing.assert_array_equal(
            vals[keep].view(np.uint64), clean[keep].view(np.uint64), err_msg=ind.name
        )


@pytest.mark.parametrize("row", [0, 1, 137, 599])
def test_ha_nan_reaches_its_candle_and_every_later_open(row: int, data: pl.DataFrame) -> None:
    """HA: a NaN in any price makes that row's close NaN; the open (a scan over the previous
    closes) is NaN from the next row on (from row 0 when it is in the seed's open or close); high
    and low take the open and the close, so they are NaN from the NaN's row on."""
    ind = BY_NAME["ha"]
    clean = field_arrays(run(data, ind.expr()))
    for col in ind.inputs:
        got = field_arrays(run(with_nan(data, col, row), ind.expr()))
        n = data.height
        t = np.arange(n)
        seeded = row == 0 and col in ("open", "close")
        expect = {
            "haclose": t == row,
            "haopen": t >= (row if seeded else row + 1),
            "hahigh": t >= row,
            "halow": t >= row,
        }
        for k, (vals, nulls) in got.items():
            assert not nulls.any()
            np.testing.assert_array_equal(
                np.isnan(vals), expect[k], err_msg=f"ha.{k}: NaN in {col}@{row}"
            )
            keep = ~expect[k]
            np.testing.assert_array_equal(
                vals[keep].view(np.uint64), clean[k][0][keep].view(np.uint64), err_msg=f"ha.{k}"
            )


@pytest.mark.parametrize("ind", INDICATORS, ids=IDS)
def test_nan_and_nulls_together_match_reference(ind: Ind, data: pl.DataFrame) -> None:
    rng = np.random.default_rng(13)
    df = data
    for col in ind.inputs:
        df = with_nulls(df, col, rng.choice(df.height, size=30, replace=False))
    df = with_nan(df, ind.inputs[0], 400)
    check_nan = run(df, ind.expr())
    present = present_mask(df, ind.inputs)
    compact_df = df.filter(pl.Series(present))
    compact = run(compact_df, ind.expr())
    assert_bits_equal(check_nan, scatter_expected(compact, present, ind.name), ind.name)
    assert_matches_reference(
        run(compact_df, ind.expr()), ind.reference(arrays_of(compact_df)), ind.lookback(), ind.name
    )


# --------------------------------------------------------------------------------------------
# property test
# --------------------------------------------------------------------------------------------

# small integers (exact sums, many ties and flat windows), missing values and NaN
_value = st.one_of(
    st.integers(0, 40).map(float),
    st.sampled_from([1.0, 2.0, 3.0]),
    st.just(None),
    st.just(float("nan")),
)


@st.composite
def _case(draw, ind: Ind):
    n = draw(st.integers(0, 45))
    name = ind.name
    if name in ("sma", "ema", "wma", "zscore", "rsi"):
        params = {"period": draw(st.integers(2, 8))}
    elif name == "rolling_std":
        p = draw(st.integers(2, 8))
        params = {"period": p, "ddof": draw(st.integers(0, p - 1))}
    elif name == "bollinger":
        params = {
            "period": draw(st.integers(2, 8)),
            "std_dev": draw(st.sampled_from([0.0, 0.5, 2.0, 3.25])),
        }
    elif name in (
        "sum",
        "max",
        "min",
        "maxindex",
        "minindex",
        "minmax",
        "minmaxindex",
        "midpoint",
        "midprice",
        "donchian",
    ):
        params = {"period": draw(st.integers(2, 8))}
    elif name in ("roc", "atr", "natr"):
        params = {"period": draw(st.integers(1, 8))}
    elif name == "macd":
        fast = draw(st.integers(2, 5))
        params = {
            "fast": fast,
            "slow": draw(st.integers(fast + 1, 9)),
            "signal": draw(st.integers(1, 5)),
        }
    elif name == "stoch":
        params = {
            "fastk_period": draw(st.integers(1, 5)),
            "slowk_period": draw(st.integers(1, 4)),
            "slowd_period": draw(st.integers(1, 4)),
        }
    else:
        params = {}
    cols = {c: draw(st.lists(_value, min_size=n, max_size=n)) for c in ind.inputs}
    return params, cols


@pytest.mark.parametrize("ind", INDICATORS, ids=IDS)
# No shrink phase: shrinking a failure here takes ~40 s (every step runs Polars twice); the
# failing example (at most 45 rows) is small enough to read as is.
@settings(
    max_examples=40,
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
def test_property_nulls_scatter_and_reference(ind: Ind, data) -> None:
    params, cols = data.draw(_case(ind))
    df = pl.DataFrame(cols, schema={c: pl.Float64 for c in cols})
    expr = ind.expr(**params)
    got = run(df, expr)
    assert len(got) == df.height
    present = present_mask(df, ind.inputs)
    compact_df = df.filter(pl.Series(present, dtype=pl.Boolean))
    compact = run(compact_df, expr)
    assert_bits_equal(got, scatter_expected(compact, present, ind.name), ind.name)
    with np.errstate(all="ignore"):
        ref = ind.reference(arrays_of(compact_df), **params)
    assert_matches_reference(compact, ref, ind.lookback(**params), f"{ind.name}{params}")


# --------------------------------------------------------------------------------------------
# MAVP: the periods input chooses each row's window
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("matype", [0, "ema", "kama", "hma", "trima"])
def test_mavp_varied_periods_nan_and_nulls(matype) -> None:
    """Periods spread over the whole [min, max] range (the catalog-wide suites see the volumes,
    which clamp to max_period): values against the reference, a NaN period (the minimum
    period), a NaN price (NaN exactly in the rows whose window holds it), and nulls in either
    input (skipped rows)."""
    df = ohlcv(500, seed=21)
    rng = np.random.default_rng(3)
    periods = rng.uniform(-3.0, 28.0, df.height)
    periods[[40, 41, 300]] = np.nan
    df = df.with_columns(pl.Series("p", periods))
    params = {"min_period": 2, "max_period": 24, "matype": matype}
    expr = threadx.mavp("close", "p", **params)
    lb = threadx.lookback("mavp", **params)
    got = run(df, expr).to_numpy()
    want = ref_mavp(df["close"].to_numpy(), periods, **params)
    assert np.isnan(got[:lb]).all()  # nulls
    np.testing.assert_allclose(got[lb:], want[lb:], rtol=1e-9, atol=1e-8)
    # NaN price at row r: NaN exactly where the row's own window reaches back to r (windowed
    # types; recursive ones seed every period at the lookback and are poisoned from r on).
    r = 350
    vals = run(with_nan(df, "close", r), expr).to_numpy()
    ref = ref_mavp(arrays_of(with_nan(df, "close", r))["close"], periods, **params)
    np.testing.assert_array_equal(np.isnan(vals[lb:]), np.isnan(ref[lb:]))
    assert np.isnan(vals[r]) and not np.isnan(vals[r - 1])
    # nulls in either input: the rows are skipped
    for col in ("close", "p"):
        nulls = with_nulls(df, col, rng.choice(df.height, size=60, replace=False))
        present = present_mask(nulls, ["close", "p"])
        compact = run(nulls.filter(pl.Series(present)), expr)
        assert_bits_equal(
            run(nulls, expr), scatter_expected(compact, present, "mavp"), "mavp nulls"
        )
