"""Classification and regression metrics in plain numpy (no sklearn)."""

from __future__ import annotations

from collections.abc import Mapping

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


#: What a pod reports of a regressor, each a mean over its rows of the standardized target
#: ``z = (y - mean) / std`` (cross-pod mean and std): squared and absolute errors, z and
#: z squared. Means weighted by rows average correctly across pods, so the aggregator's
#: weighted mean gives the pooled rows' values, and each is of order one (it keeps its
#: precision through a fixed-point secure sum, within its clip range).
REGRESSION_MOMENTS = ("z_mse", "z_mae", "z_mean", "z_meansq")


def regression_moments(z_true: ArrayLike, z_pred: ArrayLike) -> dict[str, float]:
    """The :data:`REGRESSION_MOMENTS` of predictions of a standardized target."""
    y = _numpy(z_true).reshape(-1).astype(np.float64)
    p = _numpy(z_pred).reshape(-1).astype(np.float64)
    if p.size != y.size:
        raise TrainingError(
            f"metrics: {p.size} predictions for {y.size} targets; the model must give one "
            "value per row"
        )
    if y.size == 0:
        raise TrainingError("metrics: no examples to score; the evaluation table is empty")
    error = p - y
    return {
        "z_mse": float(np.mean(np.square(error))),
        "z_mae": float(np.mean(np.abs(error))),
        "z_mean": float(np.mean(y)),
        "z_meansq": float(np.mean(np.square(y))),
    }


def regression_metrics(moments: Mapping[str, float], std: float) -> dict[str, float]:
    """``mse``, ``rmse`` and ``mae`` in the target's units and ``r2``, from (pooled)
    :data:`REGRESSION_MOMENTS` and the target's scaling ``std``.

    RMSE is the square root of the pooled mean squared error (never a mean of pods'
    RMSEs); R^2 is ``1 - mse / variance`` of the same rows, NaN when the target is
    constant on them.
    """
    missing = [k for k in REGRESSION_MOMENTS if k not in moments]
    if missing:
        raise TrainingError(
            f"metrics: the regression moments lack {missing} (got {sorted(moments)}); the "
            "pods' model plugin is of a different version than the server's"
        )
    z_mse, z_mae = float(moments["z_mse"]), float(moments["z_mae"])
    variance = float(moments["z_meansq"]) - float(moments["z_mean"]) ** 2
    # A variance at rounding level (a constant target) makes R^2 meaningless, not huge.
    r2 = 1.0 - z_mse / variance if variance > 1e-12 else float("nan")
    mse = max(z_mse, 0.0) * std**2
    return {"mse": mse, "rmse": float(np.sqrt(mse)), "mae": z_mae * std, "r2": r2}
