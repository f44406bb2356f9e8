"""Hypothesis fuzz suite over every indicator in the catalog.

Two properties per indicator, both driven by the registry (``threadx.catalog()``), so a new
indicator is fuzzed without editing this file:

* parameters drawn at, inside and past their declared bounds (ints below the minimum and above
  the maximum, huge ints, floats, bools, NaN, infinities): inside gives a result, outside a
  ValueError naming ``threadx.<name>`` and the parameter, at expression build;
* data of 0..300 rows in every input dtype (Float64, Float32, Int64, Int32, UInt8, Decimal, the
  Null dtype) holding normal prices, 0, ±0.0, NaN, ±inf, subnormals, ±1e308 and nulls anywhere
  (all-null columns too), sometimes in several chunks: never a panic, either a ComputeError naming
  the indicator or a result of the input's length, Float64 (or the declared Struct of Float64),
  null exactly on the missing rows and the first ``lookback`` present rows, equal bit for bit to
  the indicator on the ``drop_nulls`` compacted rows scattered back, and, for a non-Float64 input,
  to the indicator on the input cast to Float64.

Sized (``max_examples``, a total spread over the catalog) to run in about two minutes on a
2-core CI machine; derandomized so CI sees the same examples every run (``THREADX_FUZZ_RANDOM=1``
draws fresh ones, ``THREADX_FUZZ_SCALE=k`` runs k times as many). No shrink phase: every step runs Polars several times, and a failing
example (at most 300 rows) is printed as is.
"""

from __future__ import annotations

import math
import os
from decimal import Decimal

import numpy as np
import polars as pl
import pytest
import threadx
from helpers import (
    CATALOG,
    FIELD_DTYPES,
    INPUTS,
    NAMES,
    NS_INPUTS,
    fields,
    lookback,
    result_dtype,
    run,
    scatter_back,
)
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from polars.exceptions import ComputeError

# --------------------------------------------------------------------------------------------
# the catalog's parameter declarations
# --------------------------------------------------------------------------------------------

_ROWS = {r["name"]: r for r in CATALOG.iter_rows(named=True)}
#: name -> [{name, kind, default, min, max (None: unbounded), below, ...}]
PARAM_DECLS: dict[str, list[dict]] = {n: r["params"] for n, r in _ROWS.items()}

# Rules between parameters that the registry checks itself (not declared as `below`):
# name -> (rule, the parameters its message names).
CROSS_RULES = {
    "macd": (lambda p: p["fast"] < p["slow"], ("fast", "slow")),
    "mavp": (lambda p: p["min_period"] <= p["max_period"], ("min_period", "max_period")),
}
#: A moving-average type's names and TA-Lib codes (MAMA, 7, is declared but not yet accepted).
MA_NAMES = [n for n in threadx._registry.MA_TYPES if n != "mama"]
MA_CODES = [c for c, n in enumerate(threadx._registry.MA_TYPES) if n != "mama"]

# CI runs the same derandomized examples every time; THREADX_FUZZ_RANDOM=1 draws fresh ones
# (hypothesis prints the seed of a failure) and THREADX_FUZZ_SCALE=<k> runs k times as many.
_RANDOM = os.environ.get("THREADX_FUZZ_RANDOM", "") not in ("", "0")
_SCALE = max(1, int(os.environ.get("THREADX_FUZZ_SCALE", "1") or 1))
# The suite's budget is spread over the catalog, so it keeps its time as indicators are added:
# 4,400 parameter and 7,700 data examples in all (200 and 350 each when the catalog had 22), with
# a floor per indicator.
_PARAM_EXAMPLES = max(40, 4_400 // len(NAMES)) * _SCALE
_DATA_EXAMPLES = max(60, 7_700 // len(NAMES)) * _SCALE
_SETTINGS = {
    "deadline": None,
    "derandomize": not _RANDOM,
    "database": None,
    "phases": (Phase.explicit, Phase.generate),
    "report_multiple_bugs": False,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}


def _hi(p: dict) -> float:
    return math.inf if p["max"] is None else p["max"]


def warmup(name: str, params: dict) -> int:
    """The oracle's warm-up (``helpers.lookback``: TA-Lib's own lookback). TA-Lib rejects a float
    parameter beyond +-3e37 (its lookback is then -1), and no float parameter of the catalog moves
    a warm-up, so the oracle is asked with the float parameters at their defaults."""
    kinds = {p["name"]: p for p in PARAM_DECLS[name]}
    ask = {
        k: (v if kinds[k]["kind"] in ("int", "matype") else kinds[k]["default"])
        for k, v in params.items()
    }
    return lookback(name, ask)


def first_invalid(name: str, params: dict) -> str | None:
    """The first parameter (declaration order) the contract rejects, else None. Written from the
    catalog's declaration alone (not from threadx's validation code)."""
    for p in PARAM_DECLS[name]:
        v = params[p["name"]]
        if p["kind"] == "matype":
            ok = (isinstance(v, str) and v.lower() in MA_NAMES) or (
                isinstance(v, int) and not isinstance(v, bool) and v in MA_CODES
            )
        elif v is None and p["default"] is None:
            ok = True  # a derived default
        elif p["kind"] == "int":
            ok = isinstance(v, int) and not isinstance(v, bool) and p["min"] <= v <= _hi(p)
            if ok and p["below"] is not None:
                ok = v < params[p["below"]]
        else:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
            if ok:
                try:
                    f = float(v)
                except OverflowError:
                    f = math.inf
                ok = math.isfinite(f) and p["min"] <= f <= _hi(p)
        if not ok:
            return p["name"]
    rule = CROSS_RULES.get(name)
    if rule is not None and not rule[0](params):
        return rule[1][0]
    return None


def _int_values(p: dict, valid: bool):
    lo, hi = int(p["min"]), (None if p["max"] is None else int(p["max"]))
    inside = [st.integers(lo, lo + 12), st.sampled_from([lo, lo + 1])]
    if hi is not None:
        inside += [st.sampled_from([hi, hi - 1]), st.integers(lo, hi)]
    if valid:
        return st.one_of(inside)
    outside = [
        st.sampled_from([lo - 1, lo - 2, 0, -1, -(10**30), 10**30, 2**63, 2**64]),
        st.integers(max_value=lo - 1),
        st.sampled_from([True, False, 5.0, 2.5, float("nan"), float("inf"), None, "5"]),
        st.floats(allow_nan=True, allow_infinity=True),
    ]
    if hi is not None:
        outside += [st.sampled_from([hi + 1, hi + 2]), st.integers(min_value=hi + 1)]
    return st.one_of(inside + outside)


def _matype_values(p: dict, valid: bool):
    inside = [st.sampled_from(MA_NAMES), st.sampled_from(MA_CODES), st.just("EMA")]
    if valid:
        return st.one_of(inside)
    outside = [st.sampled_from(["mama", 7, 14, -1, "nope", "", 2.0, True, None, 10**30])]
    return st.one_of(inside + outside)


def _float_values(p: dict, valid: bool):
    lo, hi = p["min"], _hi(p)
    inside = [
        st.sampled_from([lo, 0.5 + lo, 2.0, 5e-324 + lo, 1e308, int(lo), int(lo) + 3]),
        st.floats(lo, min(hi, 1e308), allow_nan=False, allow_infinity=False),
    ]
    if hi != math.inf:
        inside.append(st.just(hi))
    if p["default"] is None:
        inside.append(st.none())
    if valid:
        return st.one_of(inside)
    outside = [
        st.sampled_from([float("nan"), float("inf"), -float("inf"), lo - 1.0, -5e-324, 10**400]),
        st.sampled_from([True, False, None, "2.0", Decimal("2.0")]),
        st.floats(max_value=lo, exclude_max=True),
    ]
    if hi != math.inf:
        outside.append(st.floats(min_value=hi, exclude_min=True))
    return st.one_of(inside + outside)


@st.composite
def any_params(draw, name: str) -> dict:
    """Parameters at, inside and past their bounds (about half the draws all valid)."""
    valid = draw(st.booleans())
    out = {}
    for p in PARAM_DECLS[name]:
        gen = {"int": _int_values, "matype": _matype_values}.get(p["kind"], _float_values)
        out[p["name"]] = draw(gen(p, valid))
    return out


@st.composite
def valid_params(draw, name: str) -> dict:
    """Valid parameters: small warm-ups mostly, past the data length or at the maximum sometimes."""
    out: dict = {}
    for p in PARAM_DECLS[name]:
        lo, hi = p["min"], _hi(p)
        if p["kind"] == "matype":
            v = draw(st.one_of(st.sampled_from(MA_NAMES), st.sampled_from(MA_CODES)))
        elif p["kind"] == "int":
            lo = int(lo)
            cap = hi if p["below"] is None else out[p["below"]] - 1
            cap = int(min(cap, 1e9))
            v = draw(
                st.one_of(
                    st.integers(lo, min(lo + 8, cap)),
                    st.integers(lo, min(lo + 350, cap)),
                    st.sampled_from([lo, cap]),
                )
            )
        else:
            v = draw(
                st.one_of(
                    st.sampled_from([lo, 0.5, 2.0, 5e-324, 1e308]),
                    st.floats(lo, min(hi, 1e308), allow_nan=False),
                ).filter(lambda x, lo=lo, hi=hi: lo <= x <= hi)
            )
        out[p["name"]] = v
    rule = CROSS_RULES.get(name)
    if rule is not None:
        draw(st.just(None).filter(lambda _: rule[0](out)))
    return out


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------

SPECIAL = [0.0, -0.0, math.nan, math.inf, -math.inf, 5e-324, -5e-324, 2.2250738585072014e-308,
           1e-300, 1e308, -1e308, 1.7976931348623157e308]  # fmt: skip

_float = st.one_of(
    st.floats(50.0, 150.0),  # prices
    st.floats(50.0, 150.0),
    st.integers(-5, 5).map(float),  # ties, zeros, sign changes
    st.sampled_from(SPECIAL),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
)
_INT_RANGES = {
    pl.Int64: (-(2**63), 2**63 - 1),
    pl.Int32: (-(2**31), 2**31 - 1),
    pl.UInt8: (0, 255),
}
DECIMAL = pl.Decimal(18, 4)
DTYPES = [pl.Float64, pl.Float32, pl.Int64, pl.Int32, pl.UInt8, DECIMAL, pl.Null]
#: the dtypes every indicator must accept (test_api); Decimal and Null may be a ComputeError
ACCEPTED = {pl.Float64, pl.Float32, pl.Int64, pl.Int32, pl.UInt8}


def _values(dtype):
    if dtype in (pl.Float64, pl.Float32):
        return _float
    if dtype == DECIMAL:
        return st.one_of(
            st.decimals(-(10**6), 10**6, places=4, allow_nan=False, allow_infinity=False),
            st.sampled_from([Decimal(0), Decimal("-0.0000"), Decimal("99999999999999.9999")]),
            st.none(),
        )
    lo, hi = _INT_RANGES[dtype]
    small = st.integers(max(lo, 0), min(hi, 150))
    return st.one_of(small, st.integers(lo, hi), st.sampled_from([lo, hi, 0]), st.none())


@st.composite
def column(draw, n: int, dtype) -> pl.Series:
    if dtype == pl.Null:
        return pl.Series([None] * n, dtype=pl.Null)
    mode = draw(st.sampled_from(["mixed", "mixed", "no_null", "all_null", "mostly_null"]))
    if mode == "all_null":
        vals = [None] * n
    else:
        vals = draw(st.lists(_values(dtype), min_size=n, max_size=n))
        if mode == "no_null":
            fill = 0.0 if dtype in (pl.Float64, pl.Float32) else 0
            fill = Decimal(0) if dtype == DECIMAL else fill
            vals = [fill if v is None else v for v in vals]
        elif mode == "mostly_null" and n:
            keep = draw(st.sets(st.integers(0, n - 1), max_size=3))
            vals = [v if i in keep else None for i, v in enumerate(vals)]
    if dtype == pl.Float32:  # through Float64: 1e308 -> inf, 5e-324 -> 0 as a cast does
        return pl.Series(vals, dtype=pl.Float64).cast(pl.Float32)
    return pl.Series(vals, dtype=dtype)


@st.composite
def frame(draw, name: str) -> pl.DataFrame:
    n = draw(st.one_of(st.integers(0, 40), st.integers(0, 300), st.sampled_from([0, 1, 2])))
    same = draw(st.booleans())
    first = draw(st.sampled_from(DTYPES))
    cols = {}
    for c in dict.fromkeys(INPUTS[name]):
        dtype = first if same else draw(st.sampled_from(DTYPES))
        cols[c] = draw(column(n, dtype))
    df = pl.DataFrame(cols)
    if n > 1 and draw(st.booleans()):  # several chunks
        cuts = sorted(draw(st.sets(st.integers(1, n - 1), min_size=1, max_size=4)))
        parts = [df.slice(a, b - a) for a, b in zip([0, *cuts], [*cuts, n])]
        df = pl.concat(parts, rechunk=False)
    return df


# --------------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------------


def _is_panic(e: BaseException) -> bool:
    return type(e).__name__ == "PanicException" or "panick" in str(e).lower()


def collect(df: pl.DataFrame, expr: pl.Expr, name: str) -> pl.Series | None:
    """The result, or None for a clear ComputeError naming the indicator; a panic fails."""
    try:
        return run(df, expr)
    except BaseException as e:  # pyo3's PanicException is a BaseException
        if _is_panic(e):
            pytest.fail(f"threadx.{name} panicked: {type(e).__name__}: {e}")
        if isinstance(e, ComputeError):
            assert f"threadx.{name}" in str(e), str(e)
            return None
        raise


def expected_dtype(name: str) -> pl.DataType:
    return result_dtype(name)


def _bits(s: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(null mask, uint64 bits with every NaN and every null canonical)."""
    nulls = s.is_null().to_numpy()
    v = np.ascontiguousarray(s.to_numpy().astype(np.float64))
    bits = v.view(np.uint64).copy()
    bits[np.isnan(v)] = 0x7FF8000000000000
    bits[nulls] = 0
    return nulls, bits


def assert_same(got: pl.Series, want: pl.Series, what: str) -> None:
    """Same dtype, same nulls, same bits (any NaN equal to any NaN, -0.0 != 0.0)."""
    assert got.dtype == want.dtype, (what, got.dtype, want.dtype)
    gf, wf = fields(got), fields(want)
    for k in gf:
        gn, gb = _bits(gf[k])
        wn, wb = _bits(wf[k])
        bad = np.flatnonzero((gn != wn) | (gb != wb))
        assert bad.size == 0, (
            f"{what} field {k}: {bad.size} rows differ, first rows {bad[:5].tolist()}: "
            f"got {gf[k].gather(bad[:5]).to_list()} want {wf[k].gather(bad[:5]).to_list()}"
        )


def scatter(compact: pl.Series, present: np.ndarray, name: str) -> pl.Series:
    """The rows of `compact` put back on the rows where `present` is True; others null (row
    outputs renumbered to rows of the input column)."""
    return scatter_back(compact, present, name)


# --------------------------------------------------------------------------------------------
# properties
# --------------------------------------------------------------------------------------------

_SMALL = pl.DataFrame(
    {
        "open": [100.0, 101.0, 99.0, 102.0, 103.0, 101.0],
        "high": [101.0, 102.0, 100.0, 104.0, 105.0, 102.0],
        "low": [99.0, 100.0, 98.0, 101.0, 102.0, 100.0],
        "close": [100.5, 101.5, 99.5, 103.0, 104.0, 101.0],
        "volume": [10.0, 20.0, 30.0, 40.0, 50.0, 60.0],
    }
)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=_PARAM_EXAMPLES, **_SETTINGS)
@given(data=st.data())
def test_fuzz_parameters(name: str, data) -> None:
    """Inside the bounds: a result (both call forms, and `threadx.lookback` agrees with TA-Lib's);
    outside: a ValueError at expression build naming the indicator and the parameter."""
    params = data.draw(any_params(name), label="params")
    bad = first_invalid(name, params)
    event(f"invalid {bad}" if bad else "valid")
    forms = {
        "function": lambda: getattr(threadx, name)(*INPUTS[name], **params),
        "namespace": lambda: getattr(pl.col(INPUTS[name][0]).threadx, name)(
            **NS_INPUTS[name], **params
        ),
        "lookback": lambda: threadx.lookback(name, **params),
    }
    for form, build in forms.items():
        if bad is not None:
            with pytest.raises(ValueError) as exc:
                build()
            msg = str(exc.value)
            assert f"threadx.{name}" in msg, (form, msg)
            assert bad in msg, (form, bad, msg)
            continue
        built = build()
        if form == "lookback":
            assert built == warmup(name, params), (built, params)
            continue
        out = collect(_SMALL, built, name)
        assert out is not None, f"{form}: float input must give a result"
        assert len(out) == _SMALL.height and out.dtype == expected_dtype(name)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=_DATA_EXAMPLES, **_SETTINGS)
@given(data=st.data())
def test_fuzz_data(name: str, data) -> None:
    """Any data, any dtype, nulls anywhere: no panic, a ComputeError naming the indicator or a
    correct result (length, dtype, warm-up and null rows, compacted and Float64 equivalence)."""
    params = data.draw(valid_params(name), label="params")
    assert first_invalid(name, params) is None
    df = data.draw(frame(name), label="frame")
    expr = getattr(threadx, name)(*INPUTS[name], **params)
    got = collect(df, expr, name)
    dtypes = set(df.dtypes)
    event("result" if got is not None else f"ComputeError on {sorted(map(str, dtypes))}")
    event(f"{df.n_chunks('all')[0]} chunks" if df.width else "no columns")
    if got is None:
        assert not dtypes <= ACCEPTED, f"{name} rejected {df.dtypes}"
        return
    assert len(got) == df.height
    assert got.dtype == expected_dtype(name)

    # null on the missing rows and on the first `lookback` present rows, nowhere else
    present = (
        df.select(pl.all_horizontal(pl.col(c).is_not_null() for c in df.columns))
        .to_series()
        .to_numpy()
        .astype(bool)
        if df.height
        else np.zeros(0, dtype=bool)
    )
    expect_null = ~present
    expect_null[np.flatnonzero(present)[: warmup(name, params)]] = True
    for k, f in fields(got).items():
        assert f.dtype == FIELD_DTYPES[name][k], (k, f.dtype)
        np.testing.assert_array_equal(
            f.is_null().to_numpy(), expect_null, err_msg=f"{name}.{k} null rows ({params})"
        )

    # the compacted (drop_nulls) computation scattered back
    compact = collect(df.filter(pl.Series(present, dtype=pl.Boolean)), expr, name)
    assert compact is not None, "the compacted frame must be accepted like the full one"
    assert_same(got, scatter(compact, present, name), f"{name}{params} vs compacted")

    # the Float64-cast input
    if dtypes != {pl.Float64}:
        as_f64 = df.with_columns(pl.all().cast(pl.Float64))
        want = collect(as_f64, expr, name)
        assert want is not None
        assert_same(got, want, f"{name}{params} {df.dtypes} vs Float64")
