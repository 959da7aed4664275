"""Plain FedAvg through the adapters: the result is the example-weighted mean."""

from __future__ import annotations

import numpy as np
from fed_harness import run_local

from fedplug import FedAvg
from fedplug._flower import _wire as wire


def test_fedavg_result_is_the_weighted_mean_of_the_pods_updates(fed_pods) -> None:
    pods = fed_pods(3, rows=300)
    result, grid = run_local(pods, FedAvg(), rounds=1)
    train = [
        r
        for r in grid.replies
        if r.metadata.message_type == wire.TRAIN
        and not r.has_error()
        and "arrays" in r.content
        # the statistics exchanges carry one vector; training replies carry the model
        and len(r.content["arrays"]) > 1
    ]
    assert len(train) == 3
    weights = np.array([float(r.content["metrics"]["num-examples"]) for r in train])
    updates = [r.content["arrays"].to_numpy_ndarrays() for r in train]
    for i, layer in enumerate(result.weights):
        expected = sum(w * u[i].astype(np.float64) for w, u in zip(weights, updates, strict=True))
        np.testing.assert_allclose(layer, expected / weights.sum(), rtol=1e-5, atol=1e-6)


def test_history_has_one_entry_per_round_with_metrics(fed_pods) -> None:
    pods = fed_pods(2, rows=200)
    result, _ = run_local(pods, FedAvg(), rounds=3)
    assert [h["round"] for h in result.history] == [1, 2, 3]
    for entry in result.history:
        assert entry["train"]["train_loss"] > 0
        assert {"loss", "accuracy", "auc", "f1", "precision", "recall"} <= set(entry["evaluate"])


def test_same_seed_same_model(fed_pods) -> None:
    pods = fed_pods(2, rows=200)
    first, _ = run_local(pods, FedAvg(), rounds=2, seed=3)
    second, _ = run_local(pods, FedAvg(), rounds=2, seed=3)
    other, _ = run_local(pods, FedAvg(), rounds=2, seed=4)
    for a, b in zip(first.weights, second.weights, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first.weights, other.weights, strict=True))
