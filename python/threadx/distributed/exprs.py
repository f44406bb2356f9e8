"""Shipping the user's expressions to the workers.

An expression travels as Polars' JSON serialization. A threadx indicator is a plugin call, and its
serialization names the plugin library by absolute path; on a cluster a worker's threadx may be
installed elsewhere (another virtualenv, or Ray's per-job environments), so each worker replaces
the driver's library path with its own before deserializing. JSON rather than the binary format
because a path of another length can be substituted in text and not in the binary encoding.
Driver and workers must run the same Polars version, as for any serialized Polars expression.
"""

from __future__ import annotations

import functools
import io
import json
import re
from collections.abc import Mapping, Sequence

import polars as pl

WHERE = "threadx.distributed.compute"

_LIB = re.compile(r'"lib":"((?:[^"\\]|\\.)*)"')


@functools.lru_cache(maxsize=1)
def plugin_lib() -> str:
    """The path of this process's threadx plugin library, as Polars writes it in a serialized
    indicator call."""
    import threadx

    text = threadx.sma("x", 2).meta.serialize(format="json")
    found = _LIB.search(text)
    if found is None:  # a Polars whose JSON has no "lib" field: no substitution is possible
        return ""
    return json.loads(f'"{found.group(1)}"')


def ship(exprs: object) -> tuple[tuple[str, str], ...]:
    """``exprs`` (a dict name -> expression) as (name, JSON) pairs, checked on the driver."""
    if not isinstance(exprs, Mapping) or not exprs:
        raise ValueError(
            f"{WHERE}: exprs must be a non-empty dict of output name -> Polars expression, "
            f"got {exprs!r}"
        )
    out = []
    for name, expr in exprs.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"{WHERE}: exprs keys must be non-empty column names, got {name!r}")
        if not isinstance(expr, pl.Expr):
            raise ValueError(  # noqa: TRY004  (ValueError for every bad argument, as in threadx)
                f"{WHERE}: exprs[{name!r}] must be a Polars expression, got {expr!r}"
            )
        try:
            text = expr.meta.serialize(format="json")
        except Exception as e:  # noqa: BLE001  (whatever Polars raises, say which expression)
            raise ValueError(
                f"{WHERE}: exprs[{name!r}] cannot be serialized for the workers: {e} (an "
                "expression calling a Python function needs the cloudpickle package)"
            ) from None
        out.append((name, text))
    return tuple(out)


def rebuild(
    shipped: Sequence[tuple[str, str]], driver_lib: str, by: Sequence[str]
) -> list[pl.Expr]:
    """The expressions, each computed per ``by`` group (``.over(by)``) and named."""
    own = plugin_lib()
    old, new = json.dumps(driver_lib)[1:-1], json.dumps(own)[1:-1]
    out = []
    for name, text in shipped:
        if driver_lib and own and driver_lib != own:
            text = text.replace(f'"lib":"{old}"', f'"lib":"{new}"')
        expr = pl.Expr.deserialize(io.StringIO(text), format="json")
        out.append(expr.over(list(by)).alias(name))
    return out


def output_schema(
    schema: pl.Schema,
    by: Sequence[str],
    order_by: Sequence[str],
    shipped: Sequence[tuple[str, str]],
) -> pl.Schema:
    """The result's schema, resolved on an empty frame: an expression naming a column the source
    lacks (or otherwise invalid) fails here, before any work."""
    frame = pl.LazyFrame(schema=schema).sort([*by, *order_by])
    try:
        return frame.with_columns(rebuild(shipped, plugin_lib(), by)).collect_schema()
    except Exception as e:  # noqa: BLE001  (Polars' reason, before the cluster starts)
        raise ValueError(f"{WHERE}: the expressions do not apply to the source: {e}") from None
