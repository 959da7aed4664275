"""``Schema``: the ordered column specs of a pod's table, with inference, YAML and checks."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedplug._errors import SchemaError
from fedplug._validation import check_known_keys, int_at_least, positive_int
from fedplug.data._columns import DTYPES, STYPES, ColumnSpec, Stype, check_stype, python_scalar
from fedplug.data._text import did_you_mean, quoted, short_value, type_name
from fedplug.data._validate import Violation, find_violations, validation_error
from fedplug.data._warnings import SchemaWarning, yaml_key
from fedplug.data._yaml import dump_yaml, read_yaml, write_text

SCHEMA_KEYS: tuple[str, ...] = ("name", "columns", "num_rows")

# When an inferred continuous integer column is reported as probably holding codes: few
# distinct values (an industry code has ~50; age, hours worked and money amounts have more,
# or are spread far apart), each seen often (a small table has few values of anything),
# numbered closely (the values fill at least a quarter of the range they span).
CODE_MAX_VALUES = 60
CODE_MIN_ROWS_PER_VALUE = 100
CODE_MAX_SPAN_PER_VALUE = 4
# When an inferred string column is reported as probably numbers with a few stray markers.
NUMERIC_TEXT_MIN_SHARE = 0.9


def _storage_type(series: pd.Series, name: str) -> tuple[str, pd.Series]:
    """The schema dtype of a column, and the series to take values from."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(object)
    kind = series.dtype
    if pd.api.types.is_bool_dtype(kind):
        return "bool", series
    if pd.api.types.is_integer_dtype(kind):
        return "int", series
    if pd.api.types.is_float_dtype(kind):
        return "float", series
    if isinstance(kind, pd.StringDtype):
        return "string", series
    if pd.api.types.is_object_dtype(kind):
        inferred = pd.api.types.infer_dtype(series, skipna=True)
        by_inferred = {
            "string": "string",
            "empty": "string",
            "boolean": "bool",
            "integer": "int",
            "floating": "float",
            "mixed-integer-float": "float",
        }
        if inferred in by_inferred:
            return by_inferred[inferred], series
        types = sorted({type_name(v) for v in series.dropna().tolist()})
        raise SchemaError(
            f"column {name!r} mixes value types ({', '.join(types)}); convert it to a single "
            "type before loading, or leave it out with ignore_cols"
        )
    raise SchemaError(
        f"column {name!r} has dtype {kind}, which schemas do not support (only numbers, "
        "booleans and strings); convert it (e.g. dates to strings) or leave it out with "
        "ignore_cols"
    )


def _infer_column(
    name: str,
    series: pd.Series,
    forced: Stype | None,
    max_categories: int,
    description: str | None,
) -> ColumnSpec:
    dtype, series = _storage_type(series, name)
    present = series.dropna()
    stype: Stype
    if forced is None:
        if dtype in ("int", "float"):
            stype = "continuous"
        elif dtype == "bool":
            stype = "categorical"
        else:
            stype = "categorical" if present.nunique() <= max_categories else "text"
    else:
        stype = forced
    if stype == "continuous" and dtype not in ("int", "float"):
        raise SchemaError(
            f"column {name!r} holds {dtype} values and cannot be continuous; force it to "
            "'categorical' or 'text' instead, or convert it to numbers"
        )
    if stype == "text" and dtype != "string":
        raise SchemaError(
            f"column {name!r} holds {dtype} values; only string columns can be 'text'; force it "
            "to 'continuous' or 'categorical' instead"
        )
    categories = None
    if stype == "categorical":
        values = pd.unique(present)
        if dtype == "float":
            as_float = np.asarray(values, dtype=float)
            if not np.all(np.isclose(as_float, np.round(as_float))):
                raise SchemaError(
                    f"column {name!r} holds non-integer numbers and cannot be categorical; "
                    "keep it continuous, or round it to integers first"
                )
            # Integral floats come from int columns with missing values (CSV reading).
            dtype, values = "int", np.round(as_float).astype(np.int64)
        categories = tuple(python_scalar(v) for v in values)
    return ColumnSpec(
        name=name,
        stype=stype,
        dtype=dtype,
        categories=categories,
        nullable=bool(series.isna().any()),
        description=description,
    )


def _preview(values: list[Any], limit: int = 6) -> str:
    shown = [str(v) for v in values[:limit]]
    if len(values) > limit:
        shown[-1:] = ["...", str(values[-1])]
    return ", ".join(shown)


def _integer_codes(series: pd.Series, dtype: str) -> list[int] | None:
    """The sorted distinct values of an integer column that looks like codes, else None."""
    present = series.dropna()
    if dtype == "float":
        as_float = present.to_numpy(dtype=float)
        # Integral floats are int columns with missing values, as read from CSV.
        if len(as_float) == 0 or not np.all(np.isfinite(as_float)):
            return None
        if not np.all(as_float == np.round(as_float)):
            return None
    values = np.unique(present.to_numpy())
    if not 2 <= len(values) <= CODE_MAX_VALUES:
        return None
    if len(present) < CODE_MIN_ROWS_PER_VALUE * len(values):
        return None
    low, high = int(values[0]), int(values[-1])
    if high - low + 1 > CODE_MAX_SPAN_PER_VALUE * len(values):
        return None
    return [int(v) for v in values]


def _stray_strings(series: pd.Series) -> tuple[list[str], int, int] | None:
    """For a string column that is mostly numbers: the non-numbers (most frequent first),
    their row count and the count of non-null rows; else None."""
    counts = series.dropna().value_counts()
    if counts.empty:
        return None
    distinct = pd.Series(counts.index.to_numpy(dtype=object), dtype=object)
    numeric = pd.to_numeric(distinct, errors="coerce").notna().to_numpy()
    if numeric.all() or not numeric.any():
        return None
    rows = counts.to_numpy()
    total = int(rows.sum())
    if rows[numeric].sum() < NUMERIC_TEXT_MIN_SHARE * total:
        return None
    return [str(v) for v in distinct[~numeric]], int(rows[~numeric].sum()), total


def _warn_inference(where: str, spec: ColumnSpec, series: pd.Series, stacklevel: int) -> None:
    """Warn when an inferred (not forced) column type is probably not what the data means."""
    key = yaml_key(spec.name)
    if spec.stype == "continuous":
        codes = _integer_codes(series, spec.dtype)
        if codes is None:
            return
        message = (
            f"{where}: column {spec.name!r} holds integers with only {len(codes)} distinct "
            f"values ({_preview(codes)}) and was inferred as continuous. If they are codes for "
            "categories (an industry or occupation code, a yes/no flag, a survey year), "
            f"declare it categorical under schema.infer in the pod YAML: `force_stypes: "
            f"{{{key}: categorical}}` (in Python: Schema.infer(..., force_stypes="
            f"{{{spec.name!r}: 'categorical'}})). If they are amounts or ordered levels whose "
            f"differences mean something, keep it continuous and say so, `force_stypes: "
            f"{{{key}: continuous}}`, which silences this warning."
        )
    elif spec.dtype == "string":
        stray = _stray_strings(series)
        if stray is None:
            return
        values, bad_rows, total = stray
        shown = values[:5]
        more = f" and {len(values) - len(shown)} more" if len(values) > len(shown) else ""
        na_values = ", ".join(json.dumps(v) for v in shown)
        message = (
            f"{where}: column {spec.name!r} was inferred as {spec.stype} because it holds "
            f"strings, but only {bad_rows} of its {total} values are not numbers: "
            f"{quoted(shown)}{more}. If these mark missing values, read them as missing "
            f"(for a CSV datasource add `na_values: [{na_values}]` under datasource in the pod "
            "YAML; for other sources clean them at the source) and the column infers as "
            "continuous. If the column really is "
            f"{spec.stype}, say so under schema.infer: `force_stypes: {{{key}: {spec.stype}}}`, "
            "which silences this warning."
        )
    else:
        return
    warnings.warn(message, SchemaWarning, stacklevel=stacklevel + 1)


def _where(name: str | None) -> str:
    return f"schema {name!r}" if name is not None else "Schema.infer"


def _check_known(kind: str, names: Iterable[str], available: list[str]) -> None:
    check_known_keys(
        names,
        available,
        where=kind,
        noun="column",
        error=SchemaError,
        fix=f"the data has the columns {quoted(available)}",
    )


class Schema(Mapping[str, ColumnSpec]):
    """Ordered mapping of column name -> ``ColumnSpec``, plus a name and a row count.

    ``num_rows`` is a count only (never rows) and is not part of equality: two schemas are
    equal when their names and ordered column specs are.
    """

    def __init__(
        self,
        columns: Iterable[ColumnSpec] | Mapping[str, ColumnSpec] = (),
        *,
        name: str | None = None,
        num_rows: int | None = None,
    ) -> None:
        specs = list(columns.values()) if isinstance(columns, Mapping) else list(columns)
        self._columns: dict[str, ColumnSpec] = {}
        for spec in specs:
            if not isinstance(spec, ColumnSpec):
                raise SchemaError(
                    f"schema columns must be ColumnSpec objects, got {short_value(spec)}"
                )
            if spec.name in self._columns:
                raise SchemaError(
                    f"column {spec.name!r} is declared twice in schema {name!r}; keep one"
                )
            self._columns[spec.name] = spec
        if name is not None and not isinstance(name, str):
            raise SchemaError(f"schema name must be a string, got {short_value(name)}")
        self.name = name
        self.num_rows = None
        if num_rows is not None:
            self.num_rows = int_at_least(
                num_rows,
                0,
                name="schema num_rows",
                error=SchemaError,
                fix="give the row count (num_rows: 0 or more) or leave it out",
            )

    # -- mapping protocol -----------------------------------------------------------------
    def __getitem__(self, column: str) -> ColumnSpec:
        try:
            return self._columns[column]
        except KeyError:
            raise SchemaError(
                f"schema {self.name!r} has no column {column!r}"
                f"{did_you_mean(str(column), self._columns)}; its columns are "
                f"{quoted(self._columns)}"
            ) from None

    def get(self, column: str, default: Any = None) -> Any:
        return self._columns.get(column, default)

    def __contains__(self, column: object) -> bool:
        return column in self._columns

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Schema):
            return NotImplemented
        return self.name == other.name and list(self._columns.values()) == list(
            other._columns.values()
        )

    def __hash__(self) -> int:
        return hash((self.name, tuple(self._columns.values())))

    def __repr__(self) -> str:
        return (
            f"Schema(name={self.name!r}, num_rows={self.num_rows!r}, "
            f"columns={list(self._columns)!r})"
        )

    # -- views ----------------------------------------------------------------------------
    @property
    def columns(self) -> list[str]:
        return list(self._columns)

    def _of_stype(self, stype: str) -> list[str]:
        return [n for n, spec in self._columns.items() if spec.stype == stype]

    def continuous(self) -> list[str]:
        return self._of_stype("continuous")

    def categorical(self) -> list[str]:
        return self._of_stype("categorical")

    def text(self) -> list[str]:
        return self._of_stype("text")

    def select(self, columns: Iterable[str]) -> Schema:
        """The schema of ``columns`` only, in the order given."""
        if isinstance(columns, str):
            columns = [columns]
        wanted = list(columns)
        unknown = [c for c in wanted if c not in self._columns]
        if unknown:
            raise SchemaError(
                f"cannot select column(s) {quoted(unknown)}: schema {self.name!r} does not "
                f"have them{did_you_mean(str(unknown[0]), self._columns)}; its columns are "
                f"{quoted(self._columns)}"
            )
        return Schema([self._columns[c] for c in wanted], name=self.name, num_rows=self.num_rows)

    # -- inference ------------------------------------------------------------------------
    @classmethod
    def infer(
        cls,
        frame: pd.DataFrame,
        *,
        name: str | None = None,
        force_stypes: Mapping[str, str] | None = None,
        ignore_cols: Iterable[str] = (),
        descriptions: Mapping[str, str] | None = None,
        max_categories: int = 100,
        warn_as: str | None = None,
    ) -> Schema:
        """Infer a schema from a frame.

        Numbers are continuous, booleans categorical, strings categorical when they have at
        most ``max_categories`` distinct values and text otherwise; ``force_stypes``
        overrides that per column. Vocabularies are the sorted distinct non-null values.

        A ``SchemaWarning`` flags each column whose inferred type is probably wrong (a
        column in ``force_stypes`` never is): an integer column that looks like codes (at
        most ``CODE_MAX_VALUES`` distinct values, each on ``CODE_MIN_ROWS_PER_VALUE`` rows
        on average, spanning at most ``CODE_MAX_SPAN_PER_VALUE`` times as many integers as
        it has values), and a string column whose values are at least
        ``NUMERIC_TEXT_MIN_SHARE`` numbers (the rest: markers such as "?"). ``warn_as``
        names the table in those warnings (default: the schema's name).
        """
        if not isinstance(frame, pd.DataFrame):
            raise SchemaError(
                f"Schema.infer needs a pandas DataFrame, got {type_name(frame)}; load the "
                "data into a DataFrame first"
            )
        max_categories = positive_int(
            max_categories,
            name="max_categories",
            error=SchemaError,
            fix="pass e.g. max_categories=50",
        )
        labels = list(frame.columns)
        bad_labels = [c for c in labels if not isinstance(c, str)]
        if bad_labels:
            raise SchemaError(
                f"column labels must be strings, got {quoted(bad_labels[:5])}; name the "
                "columns (e.g. read_csv(names=[...]) or frame.columns = [...])"
            )
        duplicated = sorted({c for c in labels if labels.count(c) > 1})
        if duplicated:
            raise SchemaError(
                f"column(s) {quoted(duplicated)} appear more than once in the data; give every "
                "column a unique name"
            )
        force = dict(force_stypes or {})
        if isinstance(ignore_cols, str):
            ignore_cols = [ignore_cols]
        ignored = list(ignore_cols)
        notes = dict(descriptions or {})
        _check_known("force_stypes", force, labels)
        _check_known("ignore_cols", ignored, labels)
        _check_known("descriptions", notes, labels)
        forced = {
            col: check_stype(stype, f"force_stypes for column {col!r}")
            for col, stype in force.items()
        }
        for col, text in notes.items():
            if not isinstance(text, str):
                raise SchemaError(
                    f"description of column {col!r} must be a string, got {type_name(text)}"
                )
        specs = []
        for col in labels:
            if col in ignored:
                continue
            spec = _infer_column(col, frame[col], forced.get(col), max_categories, notes.get(col))
            if col not in forced:
                _warn_inference(warn_as or _where(name), spec, frame[col], stacklevel=2)
            specs.append(spec)
        return cls(specs, name=name, num_rows=len(frame))

    # -- serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """``{name?, columns: {col: {stype, dtype, categories?, nullable, description?}}}``."""
        out: dict[str, Any] = {}
        if self.name is not None:
            out["name"] = self.name
        out["columns"] = {n: spec.to_dict() for n, spec in self._columns.items()}
        return out

    def metadata(self) -> dict[str, Any]:
        """What a pod publishes about its data: ``to_dict()`` plus ``num_rows`` (JSON-safe)."""
        out = self.to_dict()
        out["num_rows"] = self.num_rows
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str = "schema") -> Schema:
        """Inverse of ``to_dict`` / ``metadata``; ``source`` names the origin in errors."""
        if not isinstance(d, Mapping):
            raise SchemaError(
                f"{source}: expected a mapping with keys {quoted(SCHEMA_KEYS)}, got "
                f"{short_value(d)}; write `columns:` at the top level"
            )
        check_known_keys(
            d,
            SCHEMA_KEYS,
            where=source,
            error=SchemaError,
            fix=f"valid top-level keys are {quoted(SCHEMA_KEYS)}",
        )
        columns = d.get("columns")
        if not isinstance(columns, Mapping) or not columns:
            raise SchemaError(
                f"{source}: 'columns' must be a non-empty mapping of column name -> "
                "{stype, dtype, categories, nullable, description}"
            )
        specs = [ColumnSpec.from_dict(str(n), spec, source) for n, spec in columns.items()]
        try:
            return cls(specs, name=d.get("name"), num_rows=d.get("num_rows"))
        except SchemaError as exc:
            raise SchemaError(f"{source}: {exc}") from exc

    def to_yaml(self, path: str | Path) -> Path:
        """Write the schema as readable YAML; returns the path written."""
        path = Path(path)
        header = (
            "# fedplug schema: semantic type (stype), storage type (dtype), vocabulary\n"
            "# (categories, categorical only) and nullability of each column.\n"
            f"# Valid stypes: {', '.join(STYPES)}. Valid dtypes: {', '.join(DTYPES)}.\n"
        )
        write_text(path, header + dump_yaml(self.to_dict()), what="schema file", error=SchemaError)
        return path

    @classmethod
    def from_yaml(cls, path: str | Path) -> Schema:
        path = Path(path)
        data = read_yaml(
            path,
            what="schema file",
            error=SchemaError,
            fix="check the path (schema.file in the pod YAML is relative to the pod file)",
        )
        return cls.from_dict(data, source=f"schema file '{path}'")

    # -- validation -----------------------------------------------------------------------
    def violations(self, frame: pd.DataFrame, max_examples: int = 5) -> list[Violation]:
        """Every way ``frame`` breaks this schema (extra columns are allowed)."""
        return find_violations(self._columns, frame, max_examples=max_examples)

    def validate(
        self,
        frame: pd.DataFrame,
        *,
        pod: str | None = None,
        where: str | None = None,
        fix: str | None = None,
    ) -> None:
        """Raise ``DataValidationError`` listing every violation; never modifies ``frame``.

        ``pod`` names the pod whose data this is; for other data, ``where`` names it (e.g.
        "the frame passed to predict()") and ``fix`` says how to fix it, in place of the
        advice about a pod's data and schema files.
        """
        found = self.violations(frame)
        if found:
            raise validation_error(
                found,
                pod=pod,
                schema_name=self.name,
                schema_columns=list(self.columns),
                where=where,
                fix=fix,
            )
