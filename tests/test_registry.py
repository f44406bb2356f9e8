"""The indicator registry: the catalog, lookbacks against TA-Lib, the generated API, and a check
that every registry entry has everything an indicator needs (function, namespace method, TA-Lib
alias, parity or reference test, test parameters, docs, device statement)."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import talib
import test_null_policy
import test_talib_parity
import threadx
from helpers import (
    CATALOG,
    COLUMN,
    INPUTS,
    NAMES,
    NS_INPUTS,
    PARAMS,
    RECEIVER,
    STRUCT_FIELDS,
    ohlcv,
    result_dtype,
    run,
    talib_params,
)
from talib import abstract

ROOT = Path(__file__).resolve().parent.parent
ROWS = list(CATALOG.iter_rows(named=True))
TWINS = [r for r in ROWS if r["talib"]]
IDS = [r["name"] for r in ROWS]


def test_catalog_columns_and_dtypes():
    cat = threadx.catalog()
    assert cat.height == len(NAMES) >= 13
    for col, dtype in {
        "name": pl.String,
        "group": pl.String,
        "talib": pl.String,
        "inputs": pl.List(pl.String),
        "outputs": pl.List(pl.String),
        "devices": pl.List(pl.String),
    }.items():
        assert cat.schema[col] == dtype, col
    params = cat.schema["params"]
    assert isinstance(params, pl.List)
    assert {"name", "default", "min", "max", "talib"} <= {f.name for f in params.inner.fields}
    assert cat["name"].is_unique().all()
    expected = {"sma", "ema", "wma", "rolling_std", "zscore", "bollinger", "rsi", "roc", "macd",
                "atr", "natr", "stoch", "obv"}  # fmt: skip
    assert expected <= set(cat["name"])


def test_catalog_matches_talib_declarations():
    """Inputs, outputs and parameter names of every twin are TA-Lib's own (abstract API)."""
    for r in TWINS:
        info = abstract.Function(r["talib"]).info
        ta_inputs = []
        for k, v in info["input_names"].items():
            if k in ("price0", "price1"):
                # The math operators (ADD, ...): the abstract API maps their two operands to high
                # and low by default; the function API, whose names threadx takes, calls them
                # real0 and real1.
                ta_inputs.append("real" + k[-1])
                continue
            ta_inputs += [v] if isinstance(v, str) else list(v)
        ours = ["real" if i == "real" else i for i in r["inputs"]]
        # TA-Lib calls a single price input "price" in its abstract declarations ("close").
        assert len(ours) == len(ta_inputs), (r["name"], ours, ta_inputs)
        for mine, theirs in zip(ours, ta_inputs):
            assert mine == theirs or (mine == "real" and theirs in ("close", "real")), (
                r["name"], ours, ta_inputs)  # fmt: skip
        # Same outputs (our Struct may order them differently: middle, upper, lower).
        assert sorted(r["talib_outputs"]) == sorted(info["output_names"]), r["name"]
        ta_params = set(info["parameters"])
        for p in r["params"]:
            assert p["talib"] is None or p["talib"] in ta_params, (r["name"], p)


@pytest.mark.parametrize("row", TWINS, ids=[r["name"] for r in TWINS])
def test_output_dtypes_follow_talib(row):
    """Outputs TA-Lib returns as integers (MAXINDEX's rows) are Int32 row outputs, and only those;
    every other output is Float64. A real call returns those dtypes."""
    info = abstract.Function(row["talib"]).info
    df = ohlcv(200, 3)
    arrays = {c: df[c].to_numpy() for c in df.columns}
    inputs = [arrays[COLUMN[i]] for i in row["inputs"]]
    res = getattr(talib, row["talib"])(*inputs)
    res = list(res) if isinstance(res, list | tuple) else [res]
    kinds = dict(zip(info["output_names"], (np.asarray(a).dtype.kind for a in res)))
    for name, ta_name, dtype in zip(row["outputs"], row["talib_outputs"], row["output_dtypes"]):
        want = "Int32" if kinds[ta_name] == "i" else "Float64"
        assert dtype == want, (row["name"], name, dtype, kinds[ta_name])
        assert (name in row["row_outputs"]) == (want == "Int32"), (row["name"], name)
    out = run(df, getattr(threadx, row["name"])(*INPUTS[row["name"]]))
    assert out.dtype == result_dtype(row["name"]), (row["name"], out.dtype)


@pytest.mark.parametrize("row", TWINS, ids=[r["name"] for r in TWINS])
def test_lookback_equals_talib_for_every_twin(row):
    name = row["name"]
    sets = [{}]
    for p in row["params"]:
        if p["kind"] == "int" and p["talib"]:
            lo = int(p["min"])
            sets += [{p["name"]: lo}, {p["name"]: lo + 7}]
    for params in sets:
        if name == "macd" and params.get("fast", 12) >= params.get("slow", 26):
            params = {**params, "slow": params.get("fast", 12) + 1}
        if name == "mavp" and params.get("min_period", 2) > params.get("max_period", 30):
            params = {**params, "min_period": params["max_period"]}
        full = {p["name"]: params.get(p["name"], p["default"]) for p in row["params"]}
        full = {
            p["name"]: (int if p["kind"] in ("int", "matype") else float)(full[p["name"]])
            for p in row["params"]
            if full[p["name"]] is not None
        }
        fn = abstract.Function(row["talib"])
        fn.parameters = talib_params(name, full)
        assert threadx.lookback(name, **params) == fn.lookback, (name, params)
        if row["alias"]:
            assert threadx.lookback(row["alias"], **params) == fn.lookback


def test_lookback_errors_name_the_parameter():
    with pytest.raises(
        ValueError, match=r"threadx.sma: period must be an integer in \[2, 100000\]"
    ):
        threadx.lookback("sma", period=1)
    with pytest.raises(ValueError, match="no parameter 'perio'"):
        threadx.lookback("sma", perio=5)
    with pytest.raises(ValueError, match="threadx.lookback: indicator must be one of"):
        threadx.lookback("nope")
    with pytest.raises(ValueError, match="fast must be less than slow"):
        threadx.lookback("macd", fast=30)


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_warmup_rows_equal_lookback(row):
    """The null warm-up a real call produces is threadx.lookback(...) rows long."""
    name = row["name"]
    df = ohlcv(300, 5)
    out = run(df, getattr(threadx, name)(*INPUTS[name], **PARAMS[name]))
    first = out.struct.field(row["outputs"][0]) if out.dtype == pl.Struct else out
    lb = threadx.lookback(name, **PARAMS[name])
    nulls = first.is_null().to_numpy()
    assert nulls[:lb].all() and not nulls[lb:].any(), (name, lb)


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_generated_signatures_follow_the_declaration(row):
    """Real signatures: inputs positional in TA-Lib order, then the parameters with TA-Lib's
    defaults, then keyword-only by / device / workload_tag; the namespace drops the receiver."""
    name = row["name"]
    fn = getattr(threadx, name)
    sig = inspect.signature(fn)
    names = list(sig.parameters)
    declared = [p["name"] for p in row["params"]]
    assert names == [*row["inputs"], *declared, "by", "device", "workload_tag"]
    for p in row["params"]:
        default = sig.parameters[p["name"]].default
        if p["kind"] == "matype":  # the type's name (threadx.ma("close", matype="ema"))
            assert default == threadx._registry.MA_TYPES[int(p["default"])], (name, p)
        elif p["default"] is None:  # derived from the other parameters
            assert default is None, (name, p)
        else:
            assert default == p["default"]
            assert type(default) is (int if p["kind"] == "int" else float)
    assert sig.parameters["device"].kind is inspect.Parameter.KEYWORD_ONLY
    assert sig.parameters["by"].kind is inspect.Parameter.KEYWORD_ONLY
    assert not any(
        q.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        for q in sig.parameters.values()
    )
    assert fn.__doc__ and row["summary"].split(",")[0] in fn.__doc__
    method = getattr(threadx.namespace.ThreadxNamespace, name)
    mnames = list(inspect.signature(method).parameters)
    others = [i for i in row["inputs"] if i != row["receiver"]]
    assert mnames == ["self", *others, *declared, "by", "device", "workload_tag"]


@pytest.mark.parametrize("row", TWINS, ids=[r["name"] for r in TWINS])
def test_talib_alias_is_the_same_indicator(row):
    """``threadx.bbands`` is ``threadx.bollinger``, ``pl.Expr.threadx.stddev`` is
    ``rolling_std``, and so on for every twin whose name differs."""
    alias = row["talib"].lower()
    name = row["name"]
    assert getattr(threadx, alias) is getattr(threadx, name)
    df = ohlcv(200, 9)
    want = run(df, getattr(threadx, name)(*INPUTS[name], **PARAMS[name]))
    got = run(df, getattr(pl.col(RECEIVER[name]).threadx, alias)(**NS_INPUTS[name], **PARAMS[name]))
    assert got.equals(want), name


def test_every_registry_entry_is_complete():
    """A registry entry without any of these fails here, naming what is missing."""
    readme = (ROOT / "README.md").read_text()
    adding = (ROOT / "docs" / "adding_an_indicator.md").read_text()
    parity_names = {k.rsplit("-", 1)[0].split("-")[0] for k in test_talib_parity.CASES}
    references = set(test_null_policy.BY_NAME)
    missing = []
    for r in ROWS:
        name = r["name"]
        if not callable(getattr(threadx, name, None)):
            missing.append(f"{name}: no function threadx.{name}")
        if not callable(getattr(threadx.namespace.ThreadxNamespace, name, None)):
            missing.append(f"{name}: no pl.Expr.threadx.{name} method")
        if r["talib"] and r["talib"].lower() not in parity_names:
            missing.append(f"{name}: no TA-Lib parity case in test_talib_parity.CASES")
        if name not in references:
            missing.append(f"{name}: no reference implementation in test_null_policy")
        if f"`{name}(" not in readme:
            missing.append(f"{name}: not in the README's indicator table")
        if not r["devices"] or "cpu" not in r["devices"]:
            missing.append(f"{name}: no device statement (devices={r['devices']})")
        if "cuda" not in r["devices"] and not threadx._registry.BY_NAME[name].no_gpu_reason:
            missing.append(f"{name}: cannot run on a GPU and gives no reason")
        if not r["group"]:
            missing.append(f"{name}: no group")
        if STRUCT_FIELDS[name] is not None and len(r["outputs"]) < 2:
            missing.append(f"{name}: struct fields disagree with outputs")
    assert "registry" in adding
    assert not missing, "\n".join(missing)


def test_groups_are_talib_groups():
    groups = set(talib.get_function_groups())
    for r in TWINS:
        assert r["group"] in groups, (r["name"], r["group"])
        assert r["talib"] in talib.get_function_groups()[r["group"]], r["name"]


def test_generated_code_is_in_sync_with_the_registry():
    """indicators.py, namespace.py, their stubs and the README table are what the code generator
    writes from the current registry (run `python -m threadx._codegen` after changing it)."""
    proc = subprocess.run(
        [sys.executable, "-m", "threadx._codegen", "--check"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (ROOT / "python" / "threadx" / "py.typed").exists()


def test_planner_and_autotune_read_the_registry():
    from threadx import _workloads

    assert list(threadx.planning.INDICATORS) == NAMES
    df = _workloads.frame(64)
    for name in NAMES:  # every workload builds and runs at its defaults
        out = df.select(_workloads.expr(name))
        assert out.height == 64
    assert threadx.explain("bbands", 1000).indicator == "bollinger"


def test_parameters_are_validated_from_the_declaration():
    for r in ROWS:
        for p in r["params"]:
            bad = int(p["min"]) - 1 if p["kind"] == "int" else float("nan")
            args = {**PARAMS[r["name"]], p["name"]: bad}
            with pytest.raises(ValueError, match=f"threadx.{r['name']}: {p['name']} must be"):
                getattr(threadx, r["name"])(*INPUTS[r["name"]], **args)
    with pytest.raises(ValueError, match=r"period must be an integer in \[2, 100000\], got 10\*\*400"
                       .replace(r"10\*\*400", str(10**400))):  # fmt: skip
        threadx.sma("close", 10**400)
    with pytest.raises(ValueError, match="std_dev must be a finite number >= 0"):
        threadx.bollinger("close", 20, 10**400)
    assert np.isfinite(threadx.lookback("bollinger", std_dev=1e300))


MATYPE_USERS = [r["name"] for r in ROWS if any(p["kind"] == "matype" for p in r["params"])]


@pytest.mark.parametrize("name", MATYPE_USERS)
def test_matype_takes_talib_names_and_codes(name):
    """A moving-average type is a name (any case) or TA-Lib's code, the same call either way;
    MAMA (7) and anything else are errors naming the function, the parameter and the choices."""
    df = ohlcv(200, 4)
    codes = threadx._registry.MA_CODES
    assert codes["sma"] == 0 and codes["ema"] == 1 and codes["zlema"] == 12 and codes["rma"] == 13
    for type_name, code in codes.items():
        if type_name == "mama":
            continue
        by_name = getattr(threadx, name)(*INPUTS[name], matype=type_name.upper())
        by_code = getattr(threadx, name)(*INPUTS[name], matype=code)
        assert run(df, by_name).equals(run(df, by_code)), (name, type_name)
        assert threadx.lookback(name, matype=type_name) == threadx.lookback(name, matype=code)
    for bad in ("mama", 7):
        with pytest.raises(ValueError, match=rf"threadx.{name}: matype must be other than MAMA"):
            getattr(threadx, name)(*INPUTS[name], matype=bad)
    for bad in ("nope", 14, -1, 2.0, True, None):
        with pytest.raises(
            ValueError, match=rf"threadx.{name}: matype must be a moving-average type: one of"
        ):
            getattr(threadx, name)(*INPUTS[name], matype=bad)


def test_bbands_lower_width_defaults_to_std_dev():
    df = ohlcv(300, 8)
    same = run(df, threadx.bbands("close", 20, 1.5, 1.5))
    assert run(df, threadx.bbands("close", 20, 1.5)).equals(same)
    lower = run(df, threadx.bbands("close", 20, 1.5, 3.0)).struct.field("lower")
    assert not lower.equals(same.struct.field("lower"))
    # TA-Lib's positional order: timeperiod, nbdevup, nbdevdn, matype
    got = run(df, threadx.bbands("close", 10, 2.0, 1.0, 1)).struct.unnest()
    up, mid, lo = talib.BBANDS(df["close"].to_numpy(), 10, 2.0, 1.0, 1)
    for col, ta in (("upper", up), ("middle", mid), ("lower", lo)):
        np.testing.assert_allclose(got[col].to_numpy()[9:], ta[9:], rtol=1e-12)
