"""Encode a pod's frame to tensors once, with the combined schema's vocabularies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from fedplug._errors import ConfigError, DataValidationError

if TYPE_CHECKING:
    from fedplug.data import Schema

    from ._datastructure import ResolvedColumns


@dataclass(frozen=True)
class EncodedTable:
    """Model inputs: category indices, scaled continuous values and (optional) labels."""

    x_cat: torch.Tensor
    x_cont: torch.Tensor
    y: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.x_cat.shape[0])


def _codes(values: pd.Series, categories: Sequence[object]) -> np.ndarray:
    # Vectorised hash lookup; -1 marks null or out-of-vocabulary values. (pd.Categorical
    # with unknown values is deprecated in pandas 3 and will raise.)
    return pd.Index(list(categories)).get_indexer(values).astype(np.int64)


class TabularEncoder:
    """Maps frames to :class:`EncodedTable` with the (combined) schema's vocabularies and
    the global scaling ``(x - mean) / std`` (NaN -> 0). Unknown categories map to the
    reserved index ``len(categories)``.

    ``mean`` and ``std`` are of ``resolved.scaled``: the continuous features, then, for a
    regression, the target, whose labels are then ``(y - mean) / std`` as float32.
    """

    def __init__(
        self,
        schema: Schema,
        resolved: ResolvedColumns,
        mean: np.ndarray | Sequence[float],
        std: np.ndarray | Sequence[float],
    ) -> None:
        self.resolved = resolved
        self.categories = {c: tuple(schema[c].categories or ()) for c in resolved.categorical}
        self.classes = tuple(resolved.classes)
        k = len(resolved.scaled)
        self.mean = np.asarray(mean, dtype=np.float64).reshape(-1)
        self.std = np.asarray(std, dtype=np.float64).reshape(-1)
        if self.mean.size != k or self.std.size != k:
            raise ConfigError(
                f"encoder: {k} continuous column(s) {resolved.scaled} but mean has "
                f"{self.mean.size} and std {self.std.size} values; compute them with "
                "scaling_from_moments over the same columns"
            )
        if np.any(self.std <= 0) or not np.all(np.isfinite(self.std)):
            raise ConfigError(f"encoder: std must be finite and > 0, got {self.std.tolist()}")

    def encode(self, frame: pd.DataFrame) -> EncodedTable:
        """Encode ``frame``; ``y`` is None when the frame lacks the target column."""
        features = self.resolved.features
        missing = [c for c in features if c not in frame.columns]
        if missing:
            raise DataValidationError(
                f"encoder: the table lacks feature column(s) {missing} (it has "
                f"{list(frame.columns)}); fix the data or the datastructure",
                violations=missing,
            )
        n = len(frame)
        x_cat = np.empty((n, len(self.categories)), dtype=np.int64)
        for i, (col, cats) in enumerate(self.categories.items()):
            codes = _codes(frame[col], cats)
            codes[codes < 0] = len(cats)
            x_cat[:, i] = codes
        x_cont = self._continuous(frame)
        y = None
        target = self.resolved.target
        if target in frame.columns:
            y = self._labels(frame[target])
        return EncodedTable(
            x_cat=torch.from_numpy(x_cat),
            x_cont=torch.from_numpy(x_cont),
            y=None if y is None else torch.from_numpy(y),
        )

    def _continuous(self, frame: pd.DataFrame) -> np.ndarray:
        cols = self.resolved.continuous
        if not cols:
            return np.zeros((len(frame), 0), dtype=np.float32)
        try:
            raw = frame[cols].apply(pd.to_numeric).to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError) as exc:
            raise DataValidationError(
                f"encoder: a continuous column of {cols} holds non-numeric values ({exc}); "
                "fix the data or declare the column categorical in the schema"
            ) from exc
        k = len(cols)
        scaled = (raw - self.mean[:k]) / self.std[:k]
        scaled[~np.isfinite(scaled)] = 0.0
        return scaled.astype(np.float32)

    def target_scaling(self) -> tuple[float, float]:
        """A regression's target ``(mean, std)``: predictions times std plus mean are in the
        target's units."""
        if self.resolved.task != "regression":
            raise ConfigError(
                f"encoder: target column {self.resolved.target!r} is a classification "
                "target; only a regression's target is scaled"
            )
        return float(self.mean[-1]), float(self.std[-1])

    def _labels(self, values: pd.Series) -> np.ndarray:
        if self.resolved.task == "regression":
            return self._values(values)
        codes = _codes(values, self.classes)
        bad = np.flatnonzero(codes < 0)
        if bad.size:
            shown = values.iloc[bad[:5]]
            raise DataValidationError(
                f"encoder: target column {self.resolved.target!r} has null or unknown "
                f"value(s) at rows {shown.index.tolist()} ({shown.tolist()}); known classes "
                f"are {list(self.classes)}; fix the data or the schema's vocabulary",
                violations=shown.index.tolist(),
            )
        return codes

    def _values(self, values: pd.Series) -> np.ndarray:
        target = self.resolved.target
        try:
            raw = pd.to_numeric(values).to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError) as exc:
            raise DataValidationError(
                f"encoder: continuous target column {target!r} holds non-numeric values "
                f"({exc}); fix the data or the schema",
                violations=[target],
            ) from exc
        bad = np.flatnonzero(~np.isfinite(raw))
        if bad.size:
            shown = values.iloc[bad[:5]]
            raise DataValidationError(
                f"encoder: target column {target!r} has null or non-finite value(s) at rows "
                f"{shown.index.tolist()} ({shown.tolist()}); a regressor needs a number in "
                "every row: fix the data or drop those rows",
                violations=shown.index.tolist(),
            )
        mean, std = self.target_scaling()
        return ((raw - mean) / std).astype(np.float32)
