"""The tabular-regressor model plugin: a continuous target standardized across pods
through the aggregator, trained plain and secure, metrics in the target's units."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

import fedplug
from fedplug import DataStructure, FedAvg, SecureAggregator, TabularClassifier
from fedplug._errors import (
    ConfigError,
    DataStructureError,
    DataValidationError,
    ModelFileError,
    NotFittedError,
)
from fedplug._regressor import PAYLOAD_FORMAT, TabularRegressor
from fedplug.data import Pod, Schema
from fedplug.learning import RegressorPod, RegressorSpec, TrainingTask, regression_metrics
from fedplug.learning._metrics import REGRESSION_MOMENTS

TARGET = "hours-per-week"
HELD_OUT = slice(20000, 22000)  # rows of the bundled data that no test pod holds


def _pooled_train_target(pods: list) -> np.ndarray:
    """The target over every pod's training rows: what the cross-pod scaling summarises."""
    parts = [Pod.from_yaml(p).load().train[TARGET] for p in pods]
    return pd.concat(parts).to_numpy(dtype=np.float64)


def _fit(pods: list, aggregator: object, **params: object) -> TabularRegressor:
    model = TabularRegressor(
        DataStructure(target=TARGET), rounds=3, epochs=2, batch_size=32, **params
    )
    model.fit(pods, aggregator, backend="inprocess", verbose=False)
    return model


# -- trained across pods -----------------------------------------------------------------
def test_trains_plain_and_secure_alike_with_the_pooled_target_scaling(fed_pods, fed_adult):
    pods = fed_pods(n_pods=3, rows=400)
    pooled = _pooled_train_target(pods)
    models = {"plain": _fit(pods, FedAvg()), "secure": _fit(pods, SecureAggregator())}
    for name, model in models.items():
        history = model.history_
        assert [h["round"] for h in history] == [1, 2, 3]
        # The pods' moments are replaced by metrics in the target's units.
        for entry in history:
            assert set(entry["evaluate"]) >= {"loss", "mse", "rmse", "mae", "r2"}, name
            assert not set(entry["evaluate"]) & set(REGRESSION_MOMENTS), name
            assert entry["evaluate"]["rmse"] == pytest.approx(entry["evaluate"]["mse"] ** 0.5)
        first, last = history[0], history[-1]
        assert last["train"]["train_loss"] < first["train"]["train_loss"], name
        assert last["evaluate"]["loss"] < first["evaluate"]["loss"], name
        assert last["evaluate"]["rmse"] < first["evaluate"]["rmse"], name
        assert last["evaluate"]["r2"] > first["evaluate"]["r2"], name
    # Plain: the scaling is the pooled training rows' mean and (population) std, exactly.
    plain, secure = models["plain"], models["secure"]
    assert plain.target_mean_ == pytest.approx(pooled.mean(), rel=1e-12)
    assert plain.target_std_ == pytest.approx(pooled.std(), rel=1e-12)
    # Secure: the same within the fixed-point encoding of the summed moments.
    assert secure.target_mean_ == pytest.approx(pooled.mean(), rel=1e-6)
    assert secure.target_std_ == pytest.approx(pooled.std(), rel=1e-6)
    assert secure.target_mean_ != plain.target_mean_  # it did go through the secure sum
    for a, b in zip(plain.history_, secure.history_, strict=True):
        for key in ("rmse", "mae", "r2"):
            assert b["evaluate"][key] == pytest.approx(a["evaluate"][key], rel=1e-4), key

    # Held-out rows, in the target's units: better than predicting the mean.
    frame = fed_adult.iloc[HELD_OUT]
    y = frame[TARGET].to_numpy(dtype=np.float64)
    for name, model in models.items():
        predicted = model.predict(frame)
        assert predicted.shape == (len(frame),) and predicted.dtype == np.float64
        # Hours, not standardized values: centred near the training rows' mean.
        assert abs(predicted.mean() - pooled.mean()) < 0.5 * pooled.std(), name
        metrics = model.evaluate(frame)
        baseline = float(np.sqrt(np.mean((y - model.target_mean_) ** 2)))
        assert metrics["rmse"] == pytest.approx(np.sqrt(np.mean((predicted - y) ** 2)), rel=1e-5)
        assert metrics["mae"] == pytest.approx(np.mean(np.abs(predicted - y)), rel=1e-5)
        r2 = 1 - np.sum((predicted - y) ** 2) / np.sum((y - y.mean()) ** 2)
        assert metrics["r2"] == pytest.approx(r2, rel=1e-4)
        assert metrics["r2"] > 0, name
        assert metrics["rmse"] < min(baseline, y.std()), name


def test_huber_loss_trains_and_pods_score_the_model_in_target_units(fed_pods) -> None:
    pods = fed_pods(n_pods=2, rows=300)
    model = TabularRegressor(
        DataStructure(target=TARGET), rounds=2, epochs=2, loss="huber", huber_delta=0.5
    )
    history = model.fit(pods, backend="inprocess", verbose=False)
    assert history[-1]["train"]["train_loss"] < history[0]["train"]["train_loss"]
    last = history[-1]["evaluate"]
    # Huber with delta 0.5 is below half the squared error on the standardized target.
    assert 0 < last["loss"] < last["mse"] / model.target_std_**2 / 2
    assert model.task_.model["loss"] == "huber"
    # The pods score the trained model on the same validation rows as the last round.
    plain = model.evaluate(pod_identifiers=pods, aggregator=FedAvg(), backend="inprocess")
    for key in ("loss", "mse", "rmse", "mae", "r2"):
        assert plain[key] == pytest.approx(last[key], rel=1e-9), key
    assert set(model.pod_metrics_) == {"pod-a", "pod-b"}
    per_pod = [m["rmse"] for m in model.pod_metrics_.values()]
    assert min(per_pod) <= plain["rmse"] <= max(per_pod)
    assert all(not set(m) & set(REGRESSION_MOMENTS) for m in model.pod_metrics_.values())
    secure = model.evaluate(pod_identifiers=pods, aggregator=SecureAggregator())
    assert model.pod_metrics_ == {}
    for key in ("rmse", "mae", "r2"):
        assert secure[key] == pytest.approx(plain[key], rel=1e-6), key


# -- the pod half, without a federation -------------------------------------------------
def _scaled_task(frame: pd.DataFrame, **spec: object) -> TrainingTask:
    schema = Schema.infer(frame, force_stypes={"education-num": "continuous"})
    model = TabularRegressor(DataStructure(target=TARGET), **spec)  # type: ignore[arg-type]
    task = model.training_task(schema)
    columns = task.continuous()
    values = frame[columns].to_numpy(dtype=np.float64)
    return task.with_scaling(values.mean(axis=0), values.std(axis=0))


def test_the_pod_half_scales_the_target_last_and_learns(fed_adult) -> None:
    frame = fed_adult.iloc[:600]
    task = _scaled_task(frame)
    # The statistics exchanges cover the continuous features, then the target.
    assert task.continuous()[-1] == TARGET
    assert TARGET not in task.continuous()[:-1]
    pod = RegressorPod(task, frame.iloc[:500], frame.iloc[500:])
    vector, n = pod.moments()
    assert n == 500 and vector.size == len(task.continuous())
    assert vector[-1] == pytest.approx(frame[TARGET].iloc[:500].mean())
    weights = RegressorSpec.from_dict(task.model).initial_weights(task.seed)
    before = pod.evaluate(weights)
    trained, metrics = pod.fit(weights, server_round=1)
    after = pod.evaluate(trained)
    assert metrics["num-examples"] == 500 and before["num-examples"] == 100
    assert after["z_mse"] < before["z_mse"]
    # The reported moments: means over the validation rows of the standardized target.
    z = (frame[TARGET].iloc[500:].to_numpy() - task.mean[-1]) / task.std[-1]
    assert after["z_mean"] == pytest.approx(z.mean(), rel=1e-5)
    assert after["z_meansq"] == pytest.approx(np.mean(z**2), rel=1e-5)


def test_metrics_from_pooled_moments_are_the_pooled_rows_metrics() -> None:
    rng = np.random.default_rng(3)
    std = 7.0
    pods = [
        (rng.normal(m, 1.0, size=n), rng.normal(0, 0.5, size=n)) for m, n in ((0.3, 50), (-0.4, 80))
    ]
    moments = []
    for z, noise in pods:
        err = noise
        moments.append(
            (
                {
                    "z_mse": np.mean(err**2),
                    "z_mae": np.mean(np.abs(err)),
                    "z_mean": z.mean(),
                    "z_meansq": np.mean(z**2),
                },
                z.size,
            )
        )
    total = sum(n for _, n in moments)
    pooled = {k: sum(m[k] * n for m, n in moments) / total for k in REGRESSION_MOMENTS}
    out = regression_metrics(pooled, std)
    z = np.concatenate([p[0] for p in pods])
    err = np.concatenate([p[1] for p in pods])
    assert out["rmse"] == pytest.approx(std * np.sqrt(np.mean(err**2)))
    assert out["mae"] == pytest.approx(std * np.mean(np.abs(err)))
    assert out["r2"] == pytest.approx(1 - np.sum(err**2) / np.sum((z - z.mean()) ** 2))


def test_loss_functions_are_mse_and_huber_on_the_standardized_target() -> None:
    out = torch.tensor([[0.0], [1.0], [4.0]])
    y = torch.tensor([0.5, 1.0, 0.0])
    mse = RegressorSpec((3,), 1).loss_fn()
    huber = RegressorSpec((3,), 1, loss="huber", huber_delta=2.0).loss_fn()
    assert mse(out, y).item() == pytest.approx(F.mse_loss(out.reshape(-1), y).item())
    assert huber(out, y).item() == pytest.approx((0.125 + 0 + 2.0 * (4 - 1.0)) / 3)


# -- predicting and persisting ----------------------------------------------------------
def test_serialize_round_trip_without_pods(tmp_path, fed_adult) -> None:
    frame = fed_adult.iloc[:300]
    task = _scaled_task(frame, hidden=[8], loss="huber", huber_delta=2.0, rounds=2)
    model = TabularRegressor(DataStructure(target=TARGET), hidden=[8], rounds=2)
    with pytest.raises(NotFittedError):
        model.predict(frame)
    weights = RegressorSpec.from_dict(task.model).initial_weights(7)
    history = [
        {
            "round": 1,
            "train": {},
            "evaluate": {"z_mse": 0.5, "z_mae": 0.5, "z_mean": 0.0, "z_meansq": 1.0},
        }
    ]
    model.set_trained(task, weights, history)
    assert model.history_[0]["evaluate"]["r2"] == pytest.approx(0.5)
    before = model.predict(frame)
    path = model.serialize(tmp_path / "regressor.pt")
    payload = torch.load(path, weights_only=True)
    assert payload["plugin"] == "tabular-regressor"
    assert payload["model"]["format"] == PAYLOAD_FORMAT == "fedplug.tabular-regressor/1"
    for again in (TabularRegressor.deserialize(path), fedplug.load_model(path)):
        assert isinstance(again, TabularRegressor)
        assert (again.loss, again.huber_delta, tuple(again.hidden)) == ("huber", 2.0, (8,))
        assert again.history_ == model.history_
        np.testing.assert_array_equal(again.predict(frame), before)
        assert again.evaluate(frame) == model.evaluate(frame)
    with pytest.raises(ModelFileError, match="tabular-regressor.*load_model"):
        TabularClassifier.deserialize(path)
    # predict() ignores a target column, even one with gaps; evaluate() names the gaps.
    gappy = frame.assign(**{TARGET: frame[TARGET].astype(float).where(frame.index % 7 != 3)})
    np.testing.assert_array_equal(model.predict(gappy), before)
    np.testing.assert_array_equal(model.predict(frame.drop(columns=[TARGET])), before)
    with pytest.raises(DataValidationError, match=rf"{TARGET!r}.*null"):
        model.evaluate(gappy)


# -- errors a person can act on ---------------------------------------------------------
def test_a_categorical_target_for_the_regressor_is_refused(fed_pods) -> None:
    pods = fed_pods(n_pods=2, rows=100)
    with pytest.raises(DataStructureError) as info:
        TabularRegressor(DataStructure(target="TARGET")).fit(
            pods, backend="inprocess", verbose=False
        )
    text = str(info.value)
    assert "'TARGET' is categorical" in text and "regressor needs a continuous target" in text
    assert "hours-per-week" in text and "model=tabular_classifier" in text


def test_a_continuous_target_for_the_classifier_is_refused(fed_pods) -> None:
    pods = fed_pods(n_pods=2, rows=100)
    with pytest.raises(DataStructureError) as info:
        TabularClassifier(DataStructure(target=TARGET)).fit(
            pods, backend="inprocess", verbose=False
        )
    text = str(info.value)
    assert f"{TARGET!r} is continuous" in text and "classifier needs a categorical target" in text
    assert "model=tabular_regressor" in text


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"loss": "l1"}, r"loss='l1' is not a regression loss; use one of \['mse', 'huber'\]"),
        ({"loss": "huber", "huber_delta": 0}, "huber_delta=0 must be a number > 0"),
        ({"rounds": 0}, "rounds"),
        ({"dropout": 1.5}, "dropout"),
    ],
)
def test_bad_parameters_are_named_before_any_pod_is_read(params: dict, match: str) -> None:
    model = TabularRegressor(DataStructure(target=TARGET), **params)
    with pytest.raises(ConfigError, match=match):
        # No pod exists: the parameters are checked first.
        model.fit(["no-such-pod"], backend="inprocess", verbose=False)


def test_resolve_checks_the_target_for_the_task() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "c": ["a", "b", "a"], "y": [0.5, 1.5, 2.5]})
    schema = Schema.infer(frame)
    resolved = DataStructure(target="y").resolve(schema, task="regression")
    assert (resolved.task, resolved.continuous, resolved.scaled) == (
        "regression",
        ["x"],
        ["x", "y"],
    )
    assert resolved.classes == ()
    classified = DataStructure(target="c").resolve(schema)
    assert classified.scaled == classified.continuous == ["x", "y"]
    assert DataStructure(target="y").resolve(schema, task="auto") == resolved
    assert DataStructure(target="c").resolve(schema, task="auto") == classified
    with pytest.raises(
        DataStructureError, match=r"'z' is not in the schema.*continuous columns \['x', 'y'\]"
    ):
        DataStructure(target="z").resolve(schema, task="regression")
    with pytest.raises(
        DataStructureError, match=r"task must be one of \['classification', 'regression', 'auto'\]"
    ):
        DataStructure(target="y").resolve(schema, task="ranking")


def test_hydra_selects_the_regressor_on_census_hours() -> None:
    from fedplug._task_builder import compose_config, objects_from_config

    run = objects_from_config(
        compose_config(
            ["datastructure=census_hours", "model=tabular_regressor", "model.loss=huber"]
        )
    )
    assert isinstance(run.model, TabularRegressor)
    assert run.model.datastructure.target == TARGET
    assert (run.model.loss, run.model.huber_delta, run.model.rounds) == ("huber", 1.0, 5)
    with pytest.raises(ConfigError, match="huber_delta"):
        objects_from_config(compose_config(["model=tabular_regressor", "+model.huber_delt=2"]))


def test_the_flower_server_app_trains_it_secure_with_metrics_in_target_units(
    fed_pods, tmp_path
) -> None:
    # flwr run's ServerApp on an in-process grid: the same composed task as fedplug run.
    import json

    from flwr.app import Context, RecordDict

    from fedplug._flower import LocalGrid, build_client_app
    from fedplug._flower import app as flower_app

    pods = fed_pods(n_pods=2, rows=300)
    grid = LocalGrid(
        {i + 1: build_client_app() for i in range(2)},
        node_configs={i + 1: {"pod": str(p)} for i, p in enumerate(pods)},
    )
    out = tmp_path / "out"
    overrides = (
        "datastructure=census_hours model=tabular_regressor aggregator=secure model.rounds=2 "
        "pods.identifiers=[pod-a,pod-b] ++federation.connect_timeout=5"
    )
    context = Context(
        run_id=1,
        node_id=0,
        node_config={},
        state=RecordDict(),
        run_config={"overrides": overrides, "output-dir": str(out)},
    )
    assert flower_app.run_deployed(grid, context) == out
    history = json.loads((out / "history.json").read_text())["history"]
    assert [h["round"] for h in history] == [1, 2]
    assert set(history[-1]["evaluate"]) >= {"rmse", "mae", "r2"}
    assert not set(history[-1]["evaluate"]) & set(REGRESSION_MOMENTS)
    model = fedplug.load_model(out / "model.pt")
    assert isinstance(model, TabularRegressor)
    assert model.history_ == history
