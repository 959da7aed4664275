"""Train / validation splits of a pod's table."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from fedplug._errors import ConfigError, DataValidationError, PodConfigError
from fedplug._validation import check_known_keys, int_at_least
from fedplug.data._text import did_you_mean, quoted, short_value, type_name
from fedplug.data._validate import Violation


class Split(ABC):
    """Base class: ``apply(frame) -> (train, validation)``; never modifies ``frame``."""

    kind: ClassVar[str] = "split"
    #: Columns the split uses up (they are not features and are dropped from both parts).
    consumed_columns: tuple[str, ...] = ()

    @abstractmethod
    def apply(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``(train, validation)`` parts of ``frame``."""

    def describe(self) -> str:
        return self.kind

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """The split as it is written in a pod's YAML."""


class PercentageSplit(Split):
    """A seeded random ``validation`` fraction of the rows; the same seed gives the same split.

    Both parts keep the table's row order and get a fresh 0..n-1 index.
    """

    kind = "percentage"

    def __init__(self, validation: float = 0.1, seed: int = 42) -> None:
        if (
            isinstance(validation, bool)
            or not isinstance(validation, (int, float))
            or not (0.0 <= float(validation) < 1.0)
        ):
            raise ConfigError(
                f"percentage split: validation must be a fraction in [0, 1), got "
                f"{short_value(validation)}; e.g. 0.1 keeps 10% of the rows for validation"
            )
        self.validation = float(validation)
        self.seed = int_at_least(
            seed, 0, name="percentage split: seed", fix="e.g. seed: 42 (any whole number >= 0)"
        )

    def describe(self) -> str:
        return f"percentage: {self.validation:.0%} validation, seed {self.seed}"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "validation": self.validation, "seed": self.seed}

    def apply(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        n = len(frame)
        n_validation = int(round(n * self.validation))
        if n > 0:
            n_validation = min(n_validation, n - 1)  # never leave training empty
        order = np.random.default_rng(self.seed).permutation(n)
        is_validation = np.zeros(n, dtype=bool)
        is_validation[order[:n_validation]] = True
        train = frame.iloc[np.flatnonzero(~is_validation)].reset_index(drop=True)
        validation = frame.iloc[np.flatnonzero(is_validation)].reset_index(drop=True)
        return train, validation


class ColumnSplit(Split):
    """Rows marked ``train_value`` / ``validation_value`` in ``column``; drops that column."""

    kind = "column"

    def __init__(
        self,
        column: str = "split",
        train_value: Any = "train",
        validation_value: Any = "validation",
    ) -> None:
        if not isinstance(column, str) or not column:
            raise ConfigError(
                f"column split: column must be a column name, got {short_value(column)}"
            )
        if train_value == validation_value:
            raise ConfigError(
                f"column split: train_value and validation_value are both "
                f"{short_value(train_value)}; give them different values"
            )
        self.column = column
        self.train_value = train_value
        self.validation_value = validation_value
        self.consumed_columns = (column,)

    def describe(self) -> str:
        return (
            f"column {self.column!r}: {self.train_value!r} -> train, "
            f"{self.validation_value!r} -> validation"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "column": self.column,
            "train_value": self.train_value,
            "validation_value": self.validation_value,
        }

    def apply(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        if self.column not in frame.columns:
            raise DataValidationError(
                f"column split: the data has no column {self.column!r}"
                f"{did_you_mean(self.column, [str(c) for c in frame.columns])}; columns "
                f"present: {quoted(frame.columns)}; fix split.column in the pod YAML",
                [Violation(self.column, "split column missing from the data")],
            )
        marks = frame[self.column].reset_index(drop=True)
        is_train = (marks == self.train_value).to_numpy(dtype=bool)
        is_validation = (marks == self.validation_value).to_numpy(dtype=bool)
        other = ~(is_train | is_validation)
        if other.any():
            rows = np.flatnonzero(other)[:5]
            values = tuple(None if pd.isna(v) else v for v in marks.iloc[rows].tolist())
            odd = marks[other]
            unexpected = list(dict.fromkeys(None if pd.isna(v) else v for v in odd.tolist()))
            violation = Violation(
                self.column,
                f"{int(other.sum())} row(s) are neither {self.train_value!r} nor "
                f"{self.validation_value!r}",
                tuple(int(r) for r in rows),
                values,
            )
            raise DataValidationError(
                f"column split on {self.column!r}: unexpected value(s) "
                f"{quoted(unexpected[:10])}; {violation}. Mark every row "
                f"{self.train_value!r} or {self.validation_value!r}, or fix split.train_value / "
                "split.validation_value in the pod YAML",
                [violation],
            )
        rest = frame.drop(columns=[self.column])
        train = rest.iloc[np.flatnonzero(is_train)].reset_index(drop=True)
        validation = rest.iloc[np.flatnonzero(is_validation)].reset_index(drop=True)
        return train, validation


SPLITS: dict[str, type[Split]] = {"percentage": PercentageSplit, "column": ColumnSplit}
_SPLIT_KEYS = {
    "percentage": ("type", "validation", "seed"),
    "column": ("type", "column", "train_value", "validation_value"),
}


def split_from_config(cfg: Mapping[str, Any] | None) -> Split:
    """``{type: percentage, validation, seed}`` or ``{type: column, column, ...}`` -> Split.

    ``None`` gives the default ``PercentageSplit()``.
    """
    if cfg is None:
        return PercentageSplit()
    if isinstance(cfg, Split):
        return cfg
    if not isinstance(cfg, Mapping):
        raise PodConfigError(
            f"split must be a mapping like {{type: percentage, validation: 0.1}}, got "
            f"{type_name(cfg)}"
        )
    kind = cfg.get("type", "percentage")
    if kind not in SPLITS:
        raise PodConfigError(
            f"unknown split type {short_value(kind)}{did_you_mean(str(kind), SPLITS)}; known "
            f"types: {quoted(SPLITS)}"
        )
    check_known_keys(cfg, _SPLIT_KEYS[kind], where=f"split type {kind!r}", error=PodConfigError)
    options = {k: v for k, v in cfg.items() if k != "type"}
    try:
        return SPLITS[kind](**options)
    except ConfigError as exc:
        raise PodConfigError(str(exc)) from exc
