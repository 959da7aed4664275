"""A trained model scored on the pods' own data: per pod where plaintext, and aggregated."""

from __future__ import annotations

import pytest

from fedplug import (
    DataStructure,
    FedAvg,
    GradientBoostedTrees,
    Optimizer,
    PolicyRefusal,
    SecureAggregator,
    TabularClassifier,
    load_model,
)
from fedplug._errors import ConfigError


def _classifier() -> TabularClassifier:
    return TabularClassifier(
        DataStructure(target="TARGET"),
        rounds=1,
        hidden=(8,),
        optimizer=Optimizer("SGD", {"lr": 0.05}),
    )


@pytest.mark.parametrize(
    "make",
    [
        _classifier,
        lambda: GradientBoostedTrees(DataStructure(target="TARGET"), n_trees=2, max_depth=2),
    ],
)
def test_pods_score_a_trained_model_plain_per_pod_and_secure_overall(fed_pods, make) -> None:
    pods = fed_pods(n_pods=2, rows=300)
    model = make()
    model.fit(pods, backend="inprocess", verbose=False)
    plain = model.evaluate(pod_identifiers=pods, aggregator=FedAvg(), backend="inprocess")
    assert 0 < plain["accuracy"] <= 1 and plain["loss"] > 0
    if isinstance(model, TabularClassifier):
        # Plaintext: each pod's own figures too; the overall is their weighted mean.
        assert set(model.pod_metrics_) == {"pod-a", "pod-b"}
        accs = [m["accuracy"] for m in model.pod_metrics_.values()]
        assert min(accs) - 1e-9 <= plain["accuracy"] <= max(accs) + 1e-9
    secure = model.evaluate(pod_identifiers=pods, aggregator=SecureAggregator())
    assert model.pod_metrics_ == {}  # the server learns only the aggregate
    assert secure["accuracy"] == pytest.approx(plain["accuracy"], abs=1e-6)
    assert secure["loss"] == pytest.approx(plain["loss"], abs=1e-4)


def test_a_pod_that_does_not_accept_evaluation_refuses_it(fed_pods) -> None:
    pods = fed_pods(
        n_pods=2, rows=200, policies={"pod-b": {"policy": {"accepted_tasks": ["train"]}}}
    )
    model = GradientBoostedTrees(DataStructure(target="TARGET"), n_trees=1, max_depth=1)
    model.fit(pods, backend="inprocess", verbose=False)  # training is accepted
    with pytest.raises(PolicyRefusal, match="pod-b"):
        model.evaluate(pod_identifiers=pods, backend="inprocess")


def test_evaluate_needs_a_frame_or_pods_and_a_trained_model(fed_pods) -> None:
    model = _classifier()
    with pytest.raises(Exception, match="not trained"):
        model.evaluate(pod_identifiers=["pod-a"])
    pods = fed_pods(n_pods=2, rows=100)
    model.fit(pods, backend="inprocess", verbose=False)
    with pytest.raises(ConfigError, match="pod_identifiers"):
        model.evaluate()


def test_fedplug_evaluate_on_pods_prints_each_pod_and_all(fed_pods, tmp_path, capsys) -> None:
    from fedplug.cli._main import main

    pods = fed_pods(n_pods=2, rows=200)
    model = GradientBoostedTrees(DataStructure(target="TARGET"), n_trees=2, max_depth=2)
    model.fit(pods, backend="inprocess", verbose=False)
    path = model.serialize(tmp_path / "trees.pt")
    assert isinstance(load_model(path), GradientBoostedTrees)
    assert main(["evaluate", str(path), "--pods", *map(str, pods)]) == 0
    out = capsys.readouterr().out
    assert "all pods" in out and "accuracy" in out
    assert main(["evaluate", str(path)]) == 1  # neither data nor pods
    assert "either a labelled DATA file or --pods" in capsys.readouterr().err
