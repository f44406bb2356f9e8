"""threadx ``rolling_std`` and ``bollinger`` against an exact rational reference.

Every float is a dyadic rational, so ``fractions.Fraction(x)`` is exact. For each window the sums
``S1 = sum(x)`` and ``S2 = sum(x**2)`` are kept exactly, incrementally (add the entering value,
subtract the leaving one), and give the exact window mean ``S1 / w`` and the exact variance
``(S2 - S1**2 / w) / (w - ddof)``.

Rounding to float:

* the mean is a Fraction, and ``float(Fraction)`` is correctly rounded (CPython's int / int true
  division);
* a square root is bracketed with an integer square root of the scaled Fraction: with
  ``v = p / q`` and ``s = isqrt(p * 4**k // q)``, ``s / 2**k <= sqrt(v) < (s + 1) / 2**k``. Rounding
  to nearest is monotone, so when both ends of the bracket (or of ``mean ± 2 * bracket`` for the
  bands) round to the same float, that float is the correctly rounded exact value; otherwise ``k``
  grows by 64 bits and we try again. (The first ``k`` already gives ~64 bits beyond double
  precision, so a retry is rare.)

Each threadx output is compared with the correctly rounded exact value; the maximum relative
error must be <= 1e-14 (about 45 ulps) on three hard data sets:

* ``offset_1e6``: ``1e6 + 0.01 * normal`` -- the variance is ~1e-16 of the squared level, so any
  method that subtracts raw running sums (``E[x^2] - E[x]^2``) loses almost every digit;
* ``tiny_1e-7``: a random walk scaled to ~1e-7 (squares ~1e-14, far from underflow but far from 1);
* ``walk_100``: a plain random walk around 100.

For context only (nothing is asserted about peers): on such data TA-Lib's STDDEV reaches relative
errors of ~2.8e-12 on a random walk, and Polars' ``rolling_std`` ~5.8e-9 on the offset data (both
of that order here as well); the test prints these comparators (run with ``-s``) next to threadx's
own error.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import polars as pl
import pytest
import threadx
from helpers import assert_bits_equal

N_ROWS = 5_000
WINDOWS = [20, 7]
STD_DEV = 2.0
RTOL = 1e-14


def _dataset(name: str) -> np.ndarray:
    if name == "offset_1e6":
        rng = np.random.default_rng(101)
        return 1e6 + 0.01 * rng.standard_normal(N_ROWS)
    if name == "tiny_1e-7":
        rng = np.random.default_rng(202)
        return (100.0 + np.cumsum(rng.normal(0.0, 0.2, N_ROWS))) * 1e-9
    if name == "walk_100":
        rng = np.random.default_rng(303)
        return 100.0 + np.cumsum(rng.normal(0.0, 0.2, N_ROWS))
    raise KeyError(name)  # pragma: no cover - test-definition error


DATASETS = ["offset_1e6", "tiny_1e-7", "walk_100"]


# --------------------------------------------------------------------------------------------
# Exact reference
# --------------------------------------------------------------------------------------------


def _sqrt_bracket(v: Fraction, k: int) -> tuple[Fraction, Fraction]:
    """``lo <= sqrt(v) <= hi`` with ``hi - lo <= 2**-k`` (``lo == hi`` when the root is exact)."""
    scaled = v.numerator * 4**k
    n = scaled // v.denominator
    s = math.isqrt(n)
    lo = Fraction(s, 2**k)
    if s * s == n and scaled % v.denominator == 0:
        return lo, lo
    return lo, Fraction(s + 1, 2**k)


def _round_sqrt_expr(v: Fraction, a: Fraction, b: int) -> float:
    """Correctly rounded float of ``a + b * sqrt(v)`` (``v >= 0``, ``b`` an integer)."""
    if v == 0:
        return float(a)
    # Start with ~64 bits below the leading bit of sqrt(v) (and of a, when a dominates).
    mag = (v.numerator.bit_length() - v.denominator.bit_length()) // 2
    mag_a = (a.numerator.bit_length() - a.denominator.bit_length()) if a else mag
    k = max(64 - mag, 64 - mag_a, 1)
    while True:
        lo, hi = _sqrt_bracket(v, k)
        x, y = float(a + b * lo), float(a + b * hi)
        if x == y:
            return x
        k += 64


def exact_reference(x: np.ndarray, w: int) -> dict[str, np.ndarray]:
    """Correctly rounded exact rolling std (ddof 0 and 1) and Bollinger bands (k = 2)."""
    fx = [Fraction(float(v)) for v in x]
    n = len(fx)
    out = {
        name: np.full(n, np.nan) for name in ("std0", "std1", "middle", "upper", "lower", "mean")
    }
    s1 = sum(fx[:w], Fraction(0))
    s2 = sum((v * v for v in fx[:w]), Fraction(0))
    for t in range(w - 1, n):
        if t >= w:
            new, old = fx[t], fx[t - w]
            s1 += new - old
            s2 += new * new - old * old
        mean = s1 / w
        m2 = s2 - s1 * s1 / w  # exact sum of squared deviations, >= 0
        assert m2 >= 0
        var0 = m2 / w
        var1 = m2 / (w - 1)
        zero = Fraction(0)
        out["mean"][t] = float(mean)
        out["middle"][t] = float(mean)
        out["std0"][t] = _round_sqrt_expr(var0, zero, 1)
        out["std1"][t] = _round_sqrt_expr(var1, zero, 1)
        out["upper"][t] = _round_sqrt_expr(var0, mean, 2)  # mean + 2 * sigma
        out["lower"][t] = _round_sqrt_expr(var0, mean, -2)  # mean - 2 * sigma
    return out


_REFERENCE: dict[tuple[str, int], dict[str, np.ndarray]] = {}


def _reference(name: str, w: int) -> dict[str, np.ndarray]:
    key = (name, w)
    if key not in _REFERENCE:
        _REFERENCE[key] = exact_reference(_dataset(name), w)
    return _REFERENCE[key]


def _threadx(x: np.ndarray, w: int) -> pl.DataFrame:
    df = pl.DataFrame({"x": x})
    return df.select(
        threadx.rolling_std("x", w, ddof=0).alias("std0"),
        threadx.rolling_std("x", w, ddof=1).alias("std1"),
        threadx.sma("x", w).alias("sma"),
        threadx.bollinger("x", w, STD_DEV).alias("bb"),
    ).unnest("bb")


def _max_rel(got: np.ndarray, want: np.ndarray) -> float:
    assert not np.isnan(got).any() and not np.isnan(want).any()
    assert np.all(want != 0.0)  # no exactly-zero expected value on these data sets
    rel = np.abs(got - want) / np.abs(want)
    return float(rel.max())


# --------------------------------------------------------------------------------------------
# Self-checks of the reference itself (so a broken reference cannot pass silently)
# --------------------------------------------------------------------------------------------


def test_reference_sqrt_rounding() -> None:
    for v in [2.0, 1e-14, 1e6, 0.01, 123456.789, 2.0**-1000, 4.0, 0.25]:
        assert _round_sqrt_expr(Fraction(v), Fraction(0), 1) == math.sqrt(v)  # IEEE sqrt is exact
    assert _round_sqrt_expr(Fraction(0), Fraction(5), 2) == 5.0
    # 1 + 2*sqrt(2) computed with Decimal at 50 digits.
    from decimal import Decimal, getcontext

    getcontext().prec = 50
    want = float(Decimal(1) + 2 * Decimal(2).sqrt())
    assert _round_sqrt_expr(Fraction(2), Fraction(1), 2) == want
    assert _round_sqrt_expr(Fraction(2), Fraction(1), -2) == float(
        Decimal(1) - 2 * Decimal(2).sqrt()
    )


def test_reference_against_numpy_two_pass() -> None:
    x = _dataset("walk_100")[:200]
    ref = exact_reference(x, 7)
    win = np.lib.stride_tricks.sliding_window_view(x, 7)
    assert np.allclose(ref["std0"][6:], win.std(axis=1, ddof=0), rtol=1e-12, atol=0)
    assert np.allclose(ref["std1"][6:], win.std(axis=1, ddof=1), rtol=1e-12, atol=0)
    assert np.allclose(ref["middle"][6:], win.mean(axis=1), rtol=1e-14, atol=0)


# --------------------------------------------------------------------------------------------
# threadx against the exact reference
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("w", WINDOWS)
@pytest.mark.parametrize("name", DATASETS)
def test_exact_rolling_std_and_bollinger(name: str, w: int) -> None:
    x = _dataset(name)
    ref = _reference(name, w)
    out = _threadx(x, w)
    errors = {}
    for col, key in [
        ("std0", "std0"),
        ("std1", "std1"),
        ("middle", "middle"),
        ("upper", "upper"),
        ("lower", "lower"),
    ]:
        series = out.get_column(col)
        assert series.dtype == pl.Float64
        # warm-up: exactly w - 1 leading nulls, no other null
        assert series.null_count() == w - 1, col
        assert series.head(w - 1).is_null().all(), col
        got = series.to_numpy()[w - 1 :]
        errors[col] = _max_rel(got, ref[key][w - 1 :])

    # Non-asserting context: peers on the same data (population std).
    peers = {}
    try:
        import talib

        peers["talib.STDDEV"] = _max_rel(talib.STDDEV(x, w, 1.0)[w - 1 :], ref["std0"][w - 1 :])
    except ImportError:  # pragma: no cover - optional peer
        pass
    polars_std = pl.Series(x).rolling_std(window_size=w, ddof=0).to_numpy()[w - 1 :]
    peers["polars.rolling_std"] = _max_rel(polars_std, ref["std0"][w - 1 :])
    print(
        f"\n[exact] {name:<10} w={w:<2} threadx max rel err: "
        + ", ".join(f"{k}={v:.3g}" for k, v in errors.items())
        + " | peers (std ddof=0, not asserted): "
        + ", ".join(f"{k}={v:.3g}" for k, v in peers.items())
    )
    for col, err in errors.items():
        assert err <= RTOL, f"{name} w={w} {col}: max relative error {err:.3g} > {RTOL}"


@pytest.mark.parametrize("w", WINDOWS)
@pytest.mark.parametrize("name", DATASETS)
def test_bollinger_middle_is_sma_bit_for_bit(name: str, w: int) -> None:
    out = _threadx(_dataset(name), w)
    assert_bits_equal(out.get_column("middle"), out.get_column("sma"), f"{name} w={w}")


def _flat_series() -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Runs of identical (mostly non-dyadic) values embedded in varied data; returns the series
    and the [start, stop) row range of each run."""
    rng = np.random.default_rng(404)
    pieces: list[np.ndarray] = []
    runs: list[tuple[int, int]] = []
    pos = 0

    def add(arr: np.ndarray, run: bool = False) -> None:
        nonlocal pos
        pieces.append(np.asarray(arr, dtype=np.float64))
        if run:
            runs.append((pos, pos + len(arr)))
        pos += len(arr)

    add(1e6 + 0.01 * rng.standard_normal(37))
    add(np.full(61, 1e6 + 0.01), run=True)  # at the level of its neighbours
    add(100.0 + rng.standard_normal(23))
    add(np.full(45, 0.1), run=True)  # after prices ~100: block references far away
    add(1e-7 * (1.0 + rng.random(29)))
    add(np.full(50, 3.3e-7), run=True)
    add(1e6 + rng.standard_normal(31))
    add(np.full(44, 100.07), run=True)  # after prices ~1e6
    add(np.full(40, -2.5), run=True)  # right after another run, negative
    add(rng.standard_normal(17))
    return np.concatenate(pieces), runs


@pytest.mark.parametrize("w", [2, 7, 20])
def test_identical_values_give_exactly_zero_std(w: int) -> None:
    x, runs = _flat_series()
    out = _threadx(x, w)
    std0 = out.get_column("std0").to_numpy()
    std1 = out.get_column("std1").to_numpy()
    upper = out.get_column("upper").to_numpy()
    lower = out.get_column("lower").to_numpy()
    checked = 0
    for start, stop in runs:
        for t in range(start + w - 1, stop):  # windows lying entirely inside the run
            assert std0[t] == 0.0, (w, t, std0[t])
            assert std1[t] == 0.0, (w, t, std1[t])
            assert upper[t] == lower[t], (w, t, upper[t], lower[t])
            checked += 1
    assert checked > 0
    # and a whole column of one value: std is 0.0 everywhere after the warm-up
    flat = _threadx(np.full(500, 0.3), w)
    assert (flat.get_column("std0").drop_nulls() == 0.0).all()
    assert (flat.get_column("std1").drop_nulls() == 0.0).all()
    assert (flat.get_column("middle").drop_nulls() == 0.3).all()


# --------------------------------------------------------------------------------------------
# Cancellation: the accuracy guarantee is relative to the inputs' scale (README, "Accuracy")
# --------------------------------------------------------------------------------------------

EPS = 2.0**-52


def _alternating(n: int, seed: int) -> np.ndarray:
    """±1e6 alternating plus 0.01 noise: window means near zero, inputs near 1e6."""
    rng = np.random.default_rng(seed)
    return np.where(np.arange(n) % 2 == 0, 1e6, -1e6) + 0.01 * rng.standard_normal(n)


@pytest.mark.parametrize("w", [20, 7, 101])
def test_mean_error_is_bounded_by_the_inputs_scale(w: int) -> None:
    """The documented guarantee: |sma - exact mean| <= w·ε·max|x over the window| (and the same
    bits in bollinger's middle). The result itself is near 0, so its *relative* error can be large:
    that is what the guarantee does not promise."""
    x = _alternating(3_000, w)
    exact = exact_reference(x, w)["mean"][w - 1 :]
    got = _threadx(x, w).get_column("sma").to_numpy()[w - 1 :]
    scale = np.lib.stride_tricks.sliding_window_view(np.abs(x), w).max(axis=1)
    ulps = np.abs(got - exact) / (scale * EPS)
    print(f"\n[cancellation] w={w}: max error {ulps.max():.2f} ε·max|x| (bound {w})")
    assert np.all(ulps <= w), (w, float(ulps.max()))
