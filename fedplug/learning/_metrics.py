"""Classification metrics in plain numpy (no sklearn)."""

from __future__ import annotations

import numpy as np
import torch

from fedplug._errors import TrainingError

ArrayLike = np.ndarray | torch.Tensor


def _numpy(value: ArrayLike) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def roc_auc(y_true: ArrayLike, score: ArrayLike) -> float:
    """Binary ROC AUC by ranks (Mann-Whitney U), ties get average ranks.

    NaN when only one class is present (the AUC is undefined).
    """
    y = _numpy(y_true).reshape(-1).astype(bool)
    s = _numpy(score).reshape(-1).astype(np.float64)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    # Average 1-based rank of each group of tied scores.
    first = np.cumsum(counts) - counts
    ranks = (first + (counts + 1) / 2.0)[inverse]
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    # Zero denominators count as 0 (sklearn's zero_division=0).
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def classification_metrics(y_true: ArrayLike, proba: ArrayLike) -> dict[str, float]:
    """``accuracy``, ``precision``, ``recall``, ``f1`` and, for 2 classes, ``auc``.

    ``proba`` is ``[n, n_classes]`` class probabilities (or ``[n]`` positive-class
    probabilities for a binary task). Binary: positive class = index 1. Multiclass:
    macro averages over the classes that occur in ``y_true`` or in the predictions.
    """
    y = _numpy(y_true).reshape(-1).astype(np.int64)
    p = _numpy(proba).astype(np.float64)
    if p.ndim == 1:
        p = np.stack([1.0 - p, p], axis=1)
    if p.ndim != 2 or p.shape[0] != y.size or p.shape[1] < 2:
        raise TrainingError(
            f"metrics: proba must be [n, n_classes] with n = {y.size} labels and "
            f"n_classes >= 2, got shape {p.shape}"
        )
    if y.size == 0:
        raise TrainingError("metrics: no examples to score; the evaluation table is empty")
    n_classes = p.shape[1]
    if y.min() < 0 or y.max() >= n_classes:
        raise TrainingError(
            f"metrics: labels must be class indices in [0, {n_classes}), got "
            f"{sorted(set(y.tolist()))[:10]}"
        )
    pred = p.argmax(axis=1)
    cm = np.bincount(y * n_classes + pred, minlength=n_classes**2).reshape(n_classes, n_classes)
    tp = np.diag(cm).astype(np.float64)
    precision = _ratio(tp, cm.sum(axis=0).astype(np.float64))
    recall = _ratio(tp, cm.sum(axis=1).astype(np.float64))
    f1 = _ratio(2 * precision * recall, precision + recall)
    out = {"accuracy": float(tp.sum() / y.size)}
    if n_classes == 2:
        out.update(precision=float(precision[1]), recall=float(recall[1]), f1=float(f1[1]))
        out["auc"] = roc_auc(y == 1, p[:, 1])
    else:
        present = (cm.sum(axis=0) + cm.sum(axis=1)) > 0
        out.update(
            precision=float(precision[present].mean()),
            recall=float(recall[present].mean()),
            f1=float(f1[present].mean()),
        )
    return out
