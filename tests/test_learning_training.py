from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from fedplug._errors import ConfigError, TrainingError
from fedplug.data import Schema
from fedplug.learning import (
    DataStructure,
    EncodedTable,
    Optimizer,
    TabularEncoder,
    TabularNetSpec,
    evaluate_local,
    get_weights,
    local_feature_moments,
    scaling_from_moments,
    train_local,
)


def _separable(n: int, seed: int) -> pd.DataFrame:
    """A synthetic problem a small net separates: label from a linear score with a margin."""
    rng = np.random.default_rng(seed)
    color = rng.choice(["blue", "green", "red"], n)
    x1 = rng.normal(50.0, 10.0, n)
    x2 = rng.normal(0.0, 1.0, n)
    score = (x1 - 50.0) / 10.0 + x2 + np.where(color == "red", 1.5, 0.0) - 0.75
    keep = np.abs(score) > 0.3
    return pd.DataFrame(
        {
            "color": color[keep],
            "x1": x1[keep],
            "x2": x2[keep],
            "label": np.where(score[keep] > 0, "high", "low"),
        }
    )


@pytest.fixture(scope="module")
def problem() -> tuple[TabularNetSpec, EncodedTable, EncodedTable]:
    train, test = _separable(2000, 0), _separable(1000, 1)
    schema = Schema.infer(pd.concat([train, test]))
    resolved = DataStructure(target="label").resolve(schema)
    mean, std = scaling_from_moments(local_feature_moments(train, resolved.continuous), 2)
    encoder = TabularEncoder(schema, resolved, mean, std)
    spec = TabularNetSpec.for_columns(schema, resolved, hidden=(16, 8), dropout=0.1)
    return spec, encoder.encode(train), encoder.encode(test)


def _net(spec: TabularNetSpec, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return spec.build()


def test_learns_a_separable_problem(problem) -> None:
    spec, train, test = problem
    net = _net(spec)
    before = evaluate_local(net, test)
    out = train_local(
        net,
        train,
        epochs=8,
        steps=None,
        batch_size=64,
        optimizer=Optimizer("adam", {"lr": 0.01}),
        seed=1,
    )
    assert out["num-examples"] == len(train)
    assert math.isfinite(out["train_loss"])
    after = evaluate_local(net, test)
    assert after["accuracy"] > 0.9
    assert after["auc"] > 0.95
    assert after["loss"] < before["loss"]
    assert set(after) == {"loss", "accuracy", "f1", "precision", "recall", "auc", "num-examples"}
    assert after["num-examples"] == len(test)


def test_same_seed_same_weights_and_caller_rng_untouched(problem) -> None:
    spec, train, _ = problem
    opt = Optimizer("SGD", {"lr": 0.05, "momentum": 0.9})
    runs = []
    for seed in (7, 7, 8):
        net = _net(spec)
        torch.manual_seed(123)
        metrics = train_local(
            net, train, epochs=2, steps=None, batch_size=32, optimizer=opt, seed=seed
        )
        # train_local forks the RNG: the caller's stream continues as if it never ran.
        after = torch.rand(3)
        torch.manual_seed(123)
        assert torch.equal(after, torch.rand(3))
        runs.append((get_weights(net), metrics["train_loss"]))
    (w1, l1), (w2, l2), (w3, _) = runs
    assert l1 == l2
    for a, b in zip(w1, w2, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(w1, w3, strict=True))


def _adam_steps(net: torch.nn.Module, data: EncodedTable, **kwargs) -> int:
    # Count optimizer steps through the Adam state the last build left behind.
    built: list[torch.optim.Optimizer] = []

    class Recording(Optimizer):
        def build(self, parameters):  # type: ignore[override]
            built.append(super().build(parameters))
            return built[-1]

    train_local(net, data, batch_size=64, optimizer=Recording("adam"), seed=0, **kwargs)
    state = built[0].state[next(iter(net.parameters()))]
    return int(state["step"])


def test_epochs_and_steps_count_batches(problem) -> None:
    spec, train, _ = problem
    per_epoch = math.ceil(len(train) / 64)
    assert _adam_steps(_net(spec), train, epochs=2, steps=None) == 2 * per_epoch
    assert _adam_steps(_net(spec), train, epochs=None, steps=5) == 5
    assert _adam_steps(_net(spec), train, epochs=None, steps=per_epoch + 3) == per_epoch + 3


def test_epochs_and_steps_exactly_one(problem) -> None:
    spec, train, _ = problem
    opt = Optimizer("SGD")
    with pytest.raises(ConfigError, match="exactly one of epochs and steps.*epochs=2, steps=3"):
        train_local(_net(spec), train, epochs=2, steps=3, batch_size=8, optimizer=opt, seed=0)
    with pytest.raises(ConfigError, match="exactly one of epochs and steps"):
        train_local(_net(spec), train, epochs=None, steps=None, batch_size=8, optimizer=opt, seed=0)
    with pytest.raises(ConfigError, match="batch_size must be a positive integer, got 0"):
        train_local(_net(spec), train, epochs=1, steps=None, batch_size=0, optimizer=opt, seed=0)
    with pytest.raises(ConfigError, match="epochs must be a positive integer"):
        train_local(_net(spec), train, epochs=0, steps=None, batch_size=8, optimizer=opt, seed=0)
    with pytest.raises(ConfigError, match="must be a fedplug Optimizer"):
        train_local(_net(spec), train, epochs=1, steps=None, batch_size=8, optimizer="sgd", seed=0)


def test_unlabelled_or_mismatched_data_is_a_training_error(problem) -> None:
    spec, train, _ = problem
    opt = Optimizer("SGD")
    unlabelled = EncodedTable(train.x_cat, train.x_cont, None)
    with pytest.raises(TrainingError, match="no target column"):
        train_local(
            _net(spec), unlabelled, epochs=1, steps=None, batch_size=8, optimizer=opt, seed=0
        )
    with pytest.raises(TrainingError, match="no target column"):
        evaluate_local(_net(spec), unlabelled)
    wrong = EncodedTable(train.x_cat, torch.zeros(len(train), 5), train.y)
    with pytest.raises(TrainingError, match="local training failed"):
        train_local(_net(spec), wrong, epochs=1, steps=None, batch_size=8, optimizer=opt, seed=0)
    with pytest.raises(TrainingError, match="cannot score the encoded data"):
        evaluate_local(_net(spec), wrong)


def test_divergence_is_reported(problem) -> None:
    spec, train, _ = problem
    opt = Optimizer("SGD", {"lr": 1e30})
    with pytest.raises(TrainingError, match="diverged.*lower the learning rate"):
        train_local(_net(spec), train, epochs=1, steps=None, batch_size=64, optimizer=opt, seed=0)


def test_evaluate_restores_training_mode(problem) -> None:
    spec, _, test = problem
    net = _net(spec)
    net.train()
    evaluate_local(net, test, batch_size=100)
    assert net.training
    net.eval()
    evaluate_local(net, test)
    assert not net.training


def test_proximal_term_keeps_weights_near_the_start(problem) -> None:
    spec, train, _ = problem
    start = [p.detach().clone() for p in _net(spec).parameters()]

    def drift(mu: float) -> float:
        net = _net(spec)
        opt = Optimizer("SGD", {"lr": 0.1})
        train_local(net, train, epochs=2, batch_size=32, optimizer=opt, seed=0, proximal_mu=mu)
        return sum(
            float((p.detach() - s).pow(2).sum())
            for p, s in zip(net.parameters(), start, strict=True)
        )

    free, held = drift(0.0), drift(10.0)
    assert held < 0.5 * free


def test_negative_proximal_mu_is_refused(problem) -> None:
    spec, train, _ = problem
    with pytest.raises(ConfigError, match="proximal_mu"):
        train_local(
            _net(spec),
            train,
            epochs=1,
            batch_size=32,
            optimizer=Optimizer("SGD", {"lr": 0.1}),
            seed=0,
            proximal_mu=-1.0,
        )
