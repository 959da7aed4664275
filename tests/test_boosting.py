"""Gradient-boosted trees over summed histograms: the algorithm, and the same trees
federated (plain and secure) as trained centrally on the pooled rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import fedplug
from fedplug import DataStructure, FedAvg, SecureAggregator
from fedplug._errors import ConfigError, PolicyRefusal
from fedplug._trees import GradientBoostedTrees, setup_for
from fedplug.data import Pod
from fedplug.learning import BoostingParams, BoostingPod, Ensemble, fit_ensemble
from fedplug.learning._boosting import (
    GRID_CELLS,
    Binning,
    FeatureBins,
    best_split,
    edges_from_counts,
    grid_counts,
)


class Central:
    """The exchange of one pod holding every row: central training, same code."""

    def __init__(self, pod: BoostingPod) -> None:
        self.pod = pod
        self.calls = 0

    def sum(self, request: dict, size: int, bound: float | None) -> np.ndarray:
        self.calls += 1
        # Through JSON, as a request travels to a pod.
        vector = self.pod.answer(json.loads(json.dumps(request)))
        assert vector.size == size
        return vector


# -- the algorithm ------------------------------------------------------------------------
def test_numeric_split_is_the_brute_force_best() -> None:
    rng = np.random.default_rng(0)
    bins = FeatureBins("x", "numeric", edges=tuple(float(e) for e in range(1, 8)))
    binning = Binning((bins,))
    g, h = rng.normal(size=9), rng.uniform(0.1, 1, size=9)
    hist = np.stack([g, h, np.full(9, 5.0)], axis=1)
    hist[8] = 0  # no missing values
    params = BoostingParams(reg_lambda=1.0, min_child_weight=0.0)
    split = best_split(hist, binning, params)

    def score(a: float, b: float) -> float:
        return a * a / (b + 1.0)

    G, H = g[:8].sum(), h[:8].sum()
    gains = []
    for t in range(7):
        gl, hl = g[: t + 1].sum(), h[: t + 1].sum()
        gains.append(0.5 * (score(gl, hl) + score(G - gl, H - hl) - score(G, H)))
    assert split is not None
    assert split.threshold == int(np.argmax(gains))
    assert split.gain == pytest.approx(max(gains))


def test_categorical_partition_split_beats_every_one_vs_rest() -> None:
    # Categories 0 and 2 push one way, 1 and 3 the other: the partition {0, 2} is best.
    bins = FeatureBins("c", "categorical", categories=("a", "b", "c", "d"))
    hist = np.array([[-5, 2, 4], [5, 2, 4], [-5, 2, 4], [5, 2, 4], [0, 0, 0]], dtype=float)
    split = best_split(hist, Binning((bins,)), BoostingParams(min_child_weight=0.0))
    assert split is not None and split.left in ((0, 2), (1, 3))
    assert split.left_sums[0] in (-10.0, 10.0)


def test_missing_values_learn_their_side() -> None:
    # Missing rows have the gradients of the high values: they go right with them.
    bins = FeatureBins("x", "numeric", edges=(1.0,))
    hist = np.array([[-6, 3, 6], [6, 3, 6], [4, 2, 4]], dtype=float)
    split = best_split(hist, Binning((bins,)), BoostingParams(min_child_weight=0.0))
    assert split is not None and split.missing_left is False
    hist[2, 0] = -4
    split = best_split(hist, Binning((bins,)), BoostingParams(min_child_weight=0.0))
    assert split is not None and split.missing_left is True


def test_bins_come_from_the_summed_fine_grid() -> None:
    values = np.array([1.0, 1.0, 2.0, 3.0, 3.0, 3.0, np.nan])
    low, width = 0.0, 4.0 / GRID_CELLS
    counts = grid_counts(values, low, width)
    assert counts.sum() == 6  # missing values are not counted
    edges = edges_from_counts(counts, low, width, max_bins=256)
    # Three populated cells: each its own bin, cut between them.
    feature = FeatureBins("x", "numeric", edges=tuple(edges))
    assert len(edges) == 2
    assert feature.transform(pd.Series(values)).tolist() == [0, 0, 1, 2, 2, 2, 3]
    few = edges_from_counts(np.arange(GRID_CELLS + 2, dtype=float), low, width, max_bins=4)
    assert len(few) == 3


def test_params_are_checked_with_the_key_named() -> None:
    with pytest.raises(ConfigError, match="max_depth"):
        BoostingParams(max_depth=0)
    with pytest.raises(ConfigError, match="learning_rate"):
        BoostingParams(learning_rate=0)
    with pytest.raises(ConfigError, match="n_tree"):
        BoostingParams.from_dict({"n_tree": 3})
    model = GradientBoostedTrees(DataStructure(target="TARGET"), max_bins=1)
    with pytest.raises(ConfigError, match="max_bins"):
        model.fit(["nowhere"])


# -- federated equals central ------------------------------------------------------------
def _trees(ensemble: Ensemble) -> list:
    return [[t.to_dict() for t in it] for it in ensemble.trees]


def _assert_same_trees(a: Ensemble, b: Ensemble, edges_rtol: float = 1e-9) -> None:
    # Same bins: the same features and vocabularies, edges equal up to the last bits of
    # the cross-pod mean and std they are placed by.
    for fa, fb in zip(a.binning.features, b.binning.features, strict=True):
        assert (fa.name, fa.kind, fa.categories) == (fb.name, fb.kind, fb.categories)
        np.testing.assert_allclose(fa.edges, fb.edges, rtol=edges_rtol, atol=0)
    assert len(a.trees) == len(b.trees)
    for ia, ib in zip(a.trees, b.trees, strict=True):
        for ta, tb in zip(ia, ib, strict=True):
            assert ta.feature == tb.feature
            assert ta.threshold == tb.threshold
            assert ta.missing_left == tb.missing_left
            assert ta.left_categories == tb.left_categories
            np.testing.assert_allclose(ta.value, tb.value, atol=1e-6, rtol=0)


def _central(model: GradientBoostedTrees, pod_files: list[Path]) -> Ensemble:
    task, _ = model._fitted
    loaded = [Pod.from_yaml(p).load() for p in pod_files]
    train = pd.concat([p.train for p in loaded], ignore_index=True)
    validation = pd.concat([p.validation for p in loaded], ignore_index=True)
    central = Central(BoostingPod(task, train, validation))
    return fit_ensemble(central, setup_for(task), BoostingParams.from_dict(task.model))


@pytest.mark.parametrize("target", ["TARGET", "race"])  # binary, and five classes
def test_federated_trees_equal_central_trees_plain_and_secure(fed_pods, target: str) -> None:
    pods = fed_pods(n_pods=3, rows=500)
    fitted = {}
    for name, aggregator in (("plain", FedAvg()), ("secure", SecureAggregator())):
        model = GradientBoostedTrees(
            DataStructure(target=target), n_trees=4, max_depth=3, eval_every=2
        )
        history = model.fit(pods, aggregator, backend="inprocess", verbose=False)
        assert [h["round"] for h in history] == [2, 4]
        assert 0 < history[-1]["evaluate"]["accuracy"] <= 1
        fitted[name] = model
    for model in fitted.values():
        # Central training on the pooled rows, with the bins of the federated run.
        central = _central(model, pods)
        assert any(f >= 0 for it in central.trees for t in it for f in t.feature)
        assert central.binning == model._fitted[1].binning
        _assert_same_trees(model._fitted[1], central)
    # Secure and plain: the same trees; the bins' edges differ by the fixed-point rounding
    # of the securely summed column statistics (a few 1e-6 here).
    _assert_same_trees(fitted["secure"]._fitted[1], fitted["plain"]._fitted[1], 1e-5)


def test_a_trained_model_predicts_and_round_trips_without_pods(fed_pods, tmp_path, fed_adult):
    pods = fed_pods(n_pods=2, rows=600)
    model = GradientBoostedTrees(DataStructure(target="TARGET"), n_trees=3, max_depth=2)
    model.fit(pods, backend="inprocess", verbose=False)
    frame = fed_adult.iloc[5000:5200]
    before = model.predict_proba(frame)
    assert before.shape == (200, 2)
    np.testing.assert_allclose(before.sum(axis=1), 1.0)
    path = model.serialize(tmp_path / "trees.pt")
    again = GradientBoostedTrees.deserialize(path)
    # Any model file loads by the plugin it names; a model of another kind is refused.
    assert isinstance(fedplug.load_model(path), GradientBoostedTrees)
    with pytest.raises(fedplug.ModelFileError, match="gradient-boosted-trees.*load_model"):
        fedplug.TabularClassifier.deserialize(path)
    np.testing.assert_array_equal(again.predict_proba(frame), before)
    assert set(again.predict(frame)) <= {"<=50K", ">50K"}
    metrics = again.evaluate(frame)
    assert 0.5 < metrics["accuracy"] <= 1 and "auc" in metrics
    # The target may be absent when predicting, not when evaluating.
    assert len(again.predict(frame.drop(columns=["TARGET"]))) == 200


# -- pods load the model by name, under their policy -------------------------------------
def test_a_pod_whose_policy_does_not_accept_the_model_refuses_it(fed_pods) -> None:
    pods = fed_pods(
        n_pods=2,
        rows=300,
        policies={"pod-b": {"policy": {"min_pods": 2, "accepted_models": ["tabular-classifier"]}}},
    )
    model = GradientBoostedTrees(DataStructure(target="TARGET"), n_trees=1, max_depth=1)
    with pytest.raises(PolicyRefusal) as refused:
        model.fit(pods, backend="inprocess", verbose=False)
    text = str(refused.value)
    assert "pod-b" in text and "policy.accepted_models" in text
    assert "gradient-boosted-trees" in text  # the server names the plugin it asked for


def test_a_pod_never_loads_a_model_by_import_path() -> None:
    from fedplug._plugins import load_pod_model

    # Even a policy that lists an import path does not make the pod import it.
    for name in ("os:system", "fedplug.learning:BoostingPod"):
        with pytest.raises(fedplug.PluginError, match="fedplug.pod_models"):
            load_pod_model(name, accepted=[name], pod="pod-a")
    with pytest.raises(PolicyRefusal, match="policy.accepted_models"):
        load_pod_model("gradient-boosted-trees", accepted=["tabular-classifier"], pod="pod-a")
    assert load_pod_model("gradient-boosted-trees", ["gradient-boosted-trees"], "p") is BoostingPod


def test_hydra_selects_gradient_boosted_trees() -> None:
    from fedplug._task_builder import compose_config, objects_from_config

    cfg = compose_config(["model=gradient_boosted_trees", "model.n_trees=7"])
    run = objects_from_config(cfg)
    assert isinstance(run.model, GradientBoostedTrees)
    assert run.model.n_trees == 7 and run.model.progress_total() == 7
    with pytest.raises(ConfigError, match="max_depht|max_depth"):
        objects_from_config(compose_config(["model=gradient_boosted_trees", "+model.max_depht=3"]))


def test_a_pod_refuses_a_task_naming_a_model_its_policy_lacks_even_if_the_server_does_not_check(
    fed_pods,
) -> None:
    # An active server skips its own check and sends the task anyway: the pod refuses.
    from dataclasses import replace

    from fedplug._flower._pod_runtime import load_runtime

    pods = fed_pods(n_pods=2, rows=200)
    model = GradientBoostedTrees(DataStructure(target="TARGET"))
    schema = fedplug.combine_pod_schemas(pods)
    task = model.training_task(schema)
    runtime = load_runtime(pods[0])
    assert isinstance(runtime.trainer(task), BoostingPod)
    for name in ("os:system", "fedplug.learning._boosting_pod:BoostingPod", "no-such-model"):
        with pytest.raises(PolicyRefusal, match="policy.accepted_models"):
            runtime.trainer(replace(task, model_plugin=name))


def test_a_model_subclass_taking_kwargs_lists_its_own_and_its_bases_parameters() -> None:
    from fedplug._task_builder import only_known, parameter_names

    class Wide(fedplug.TabularClassifier):
        def __init__(self, datastructure: DataStructure, width: int = 64, **kwargs) -> None:  # noqa: ANN003
            super().__init__(datastructure, hidden=(width,), **kwargs)
            self.width = width

    names = parameter_names(Wide)
    assert {"width", "rounds", "dropout", "datastructure"} <= set(names)
    assert not {"kwargs", "args", "self"} & set(names)
    assert only_known({"width": 8, "rounds": 2}, Wide, "model") == {"width": 8, "rounds": 2}
    with pytest.raises(ConfigError, match=r"widht.*width") as info:
        only_known({"widht": 8}, Wide, "model")
    assert "kwargs" not in str(info.value)
    assert parameter_names(GradientBoostedTrees)[:3] == ["datastructure", "eval_every", "gamma"]


def test_regression_trees_predict_a_continuous_target_equal_to_central(fed_pods) -> None:
    pods = fed_pods(n_pods=2, rows=500)
    target = "hours-per-week"
    fitted = {}
    for name, aggregator in (("plain", FedAvg()), ("secure", SecureAggregator())):
        model = GradientBoostedTrees(DataStructure(target=target), n_trees=5, max_depth=3)
        history = model.fit(pods, aggregator, backend="inprocess", verbose=False)
        assert {"rmse", "mae", "r2"} <= set(history[-1]["evaluate"])
        fitted[name] = model
    plain = fitted["plain"]
    _assert_same_trees(plain._fitted[1], _central(plain, pods))
    _assert_same_trees(fitted["secure"]._fitted[1], plain._fitted[1], 1e-5)
    frame = pd.concat([Pod.from_yaml(p).load().validation for p in pods])
    values = plain.predict(frame)
    assert values.dtype.kind == "f" and len(values) == len(frame)
    metrics = plain.evaluate(frame)
    truth = frame[target].to_numpy(dtype=float)
    # Better than predicting the mean: the trees learn something about hours worked.
    assert metrics["rmse"] < truth.std() and metrics["r2"] > 0
    with pytest.raises(ConfigError, match="regression"):
        plain.predict_proba(frame)
