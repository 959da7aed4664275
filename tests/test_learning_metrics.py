from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fedplug._errors import TrainingError
from fedplug.learning import classification_metrics, roc_auc


def _binary_proba(scores: list[float]) -> np.ndarray:
    s = np.asarray(scores)
    return np.stack([1 - s, s], axis=1)


def test_auc_perfect_inverted_and_ties() -> None:
    y = [0, 0, 1, 1]
    assert roc_auc(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc(y, [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert roc_auc(y, [0.5, 0.5, 0.5, 0.5]) == 0.5


def test_auc_partial_ties_count_half() -> None:
    # positive 0.5 beats negative 0.1, ties negative 0.5 (1/2); positive 0.9 beats both.
    assert roc_auc([0, 1, 0, 1], [0.1, 0.5, 0.5, 0.9]) == pytest.approx(3.5 / 4)


def test_auc_undefined_with_one_class() -> None:
    assert math.isnan(roc_auc([1, 1, 1], [0.1, 0.2, 0.3]))


def test_binary_metrics_on_a_small_confusion_matrix() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    pred = np.array([1, 1, 0, 0, 1, 0, 0, 0])
    # tp=2 fn=2 fp=1 tn=3
    scores = np.where(pred == 1, 0.8, 0.2)
    m = classification_metrics(y, _binary_proba(list(scores)))
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(1 / 2)
    assert m["f1"] == pytest.approx(4 / 7)
    assert set(m) == {"accuracy", "precision", "recall", "f1", "auc"}


def test_binary_accepts_positive_probabilities_and_tensors() -> None:
    y = torch.tensor([0, 0, 1, 1])
    m = classification_metrics(y, torch.tensor([0.1, 0.2, 0.8, 0.9]))
    assert m == {"accuracy": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0, "auc": 1.0}


def test_no_positive_prediction_gives_zero_not_nan() -> None:
    m = classification_metrics([0, 1, 1], _binary_proba([0.1, 0.2, 0.3]))
    assert m["precision"] == 0.0
    assert m["recall"] == 0.0
    assert m["f1"] == 0.0
    assert m["auc"] == 1.0


def test_multiclass_macro_averages() -> None:
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    proba = np.eye(3)[pred] * 0.7 + 0.1
    m = classification_metrics(y, proba)
    # per class: precision 1/2, 2/3, 1; recall 1/2, 1, 1/2; f1 1/2, 4/5, 2/3
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert m["recall"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert m["f1"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
    assert "auc" not in m


def test_multiclass_macro_skips_classes_never_seen() -> None:
    y = np.array([0, 1])
    proba = np.array([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05]])
    m = classification_metrics(y, proba)
    assert m["f1"] == 1.0


def test_bad_shapes_and_labels() -> None:
    with pytest.raises(TrainingError, match=r"proba must be \[n, n_classes\].*n = 3"):
        classification_metrics([0, 1, 1], np.zeros((2, 2)))
    with pytest.raises(TrainingError, match=r"labels must be class indices in \[0, 2\)"):
        classification_metrics([0, 5], np.full((2, 2), 0.5))
    with pytest.raises(TrainingError, match="no examples"):
        classification_metrics(np.zeros(0, dtype=int), np.zeros((0, 2)))
