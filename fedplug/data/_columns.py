"""``ColumnSpec``: the description of one column of a pod's table."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np

from fedplug._errors import SchemaError
from fedplug._validation import check_known_keys
from fedplug.data._text import did_you_mean, quoted, short_value, type_name

STYPES: tuple[str, ...] = ("continuous", "categorical", "text")
DTYPES: tuple[str, ...] = ("float", "int", "bool", "string")
COLUMN_KEYS: tuple[str, ...] = ("stype", "dtype", "categories", "nullable", "description")

# dtypes each semantic type may have; a continuous column of strings cannot be scaled,
# a text column is never encoded, so it only makes sense for strings.
_ALLOWED_DTYPES = {
    "continuous": ("float", "int"),
    "categorical": ("int", "bool", "string"),
    "text": ("string",),
}
_DEFAULT_DTYPE = {"continuous": "float", "categorical": "string", "text": "string"}

Category = str | int | bool
Stype = Literal["continuous", "categorical", "text"]


def check_stype(stype: Any, where: str) -> Stype:
    if stype not in STYPES:
        raise SchemaError(
            f"{where}: unknown stype {short_value(stype)}{did_you_mean(str(stype), STYPES)}; "
            f"use one of {quoted(STYPES)}"
        )
    return cast(Stype, stype)  # one of STYPES, the values of Stype


def python_scalar(value: Any) -> Any:
    """numpy scalars -> plain Python values, so schemas stay JSON- and YAML-safe."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def _category_ok(value: Any, dtype: str) -> bool:
    if dtype == "string":
        return isinstance(value, str)
    if dtype == "bool":
        return isinstance(value, bool)
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class ColumnSpec:
    """One column: semantic type, storage type, vocabulary (categorical only), nullability.

    ``categories`` is stored sorted, so two specs with the same vocabulary compare equal.
    """

    name: str
    stype: Stype
    dtype: str
    categories: tuple[Category, ...] | None = None
    nullable: bool = False
    description: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SchemaError(
                f"column name {short_value(self.name)} is not a non-empty string; "
                "name every column with a string"
            )
        where = f"column {self.name!r}"
        check_stype(self.stype, where)
        if self.dtype not in DTYPES:
            raise SchemaError(
                f"{where}: unknown dtype {short_value(self.dtype)}"
                f"{did_you_mean(str(self.dtype), DTYPES)}; use one of {quoted(DTYPES)}"
            )
        allowed = _ALLOWED_DTYPES[self.stype]
        if self.dtype not in allowed:
            raise SchemaError(
                f"{where}: a {self.stype} column cannot have dtype {self.dtype!r}; "
                f"use one of {quoted(allowed)} or change the stype"
            )
        if not isinstance(self.nullable, (bool, np.bool_)):
            raise SchemaError(
                f"{where}: nullable must be true or false, got {short_value(self.nullable)}"
            )
        object.__setattr__(self, "nullable", bool(self.nullable))
        if self.description is not None and not isinstance(self.description, str):
            raise SchemaError(
                f"{where}: description must be a string, got {type_name(self.description)}"
            )
        object.__setattr__(self, "categories", self._checked_categories(where))

    def _checked_categories(self, where: str) -> tuple[Category, ...] | None:
        if self.stype != "categorical":
            if self.categories is not None:
                raise SchemaError(
                    f"{where}: only categorical columns have categories, this one is "
                    f"{self.stype}; remove its categories or make it categorical"
                )
            return None
        if self.categories is None:
            raise SchemaError(
                f"{where}: a categorical column needs its categories (the list of allowed "
                "values); add them, or infer the schema from data"
            )
        if isinstance(self.categories, (str, bytes, Mapping)) or not isinstance(
            self.categories, Iterable
        ):
            raise SchemaError(
                f"{where}: categories must be a list of values, got {type_name(self.categories)}"
            )
        values = [python_scalar(v) for v in self.categories]
        wrong = [v for v in values if not _category_ok(v, self.dtype)]
        if wrong:
            hint = " (quote them in YAML)" if self.dtype == "string" else ""
            raise SchemaError(
                f"{where}: categories of a {self.dtype} column must all be {self.dtype} "
                f"values{hint}; these are not: {quoted(wrong[:5])}"
            )
        seen: set[Any] = set()
        duplicates = []
        for v in values:
            if v in seen:
                duplicates.append(v)
            seen.add(v)
        if duplicates:
            raise SchemaError(
                f"{where}: categories listed more than once: {quoted(duplicates[:5])}; "
                "list each value once"
            )
        return tuple(sorted(values))

    @classmethod
    def default_dtype(cls, stype: str) -> str:
        return _DEFAULT_DTYPE[stype]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"stype": self.stype, "dtype": self.dtype}
        if self.categories is not None:
            out["categories"] = list(self.categories)
        out["nullable"] = self.nullable
        if self.description is not None:
            out["description"] = self.description
        return out

    @classmethod
    def from_dict(cls, name: str, d: Any, source: str) -> ColumnSpec:
        """Build from the YAML form ``{stype, dtype?, categories?, nullable?, description?}``.

        ``source`` names where the dict came from (a schema file), for error messages.
        """
        where = f"{source}: column {name!r}"
        if not isinstance(d, Mapping):
            raise SchemaError(
                f"{where}: expected a mapping with keys {quoted(COLUMN_KEYS)}, got {short_value(d)}"
            )
        check_known_keys(d, COLUMN_KEYS, where=where, error=SchemaError)
        if "stype" not in d:
            raise SchemaError(f"{where}: missing key 'stype'; add one of {quoted(STYPES)}")
        stype = check_stype(d["stype"], where)
        try:
            return cls(
                name=name,
                stype=stype,
                dtype=d.get("dtype", _DEFAULT_DTYPE[stype]),
                categories=d.get("categories"),
                nullable=d.get("nullable", False),
                description=d.get("description"),
            )
        except SchemaError as exc:
            # The spec's own message names the column; add the file or dict it came from.
            raise SchemaError(f"{source}: {exc}") from exc
