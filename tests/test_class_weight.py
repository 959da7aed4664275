"""class_weight="balanced": the classifier's loss weights classes by their cross-pod counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedplug import ConfigError, DataStructure, FedAvg, SecureAggregator, TabularClassifier
from fedplug.data import Pod


def _model(**kw) -> TabularClassifier:  # noqa: ANN003
    return TabularClassifier(DataStructure(target="TARGET"), rounds=1, hidden=(8,), **kw)


def test_balanced_weights_come_from_the_pooled_class_counts(fed_pods) -> None:
    pods = fed_pods(n_pods=2, rows=400)
    labels = pd.concat([Pod.from_yaml(p).load().train["TARGET"] for p in pods])
    counts = labels.value_counts().reindex(["<=50K", ">50K"]).to_numpy(dtype=float)
    expected = counts.sum() / (2 * counts)
    for aggregator in (FedAvg(), SecureAggregator()):
        model = _model(class_weight="balanced")
        model.fit(pods, aggregator, backend="inprocess", verbose=False)
        np.testing.assert_allclose(model.task_.model["class_weights"], expected, rtol=1e-9)
    # Weighting the rare class up predicts it more often than the unweighted model.
    plain = _model()
    plain.fit(pods, backend="inprocess", verbose=False)
    frame = pd.concat([Pod.from_yaml(p).load().validation for p in pods])
    rare = lambda m: float((m.predict(frame) == ">50K").mean())  # noqa: E731
    assert rare(model) > rare(plain)
    assert "class_weights" not in plain.task_.model  # an unweighted task is as before


def test_a_bad_class_weight_is_named(fed_pods) -> None:
    with pytest.raises(ConfigError, match="class_weight='auto'"):
        _model(class_weight="auto").fit(fed_pods(n_pods=2, rows=50), verbose=False)
