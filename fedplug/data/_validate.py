"""Checking a frame against column specs; every problem becomes one ``Violation``.

All checks are vectorised and read-only: the frame is never modified.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fedplug._errors import DataValidationError
from fedplug.data._columns import ColumnSpec, python_scalar
from fedplug.data._text import quoted, short_value


@dataclass(frozen=True)
class Violation:
    """One way a frame breaks its schema: the column (None for the whole table), what is
    wrong, and a few offending row positions (0-based) with their values."""

    column: str | None
    problem: str
    rows: tuple[int, ...] = ()
    values: tuple[Any, ...] = ()

    def __str__(self) -> str:
        where = "table" if self.column is None else f"column {self.column!r}"
        text = f"{where}: {self.problem}"
        if self.rows and len(self.values) == len(self.rows):
            pairs = ", ".join(
                f"{r} ({short_value(v)})" for r, v in zip(self.rows, self.values, strict=True)
            )
            text += f"; rows {pairs}"
        elif self.rows:
            text += f"; rows {', '.join(str(r) for r in self.rows)}"
        return text


def _examples(
    column: pd.Series, mask: np.ndarray, max_examples: int, with_values: bool
) -> tuple[tuple[int, ...], tuple[Any, ...]]:
    positions = np.flatnonzero(mask)[:max_examples]
    rows = tuple(int(p) for p in positions)
    if not with_values:
        return rows, ()
    return rows, tuple(python_scalar(v) for v in column.iloc[positions].tolist())


def _values_of_wrong_type(values: pd.Series, dtype: str) -> tuple[np.ndarray, str]:
    """Mask of non-null values that cannot be of ``dtype``, and a phrase describing them."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
    kind = values.dtype
    if dtype in ("float", "int"):
        if pd.api.types.is_bool_dtype(kind):
            return np.ones(len(values), dtype=bool), "boolean value(s) where numbers are expected"
        if pd.api.types.is_numeric_dtype(kind):
            numeric = values
            bad = np.zeros(len(values), dtype=bool)
        else:
            # Numeric strings are accepted (they convert losslessly); anything else is not.
            numeric = pd.to_numeric(values.astype(object), errors="coerce")
            bad = numeric.isna().to_numpy()
            if bad.any():
                return bad, "non-numeric value(s) in a numeric column"
        if dtype == "int" and pd.api.types.is_float_dtype(numeric.dtype):
            as_float = numeric.to_numpy(dtype=float)
            bad = bad | ~np.isclose(as_float, np.round(as_float))
            return bad, "non-integer value(s) in an int column"
        return bad, ""
    if dtype == "bool":
        if pd.api.types.is_bool_dtype(kind):
            return np.zeros(len(values), dtype=bool), ""
        ok = values.map(lambda v: isinstance(v, (bool, np.bool_))).to_numpy(dtype=bool)
        return ~ok, "non-boolean value(s) in a bool column"
    # string
    if isinstance(kind, pd.StringDtype):
        return np.zeros(len(values), dtype=bool), ""
    if pd.api.types.is_object_dtype(kind):
        ok = values.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
        return ~ok, "non-string value(s) in a string column"
    return np.ones(len(values), dtype=bool), f"{kind} value(s) where strings are expected"


def _check_column(spec: ColumnSpec, column: pd.Series, max_examples: int) -> list[Violation]:
    found: list[Violation] = []
    null = column.isna().to_numpy(dtype=bool)
    if null.any() and not spec.nullable:
        rows, _ = _examples(column, null, max_examples, with_values=False)
        found.append(
            Violation(spec.name, f"{int(null.sum())} null value(s) in a non-nullable column", rows)
        )
    present_mask = ~null
    if not present_mask.any():
        return found
    present = column[present_mask]
    # A continuous column is scaled as floats whatever its stored dtype: an int one
    # takes 25.5 too (its dtype records what the pod held, not a constraint).
    dtype = "float" if spec.stype == "continuous" else spec.dtype
    wrong, phrase = _values_of_wrong_type(present, dtype)
    if wrong.any():
        full = np.zeros(len(column), dtype=bool)
        full[np.flatnonzero(present_mask)[wrong]] = True
        rows, values = _examples(column, full, max_examples, with_values=True)
        found.append(
            Violation(
                spec.name,
                f"{int(full.sum())} {phrase} (schema says {spec.stype}, dtype {spec.dtype})",
                rows,
                values,
            )
        )
    if spec.stype == "categorical" and spec.categories is not None:
        outside = ~present.isin(list(spec.categories)).to_numpy(dtype=bool) & ~wrong
        if outside.any():
            full = np.zeros(len(column), dtype=bool)
            full[np.flatnonzero(present_mask)[outside]] = True
            distinct = pd.unique(present[outside])
            shown = [python_scalar(v) for v in distinct[:max_examples]]
            more = f" and {len(distinct) - len(shown)} more" if len(distinct) > len(shown) else ""
            rows, values = _examples(column, full, max_examples, with_values=True)
            found.append(
                Violation(
                    spec.name,
                    f"{int(full.sum())} value(s) outside the declared vocabulary "
                    f"({quoted(shown)}{more} not in the schema's {len(spec.categories)} "
                    "categories)",
                    rows,
                    values,
                )
            )
    return found


def find_violations(
    columns: Mapping[str, ColumnSpec], frame: Any, max_examples: int = 5
) -> list[Violation]:
    """Every violation of ``columns`` by ``frame`` (extra frame columns are ignored)."""
    if not isinstance(frame, pd.DataFrame):
        return [Violation(None, f"expected a pandas DataFrame, got {type(frame).__name__}")]
    found: list[Violation] = []
    if len(frame) == 0:
        found.append(Violation(None, "the table is empty (0 rows)"))
    names = [str(c) for c in frame.columns]
    counts = pd.Series(names).value_counts()
    for name, spec in columns.items():
        n = int(counts.get(name, 0))
        if n == 0:
            found.append(
                Violation(
                    name,
                    "declared in the schema but missing from the data "
                    f"(columns present: {quoted(names[:20])}"
                    f"{', ...' if len(names) > 20 else ''})",
                )
            )
            continue
        if n > 1:
            found.append(Violation(name, f"appears {n} times in the data; keep one"))
            continue
        position = names.index(name)
        column = frame.iloc[:, position].reset_index(drop=True)
        found.extend(_check_column(spec, column, max_examples))
    return found


POD_FIX = (
    "Fix the data, or fix the schema if it is the schema that is wrong (the file named by "
    "schema.file in the pod YAML, or the schema.infer options)."
)


def validation_error(
    violations: Sequence[Violation],
    *,
    pod: str | None,
    schema_name: str | None,
    schema_columns: Sequence[str] = (),
    where: str | None = None,
    fix: str | None = None,
) -> DataValidationError:
    """One ``DataValidationError`` listing every violation on its own line.

    ``where`` names data that is not a pod's (e.g. "the frame passed to predict()") and
    ``fix`` replaces the closing advice, which by default is about a pod's data and schema.
    """
    subject = where or (f"data of pod {pod!r}" if pod else "the data")
    schema = f"schema {schema_name!r}" if schema_name else "its schema"
    prefix = f"pod {pod!r}, " if pod and not where else ""
    lines = [
        f"{subject[0].upper()}{subject[1:]} does not conform to {schema} "
        f"({len(violations)} violation{'s' if len(violations) != 1 else ''}; rows are 0-based: "
        "row 0 is the first data row):"
    ]
    lines += [f"  - {prefix}{v}" for v in violations]
    lines.append(fix or POD_FIX)
    columns = [v.column for v in violations if v.column is not None and v.column in schema_columns]
    return DataValidationError("\n".join(lines), violations, pod=pod, columns=columns)
