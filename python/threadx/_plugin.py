"""Registration of the Rust plugin functions as Polars expressions."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union

import polars as pl
from polars.plugins import register_plugin_function

PLUGIN_PATH = Path(__file__).parent

IntoExpr = Union[str, pl.Expr]


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


def call(function_name: str, args: list[pl.Expr], kwargs: dict[str, Any]) -> pl.Expr:
    """Every indicator is windowed or recursive: never elementwise, so `.over()`, `group_by` and
    the streaming engine hand it whole groups/columns instead of arbitrary slices."""
    return register_plugin_function(
        plugin_path=PLUGIN_PATH,
        function_name=function_name,
        args=args,
        kwargs=kwargs,
        is_elementwise=False,
    )
