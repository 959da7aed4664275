"""The ridge classifier's design matrix and its sufficient statistics, shared by both halves.

The server and every pod build the same columns from the task alone (plain data the server
sent): the one-hot categoricals in the schema's vocabulary order, the continuous columns
standardized with the cross-pod mean and std fedplug put in the task and clipped to
``[-CLIP, CLIP]``, then an intercept of 1. Classes are one-hot in the schema's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from fedplug import DataStructure, DataValidationError, ModelMismatchError, Schema
from fedplug.learning import TrainingTask

#: Standardized continuous values are clipped to ``[-CLIP, CLIP]``, so every element of the
#: design matrix is at most CLIP in absolute value: what bounds a pod's statistics.
CLIP = 10.0
#: Per-row log loss is capped here, so an evaluation exchange has a known bound.
MAX_ROW_LOSS = 30.0
INTERCEPT = "(intercept)"


@dataclass(frozen=True)
class Design:
    """How a frame becomes ``X`` (rows x features) and ``Y`` (rows x classes)."""

    target: str
    classes: tuple[Any, ...]
    categorical: tuple[tuple[str, tuple[Any, ...]], ...]  # (column, vocabulary)
    continuous: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def from_task(cls, task: TrainingTask) -> Design:
        schema = Schema.from_dict(task.schema)
        resolved = DataStructure.from_dict(task.datastructure).resolve(schema)
        k = len(resolved.continuous)
        if len(task.mean) != k or len(task.std) != k:
            raise ModelMismatchError(
                f"ridge-classifier: the task scales {len(task.mean)} column(s) but uses {k} "
                f"continuous column(s) {resolved.continuous}; the server and this pod run "
                "different versions of fedplug"
            )
        return cls(
            target=resolved.target,
            classes=tuple(resolved.classes),
            categorical=tuple((c, tuple(schema[c].categories or ())) for c in resolved.categorical),
            continuous=tuple(resolved.continuous),
            mean=tuple(float(m) for m in task.mean),
            # A constant column has std at fedplug's floor; never divide by zero.
            std=tuple(float(s) if np.isfinite(s) and s > 0 else 1.0 for s in task.std),
        )

    @property
    def feature_names(self) -> list[str]:
        """The columns of ``X``: ``column=value`` per category, continuous, intercept."""
        names = [f"{c}={v}" for c, vocabulary in self.categorical for v in vocabulary]
        return [*names, *self.continuous, INTERCEPT]

    @property
    def n_features(self) -> int:
        return sum(len(v) for _, v in self.categorical) + len(self.continuous) + 1

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def features(self, frame: pd.DataFrame) -> np.ndarray:
        """``X`` for ``frame`` (float64). A null or unknown category is all zeros; a
        missing continuous value is the mean (0 once standardized)."""
        n = len(frame)
        x = np.zeros((n, self.n_features), dtype=np.float64)
        at = 0
        for column, vocabulary in self.categorical:
            codes = pd.Index(list(vocabulary)).get_indexer(frame[column])
            known = codes >= 0
            x[np.flatnonzero(known), at + codes[known]] = 1.0
            at += len(vocabulary)
        if self.continuous:
            raw = frame[list(self.continuous)].apply(pd.to_numeric)
            values = raw.to_numpy(dtype=np.float64, na_value=np.nan)
            scaled = (values - np.asarray(self.mean)) / np.asarray(self.std)
            scaled[~np.isfinite(scaled)] = 0.0
            x[:, at : at + len(self.continuous)] = np.clip(scaled, -CLIP, CLIP)
            at += len(self.continuous)
        x[:, at] = 1.0
        return x

    def labels(self, frame: pd.DataFrame, where: str) -> np.ndarray:
        """Class indices of ``frame``'s target; a DataValidationError if one is not a class."""
        codes = pd.Index(list(self.classes)).get_indexer(frame[self.target])
        if (codes < 0).any():
            # No value and no row number: this may run on a pod, whose errors carry neither.
            raise DataValidationError(
                f"ridge-classifier: {where}: the target column {self.target!r} holds null "
                f"values or values outside the classes {list(self.classes)}; fix the data "
                "or the schema's vocabulary",
                violations=[self.target],
            )
        return codes

    def one_hot(self, labels: np.ndarray) -> np.ndarray:
        y = np.zeros((len(labels), self.n_classes), dtype=np.float64)
        y[np.arange(len(labels)), labels] = 1.0
        return y


# -- the one training exchange --------------------------------------------------------------
def statistics_size(p: int, k: int) -> int:
    """Length of one pod's answer: upper triangle of X^T X, X^T Y, the row count."""
    return p * (p + 1) // 2 + p * k + 1


def statistics(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """One pod's sufficient statistics ``[triu(X^T X) / CLIP^2, X^T Y / CLIP, n]``.

    Every element of X is at most CLIP and of Y at most 1 in absolute value, so after the
    division each element is at most the pod's row count ``n``: the bound an exchange
    declares with ``bound=None``, which the secure aggregator encodes without clipping.
    """
    p = x.shape[1]
    upper = np.triu_indices(p)
    return np.concatenate(
        [(x.T @ x)[upper] / CLIP**2, (x.T @ y).reshape(-1) / CLIP, [float(len(x))]]
    )


def unpack_statistics(vector: np.ndarray, p: int, k: int) -> tuple[np.ndarray, np.ndarray, float]:
    """``(X^T X, X^T Y, n)`` summed over pods, from the summed answers."""
    vector = np.asarray(vector, dtype=np.float64).reshape(-1)
    if vector.size != statistics_size(p, k):
        raise ModelMismatchError(
            f"ridge-classifier: the summed statistics have {vector.size} values, expected "
            f"{statistics_size(p, k)}; the server and the pods run different plugin versions"
        )
    cut = p * (p + 1) // 2
    xtx = np.zeros((p, p), dtype=np.float64)
    xtx[np.triu_indices(p)] = vector[:cut] * CLIP**2
    xtx = xtx + np.triu(xtx, 1).T
    xty = vector[cut : cut + p * k].reshape(p, k) * CLIP
    return xtx, xty, float(vector[-1])


def solve(xtx: np.ndarray, xty: np.ndarray, alpha: float) -> np.ndarray:
    """The ridge weights ``W`` (features x classes): ``(X^T X + alpha I) W = X^T Y``."""
    return np.linalg.solve(xtx + alpha * np.eye(len(xtx)), xty)


# -- scores, probabilities, evaluation --------------------------------------------------------
def softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def row_losses(proba: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Log loss per row, capped at MAX_ROW_LOSS."""
    picked = proba[np.arange(len(labels)), labels]
    return np.minimum(-np.log(np.maximum(picked, 1e-300)), MAX_ROW_LOSS)


def evaluation_sums(x: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> list[float]:
    """``[rows, loss sum / MAX_ROW_LOSS, correct]``: each at most the row count."""
    if len(labels) == 0:
        return [0.0, 0.0, 0.0]
    proba = softmax(x @ weights)
    loss = float(row_losses(proba, labels).sum()) / MAX_ROW_LOSS
    return [float(len(labels)), loss, float((proba.argmax(axis=1) == labels).sum())]


def metrics_from_sums(
    vector: np.ndarray | Sequence[float],
) -> tuple[dict[str, float], dict[str, float]]:
    """Train and validation loss and accuracy from an evaluation exchange's sums."""
    sums = np.asarray(vector, dtype=np.float64).reshape(-1)
    out: list[dict[str, float]] = []
    for rows, loss, correct in (sums[0:3], sums[3:6]):
        n = float(np.rint(rows))
        out.append(
            {}
            if n <= 0
            else {"loss": float(loss) * MAX_ROW_LOSS / n, "accuracy": float(correct) / n}
        )
    train, validation = out
    return {f"train_{k}": v for k, v in train.items()}, validation
