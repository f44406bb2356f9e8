"""Shared test helpers: the indicator registry, OHLCV data, running an expression, bit-exact
comparison of results.

A plain module (no fixtures): the test files import it as ``from helpers import ...`` (pytest puts
``tests/`` on ``sys.path`` for them; a child process is given that folder explicitly).
"""

from __future__ import annotations

import contextlib
import hashlib
import os

import numpy as np
import polars as pl
import threadx

# --------------------------------------------------------------------------------------------
# indicator registry
# --------------------------------------------------------------------------------------------

# Everything below is derived from the registry (threadx.catalog()), so a new indicator is tested
# by every catalog-wide suite without editing this file; only PARAMS (small test parameters)
# needs an entry, and test_registry fails until it has one.
CATALOG = threadx.catalog()
_ROWS = {r["name"]: r for r in CATALOG.iter_rows(named=True)}
NAMES = list(_ROWS)
#: The indicators with a CUDA twin (the others are declared CPU-only and refuse GPU placements).
GPU_NAMES = [n for n, r in _ROWS.items() if "cuda" in r["devices"]]

#: The test frame's column for each registry input (``real`` and ``real0`` are the close,
#: ``real1`` the open).
COLUMN = {"real": "close", "open": "open", "high": "high", "low": "low", "close": "close",
          "volume": "volume", "real0": "close", "real1": "open",
          # MAVP's periods: the volumes (>= 1) clamp to max_period nearly everywhere, so the
          # catalog-wide suites see a plain moving average; test_null_policy varies the periods.
          "periods": "volume"}  # fmt: skip

# name -> positional input columns of the function form, `threadx.<name>(*INPUTS[name], ...)`
INPUTS: dict[str, tuple[str, ...]] = {
    n: tuple(COLUMN[i] for i in r["inputs"]) for n, r in _ROWS.items()
}

# name -> the column the namespace form is called on (the receiver's: close, or high for medprice,
# the close for real0)
RECEIVER: dict[str, str] = {n: COLUMN[r["receiver"]] for n, r in _ROWS.items()}

# name -> keyword inputs of the namespace form,
# `pl.col(RECEIVER[name]).threadx.<name>(**NS_INPUTS[name])`
NS_INPUTS: dict[str, dict[str, str]] = {
    n: {i: COLUMN[i] for i in r["inputs"] if i != r["receiver"]} for n, r in _ROWS.items()
}

#: The indicators with a CUDA twin: only they run on GPUs and device sets (real or simulated); a
#: CPU-only one is refused there with its declared reason.
GPU_NAMES = [n for n, r in _ROWS.items() if "cuda" in r["devices"]]

# name -> the fields of its struct output; None: a plain Float64 output
STRUCT_FIELDS: dict[str, tuple[str, ...] | None] = {
    n: (tuple(r["outputs"]) if len(r["outputs"]) > 1 else None) for n, r in _ROWS.items()
}

#: The indicators with a CUDA twin, which forced GPUs and device sets place; the others are
#: declared CPU-only (with a reason), and asking for a GPU is an error naming that reason.
GPU_NAMES = [n for n in NAMES if "cuda" in _ROWS[n]["devices"]]
CPU_ONLY_NAMES = [n for n in NAMES if "cuda" not in _ROWS[n]["devices"]]
_DTYPES = {"Float64": pl.Float64, "Int32": pl.Int32}

# name -> {field: Polars dtype} of its outputs (a plain output is the one field "value"): Float64,
# or Int32 for the rows of the input column that MAXINDEX and its kin return
FIELD_DTYPES: dict[str, dict[str, pl.DataType]] = {
    n: dict(
        zip(
            STRUCT_FIELDS[n] or ("value",),
            (_DTYPES[d] for d in r["output_dtypes"]),
        )
    )
    for n, r in _ROWS.items()
}

# name -> the fields ("value" for a plain output) that hold rows of the input column
ROW_FIELDS: dict[str, tuple[str, ...]] = {
    n: tuple(
        f for f, o in zip(STRUCT_FIELDS[n] or ("value",), r["outputs"]) if o in r["row_outputs"]
    )
    for n, r in _ROWS.items()
}


def result_dtype(name: str) -> pl.DataType:
    """The dtype of `name`'s result: its one output's, or the Struct of its fields."""
    f = FIELD_DTYPES[name]
    if STRUCT_FIELDS[name] is None:
        return f["value"]
    return pl.Struct([pl.Field(k, d) for k, d in f.items()])


# name -> a small parameter set (short warm-ups): test_api and test_contexts use it as is,
# test_null_policy with its own rolling_std / bollinger entries, test_determinism has its own.
# An indicator without an entry here is tested at its defaults (see the end of this block).
PARAMS: dict[str, dict] = {
    "sma": {"period": 10},
    "ema": {"period": 10},
    "wma": {"period": 10},
    "rolling_std": {"period": 7, "ddof": 1},
    "zscore": {"period": 12},
    "bollinger": {"period": 9, "std_dev": 1.5},
    "rsi": {"period": 14},
    "roc": {"period": 6},
    "macd": {"fast": 5, "slow": 13, "signal": 4},
    "atr": {"period": 8},
    "natr": {"period": 8},
    "stoch": {"fastk_period": 6, "slowk_period": 3, "slowd_period": 4},
    "obv": {},
    "correl": {"period": 8},
    "percentile": {"period": 9, "percentile": 40.0},
    "percentrank": {"period": 10},
    "sum": {"period": 9},
    "max": {"period": 9},
    "min": {"period": 9},
    "maxindex": {"period": 9},
    "minindex": {"period": 9},
    "minmax": {"period": 9},
    "minmaxindex": {"period": 9},
    "midpoint": {"period": 9},
    "midprice": {"period": 9},
    "donchian": {"period": 9},
    # Defaults whose warm-up exceeds the 50-row frames of test_null_policy.
    "dema": {"period": 10},
    "tema": {"period": 8},
}
#: TA-Lib's moving-average type codes by name (a ``matype`` parameter takes either).
MA_CODES = dict(threadx._registry.MA_CODES)


def _cast(kind: str, value):
    """A declared default (or a parameter value) as a user passes it: ints as int, matypes as
    their TA-Lib code, floats as float."""
    if kind == "matype":
        return MA_CODES[value.lower()] if isinstance(value, str) else int(value)
    return (int if kind == "int" else float)(value)


for _name, _row in _ROWS.items():
    PARAMS.setdefault(
        _name,
        {
            p["name"]: _cast(p["kind"], p["default"])
            for p in _row["params"]
            if p["default"] is not None  # derived defaults are left out, as a call would
        },
    )

# Warm-up of the indicators without a TA-Lib twin, written out from their definitions.
_OWN_LOOKBACK = {"zscore": lambda p: p["period"] - 1}


def talib_params(name: str, params: dict) -> dict:
    """``params`` under TA-Lib's parameter names (those without a TA-Lib name dropped)."""
    decl = {p["name"]: p for p in _ROWS[name]["params"]}
    out = {
        decl[k]["talib"]: _cast(decl[k]["kind"], v)
        for k, v in params.items()
        if k in decl and decl[k]["talib"] and v is not None
    }
    if _ROWS[name]["talib"] == "BBANDS" and "nbdevup" in out and "nbdevdn" not in out:
        out["nbdevdn"] = out["nbdevup"]  # threadx's std_dev_down defaults to std_dev
    return out


def lookback(name: str, params: dict) -> int:
    """The warm-up (number of leading null rows) of `name` with `params`: TA-Lib's own lookback
    for a twin (from TA-Lib's abstract API), the definition's for the others."""
    row = _ROWS[name]
    kinds = {p["name"]: p["kind"] for p in row["params"]}
    full = {
        k: _cast(kinds[k], v)
        for k, v in ((p["name"], params.get(p["name"], p["default"])) for p in row["params"])
        if v is not None
    }
    if row["talib"] is None:
        return _OWN_LOOKBACK[name](full)
    from talib import abstract

    fn = abstract.Function(row["talib"])
    fn.parameters = talib_params(name, full)
    return fn.lookback


def indicator_expr(name: str, params: dict, **override) -> pl.Expr:
    """The function form on the registry's input columns: `threadx.<name>(*inputs, **params)`."""
    return getattr(threadx, name)(*INPUTS[name], **{**params, **override})


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


def ohlcv_arrays(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A geometric random walk (1 % per row) with consistent open/high/low and integer-valued
    float volumes, drawn from `rng`."""
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.concatenate([[100.0], close[:-1]]) * np.exp(rng.normal(0.0, 0.002, n))
    high = np.maximum(open_, close) * (1.0 + np.abs(rng.normal(0.0, 0.004, n)))
    low = np.minimum(open_, close) * (1.0 - np.abs(rng.normal(0.0, 0.004, n)))
    volume = rng.integers(1, 1_000_000, n).astype(np.float64)
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}


def ohlcv(n: int, seed: int) -> pl.DataFrame:
    """`ohlcv_arrays` from a fresh generator seeded with `seed`, as a frame."""
    return pl.DataFrame(ohlcv_arrays(n, np.random.default_rng(seed)))


def null_where(df: pl.DataFrame, col: str, mask: np.ndarray) -> pl.DataFrame:
    """`col` set to null on the rows where the boolean `mask` is True."""
    return df.with_columns(pl.when(pl.Series(mask)).then(None).otherwise(pl.col(col)).alias(col))


def nan_at(df: pl.DataFrame, col: str, row: int) -> pl.DataFrame:
    """`col` set to NaN at `row`; every other row (nulls included) unchanged."""
    return df.with_columns(
        pl.when(pl.int_range(pl.len()) == row).then(float("nan")).otherwise(pl.col(col)).alias(col)
    )


def present_mask(df: pl.DataFrame, cols) -> np.ndarray:
    """True on the rows where none of `cols` is null."""
    return (
        df.select(pl.all_horizontal(pl.col(c).is_not_null() for c in cols)).to_series().to_numpy()
    )


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------


def run(df: pl.DataFrame, expr: pl.Expr) -> pl.Series:
    return df.select(expr.alias("out")).to_series()


def fields(s: pl.Series) -> dict[str, pl.Series]:
    """A struct's fields by name; a plain series as the one field "value"."""
    if s.dtype == pl.Struct:
        return {f: s.struct.field(f) for f in s.struct.fields}
    return {"value": s}


def _show(i: int, g: np.ndarray, w: np.ndarray) -> str:
    gi, wi = float(g[i]), float(w[i])
    return f"row {i}: got {gi!r} ({gi.hex()}) want {wi!r} ({wi.hex()})"


def assert_bits_equal(
    got: pl.Series, want: pl.Series, what: str = "", *, nan_payloads: bool = True
) -> None:
    """Same dtype and fields, every field Float64 (or Int32: a row output) of the same length, the
    same null mask and the same bits in every non-null value (the sign of zero included; Int32:
    the same integers). With ``nan_payloads=False`` a NaN only has to meet a NaN: a NaN the
    arithmetic makes (0/0, inf - inf) has the platform's default payload, which x86 and NVIDIA
    GPUs choose differently."""
    assert got.dtype == want.dtype, (what, got.dtype, want.dtype)
    gf, wf = fields(got), fields(want)
    assert list(gf) == list(wf), what
    for k in gf:
        g, w = gf[k], wf[k]
        assert g.dtype == w.dtype and g.dtype in (pl.Float64, pl.Int32), (what, k, g.dtype)
        assert len(g) == len(w), (what, k, len(g), len(w))
        gn, wn = g.is_null().to_numpy(), w.is_null().to_numpy()
        np.testing.assert_array_equal(gn, wn, err_msg=f"{what} {k}: null masks differ")
        if g.dtype == pl.Int32:
            gi, wi = g.fill_null(0).to_numpy(), w.fill_null(0).to_numpy()
            bad = np.flatnonzero((gi != wi) & ~gn)
            assert bad.size == 0, f"{what} {k}: {bad.size} rows differ, first at row {bad[0]}: " + (
                f"got {gi[bad[0]]} want {wi[bad[0]]}" if bad.size else ""
            )
            continue
        gv, wv = g.to_numpy(), w.to_numpy()  # nulls read as NaN; masked below
        same = ~gn
        if not nan_payloads:
            gnan, wnan = np.isnan(gv) & ~gn, np.isnan(wv) & ~wn
            bad = np.flatnonzero(gnan != wnan)
            assert bad.size == 0, f"{what} {k}: {bad.size} rows NaN on one side only; " + "; ".join(
                _show(i, gv, wv) for i in bad[:3]
            )
            same &= ~gnan
        gb = np.ascontiguousarray(gv).view(np.uint64)
        wb = np.ascontiguousarray(wv).view(np.uint64)
        bad = np.flatnonzero((gb != wb) & same)
        assert bad.size == 0, f"{what} {k}: {bad.size} values differ in bits; " + "; ".join(
            _show(i, gv, wv) for i in bad[:3]
        )


def scatter_back(compact: pl.Series, present: np.ndarray, name: str) -> pl.Series:
    """Indicator `name`'s result on the present rows alone (`compact`) put back on the rows where
    `present` is True; others null. A row output (MAXINDEX's) counts rows of the input column,
    so its values, rows of the compacted frame, become the rows they came from."""
    idx = np.full(len(present), None, dtype=object)
    idx[present] = np.arange(int(present.sum()))
    take = pl.Series("i", idx.tolist(), dtype=pl.UInt32)
    out = pl.DataFrame({"c": compact}).select(pl.col("c").gather(take)).to_series()
    rows = ROW_FIELDS[name]
    if not rows:
        return out
    where = pl.Series(np.flatnonzero(present).astype(np.int32))

    def back(s: pl.Series) -> pl.Series:
        if s.len() == 0 or s.null_count() == s.len():
            return s
        mapped = where.gather(s.fill_null(0).cast(pl.UInt32))
        return pl.select(pl.when(s.is_null()).then(None).otherwise(mapped)).to_series()

    if out.dtype == pl.Struct:
        cols = [(back(v) if k in rows else v).alias(k) for k, v in fields(out).items()]
        return pl.DataFrame(cols).select(pl.struct(pl.all()).alias(out.name)).to_series()
    return back(out).alias(out.name)


def digest(s: pl.Series) -> str:
    """sha256 over every field's null mask and the bits of its non-null values."""
    h = hashlib.sha256()
    for k, f in fields(s).items():
        nulls = f.is_null().to_numpy()
        h.update(k.encode())
        h.update(np.packbits(nulls).tobytes())
        if f.dtype.is_integer():
            h.update(np.ascontiguousarray(f.fill_null(0).to_numpy()[~nulls], np.int64).tobytes())
            continue
        h.update(np.ascontiguousarray(f.to_numpy()[~nulls]).view(np.uint64).tobytes())
    return h.hexdigest()


@contextlib.contextmanager
def profile_at(path):
    """This process profiles into ``path`` (and no worker count is forced) for the block; the
    suite's ``THREADX_PROFILE`` is restored afterwards. For tests that must not see, or leave,
    samples of other tests."""
    old = os.environ.get("THREADX_PROFILE")
    os.environ["THREADX_PROFILE"] = str(path)
    threadx.profile.reload()
    try:
        yield path
    finally:
        threadx.set_threads(None)
        if old is None:
            del os.environ["THREADX_PROFILE"]
        else:
            os.environ["THREADX_PROFILE"] = old
        threadx.profile.reload()
