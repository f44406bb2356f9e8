"""The Rust indicator registry as Python sees it, and the one call path every indicator takes.

Every function in :mod:`threadx.indicators` and every ``pl.Expr.threadx`` method is generated from
the registry (``python -m threadx._codegen``) and ends in :func:`call`, which validates the
arguments against the indicator's declaration and registers the plugin's one entry point.
"""

from __future__ import annotations

import itertools
import json
import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import polars as pl
from polars.plugins import register_plugin_function

from threadx import _internal
from threadx import _validate as check

IntoExpr = Union[str, pl.Expr]
#: The folder of the compiled extension, which holds the plugin.
PLUGIN_PATH = Path(__file__).parent


#: TA-Lib's moving-average type names, indexed by their ``matype`` code (``talib.MA_Type``):
#: a ``matype`` parameter takes the name or the code.
MA_TYPES: tuple[str, ...] = tuple(_internal.ma_types())
MA_CODES: dict[str, int] = {name: code for code, name in enumerate(MA_TYPES)}
#: The one type that is named but not built yet.
MA_TYPE_MAMA = MA_CODES["mama"]


def ma_type_choices() -> str:
    """The accepted moving-average types, worded as the registry's errors word them."""
    names = ", ".join(f"'{n}' ({c})" for c, n in enumerate(MA_TYPES) if c != MA_TYPE_MAMA)
    return f"a moving-average type: one of {names}"


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # "int", "float" or "matype" (a moving-average type, by name or TA-Lib code)
    default: float | None  # None: derived from the other parameters (the call omits it)
    min: float
    max: float | None  # None: unbounded above
    talib: str | None
    below: str | None  # the value must be below this earlier parameter's value
    doc: str

    def default_value(self) -> int | float | str | None:
        if self.default is None:
            return None
        if self.kind == "matype":
            return MA_TYPES[int(self.default)]
        return int(self.default) if self.kind == "int" else float(self.default)


@dataclass(frozen=True)
class Indicator:
    name: str
    alias: str | None
    talib: str | None
    group: str
    summary: str
    inputs: tuple[str, ...]  # TA-Lib order
    call_inputs: tuple[str, ...]  # receiver first
    receiver: str
    outputs: tuple[str, ...]
    talib_outputs: tuple[str, ...]
    output_dtypes: tuple[str, ...]
    #: outputs holding rows of the input column (Int32, e.g. MAXINDEX)
    row_outputs: tuple[str, ...]
    params: tuple[Param, ...]
    lookback: str
    composition: str
    devices: tuple[str, ...]
    no_gpu_reason: str | None

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)

    def defaults(self) -> dict[str, int | float | str | None]:
        """Every parameter's default, as the int or float a user would pass."""
        return {p.name: p.default_value() for p in self.params}


def _load() -> tuple[Indicator, ...]:
    out = []
    for d in json.loads(_internal.catalog_json()):
        dev = d["devices"]
        out.append(
            Indicator(
                name=d["name"],
                alias=d["alias"],
                talib=d["talib"],
                group=d["group"],
                summary=d["summary"],
                inputs=tuple(d["inputs"]),
                call_inputs=tuple(d["call_inputs"]),
                receiver=d["receiver"],
                outputs=tuple(o["name"] for o in d["outputs"]),
                talib_outputs=tuple(o["talib"] for o in d["outputs"]),
                output_dtypes=tuple(o["dtype"] for o in d["outputs"]),
                row_outputs=tuple(o["name"] for o in d["outputs"] if o["row"]),
                params=tuple(
                    Param(
                        name=p["name"],
                        kind=p["kind"],
                        default=p["default"],
                        min=p["min"],
                        max=None if p["max"] >= 1.7976931348623157e308 else p["max"],
                        talib=p["talib"],
                        below=p["below"],
                        doc=p["doc"],
                    )
                    for p in d["params"]
                ),
                lookback=d["lookback"],
                composition=d["composition"],
                devices=tuple(k for k in ("cpu", "cuda") if dev[k]),
                no_gpu_reason=dev["no_cuda_reason"],
            )
        )
    return tuple(out)


#: Every indicator, in catalog order.
INDICATORS: tuple[Indicator, ...] = _load()
#: name or TA-Lib alias -> declaration
BY_NAME: dict[str, Indicator] = {
    **{i.alias: i for i in INDICATORS if i.alias},
    **{i.name: i for i in INDICATORS},
}
#: threadx's names, in catalog order (aliases excluded).
NAMES: tuple[str, ...] = tuple(i.name for i in INDICATORS)


def find(caller: str, name: object) -> Indicator:
    """The declaration called ``name`` (or aliased so), else a ValueError naming ``caller``."""
    ind = BY_NAME.get(name) if isinstance(name, str) else None
    if ind is None:
        raise ValueError(
            f"threadx.{caller}: indicator must be one of {', '.join(BY_NAME)}, got {name!r}"
        )
    return ind


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e18 else repr(x)


def _expected(p: Param, below: float | None = None) -> str:
    if p.kind == "int" and below is not None:
        return f"an integer in [{_num(p.min)}, {_num(below - 1)}] (below {p.below})"
    if p.kind == "int":
        return f"an integer in [{_num(p.min)}, {_num(p.max if p.max is not None else math.inf)}]"
    if p.max is None:
        return f"a finite number >= {_num(p.min)}"
    return f"a finite number in [{_num(p.min)}, {_num(p.max)}]"


def check_ma_type(indicator: str, name: str, value: object) -> float:
    """A moving-average type (a name of :data:`MA_TYPES`, any case, or its TA-Lib code) as the
    code the plugin takes, or a ValueError naming the indicator, the parameter and the choices."""
    code = None
    if isinstance(value, str):
        code = MA_CODES.get(value.strip().lower())
    elif isinstance(value, numbers.Integral) and not isinstance(value, bool):
        code = int(value) if 0 <= value < len(MA_TYPES) else None
    if code == MA_TYPE_MAMA:
        raise ValueError(
            f"threadx.{indicator}: {name} must be other than MAMA (code 7), which comes with a "
            f"later wave; {ma_type_choices()}, got {value!r}"
        )
    if code is None:
        raise ValueError(f"threadx.{indicator}: {name} must be {ma_type_choices()}, got {value!r}")
    return float(code)


def check_param(
    indicator: str, p: Param, value: object, below: float | None = None
) -> float | None:
    """``value`` as the float the plugin takes, or a ValueError naming the indicator, the
    parameter and the expected range. Ints are compared exactly (no overflow for huge ones).
    ``below``: the value of the parameter this one must stay below (``p.below``), if any.
    ``None`` for a parameter whose default is derived (``p.default is None``) stays ``None``:
    the call omits it and the registry derives it."""
    if p.kind == "matype":
        return check_ma_type(indicator, p.name, value)
    if value is None and p.default is None:
        return None
    ok = False
    if p.kind == "int":
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            v = int(value)
            ok = p.min <= v and (p.max is None or v <= p.max) and (below is None or v < below)
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            v = float(value)
        except OverflowError:
            v = math.inf
        ok = math.isfinite(v) and p.min <= v and (p.max is None or v <= p.max)
    if not ok:
        expected = _expected(p, below)
        if p.default is None:
            expected += " or None"
        raise ValueError(f"threadx.{indicator}: {p.name} must be {expected}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def check_params(ind: Indicator, params: dict[str, Any]) -> dict[str, float]:
    """Every parameter checked against its declaration, then the rules between parameters
    (MACD's ``fast < slow``) checked by the registry itself."""
    values: dict[str, float] = {}
    for p in ind.params:
        v = check_param(ind.name, p, params[p.name], values.get(p.below or ""))
        if v is not None:
            values[p.name] = v
    _internal.check_params(ind.name, values)
    return values


def to_expr(indicator: str, param: str, value: IntoExpr) -> pl.Expr:
    """A `str` is a column name, an `Expr` is used as is."""
    if isinstance(value, pl.Expr):
        return value
    if isinstance(value, str):
        return pl.col(value)
    raise TypeError(
        f"threadx.{indicator}: {param} must be a column name (str) or a polars Expr, "
        f"got {type(value).__name__}"
    )


def call(
    name: str,
    inputs: dict[str, IntoExpr],
    params: dict[str, Any],
    device: str,
    workload_tag: str | None,
    by: IntoExpr | Sequence[IntoExpr] | None = None,
) -> pl.Expr:
    """The expression computing indicator ``name`` on ``inputs`` (by input name) with ``params``
    (a list or range for a parameter is a sweep), per ``by=`` group when ``by`` names keys.

    Every indicator is windowed or recursive, never elementwise, so `.over()`, `group_by` and the
    streaming engine hand it whole groups or columns instead of arbitrary slices.
    """
    ind = BY_NAME[name]
    keys = by_exprs(ind.name, by)
    kwargs: dict[str, Any] = {
        "indicator": ind.name,
        "params": check_sweep(ind, params),
        **check.placement(ind.name, device, workload_tag),
        "by": len(keys),
    }
    args = [to_expr(ind.name, n, inputs[n]) for n in ind.call_inputs] + keys
    return register_plugin_function(
        plugin_path=PLUGIN_PATH,
        function_name="indicator",
        args=args,
        kwargs=kwargs,
        is_elementwise=False,
    )


def by_exprs(indicator: str, by: IntoExpr | Sequence[IntoExpr] | None) -> list[pl.Expr]:
    """The ``by=`` keys as expressions: a column name, an expression, or a list of them."""
    if by is None:
        return []
    keys = [by] if isinstance(by, (str, pl.Expr)) else by
    if not isinstance(keys, (list, tuple)) or not keys:
        raise TypeError(
            f"threadx.{indicator}: by must be a column name (str), a polars Expr, or a non-empty "
            f"list of them, got {by!r}"
        )
    return [to_expr(indicator, "by", k) for k in keys]


def sweep_values(value: object) -> list[Any] | None:
    """The values of a swept parameter (a list, tuple, range or 1-D array), or ``None`` for a
    single value."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        return None
    return list(value)


def check_sweep(ind: Indicator, params: dict[str, Any]) -> dict[str, float | list[float]]:
    """:func:`check_params` for a call whose parameters may be lists (a sweep): every value is
    checked, and so is every combination of them (the rules between parameters, such as MACD's
    ``fast < slow``, hold for each). Swept parameters stay lists, in the given order."""
    swept: dict[str, list[Any]] = {}
    for p in ind.params:
        values = sweep_values(params[p.name])
        if values is None:
            continue
        if not values:
            raise ValueError(
                f"threadx.{ind.name}: {p.name} was given an empty list; a sweep needs at least "
                "one value"
            )
        swept[p.name] = values
    if not swept:
        return check_params(ind, params)
    by_name = {p.name: p for p in ind.params}
    out: dict[str, float | list[float]] = {}
    for n, values in swept.items():
        checked = [check_param(ind.name, by_name[n], v) for v in values]
        if None in checked:
            raise ValueError(f"threadx.{ind.name}: {n} must be numbers in a sweep, got {values!r}")
        out[n] = checked  # type: ignore[assignment]
    # The rules between parameters hold for every combination.
    fixed: dict[str, float] = {}
    for combo in itertools.product(*swept.values()):
        fixed = check_params(ind, {**params, **dict(zip(swept, combo))})
    out.update({k: v for k, v in fixed.items() if k not in swept})
    return out


def check_some_params(caller: str, ind: Indicator, params: dict[str, Any]) -> dict[str, float]:
    """``params`` (a subset, by name; the others take their defaults) checked like a real call's,
    with a ValueError naming ``caller`` for a name the indicator does not have."""
    unknown = sorted(set(params) - {p.name for p in ind.params})
    if unknown:
        raise ValueError(
            f"threadx.{caller}: {ind.name} has no parameter {unknown[0]!r} "
            f"(parameters: {', '.join(p.name for p in ind.params) or 'none'})"
        )
    return check_params(ind, {**ind.defaults(), **params})


def lookback(name: str, **params: Any) -> int:
    """The number of warm-up (null) rows of indicator ``name`` with ``params`` (TA-Lib's lookback;
    parameters not given take their defaults)."""
    ind = find("lookback", name)
    return int(_internal.lookback(ind.name, check_some_params("lookback", ind, params)))


def catalog() -> pl.DataFrame:
    """Every indicator, one row each: ``name``, ``group``, ``talib`` (the TA-Lib twin or null),
    ``alias`` (its lowercase TA-Lib name when that differs), ``inputs`` (TA-Lib order),
    ``receiver`` (the input the ``pl.Expr.threadx`` method is called on),
    ``outputs`` (field names) and ``talib_outputs`` (TA-Lib's names for them), ``output_dtypes``
    (``Float64``, or ``Int32`` for ``row_outputs``: rows of the input column), ``params`` (list of
    structs: ``name``, ``kind``, ``default``, ``min``, ``max`` (null: unbounded), ``talib``,
    ``below``, ``doc``), ``lookback`` (in words), ``composition`` (kernel families) and ``devices``."""
    param_fields = {
        "name": pl.String,
        "kind": pl.String,
        "default": pl.Float64,
        "min": pl.Float64,
        "max": pl.Float64,
        "talib": pl.String,
        "below": pl.String,
        "doc": pl.String,
    }
    return pl.DataFrame(
        {
            "name": [i.name for i in INDICATORS],
            "group": [i.group for i in INDICATORS],
            "talib": [i.talib for i in INDICATORS],
            "alias": [i.alias for i in INDICATORS],
            "summary": [i.summary for i in INDICATORS],
            "inputs": [list(i.inputs) for i in INDICATORS],
            "receiver": [i.receiver for i in INDICATORS],
            "outputs": [list(i.outputs) for i in INDICATORS],
            "talib_outputs": [list(i.talib_outputs) for i in INDICATORS],
            "output_dtypes": [list(i.output_dtypes) for i in INDICATORS],
            "row_outputs": [list(i.row_outputs) for i in INDICATORS],
            "params": [[vars(p) for p in i.params] for i in INDICATORS],
            "lookback": [i.lookback for i in INDICATORS],
            "composition": [i.composition for i in INDICATORS],
            "devices": [list(i.devices) for i in INDICATORS],
        },
        schema={
            "name": pl.String,
            "group": pl.String,
            "talib": pl.String,
            "alias": pl.String,
            "summary": pl.String,
            "inputs": pl.List(pl.String),
            "receiver": pl.String,
            "outputs": pl.List(pl.String),
            "talib_outputs": pl.List(pl.String),
            "output_dtypes": pl.List(pl.String),
            "row_outputs": pl.List(pl.String),
            "params": pl.List(pl.Struct(param_fields)),
            "lookback": pl.String,
            "composition": pl.String,
            "devices": pl.List(pl.String),
        },
    )
