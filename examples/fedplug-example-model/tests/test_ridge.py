"""The example model plugin passes fedplug's conformance kit and trains the closed form."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import CLASSES, write_pods
from fedplug import (
    ConfigError,
    DataStructure,
    FedAvg,
    Pod,
    PolicyRefusal,
    SecureAggregator,
    load_model,
)
from fedplug.plugins import list_plugins, load_plugin
from fedplug.testing import check_model

from fedplug_example_model import RidgeClassifier, RidgePod


def test_conformance() -> None:
    check_model(RidgeClassifier(DataStructure(target="label")))


def central_weights(paths: list[Path], names: list[str], classes: list[Any], alpha: float):
    """The closed form on the pods' training rows pooled in one place, written out
    independently of the plugin: one-hot colors, x1 and x2 standardized by the pooled mean
    and (population) std and clipped to [-10, 10], an intercept; one-hot classes."""
    train = pd.concat([Pod.from_yaml(p).load().train for p in paths], ignore_index=True)
    raw = train[["x1", "x2"]].to_numpy(dtype=np.float64)
    z = np.clip((raw - raw.mean(axis=0)) / raw.std(axis=0), -10.0, 10.0)
    assert (np.abs((raw - raw.mean(axis=0)) / raw.std(axis=0)) > 10).any()  # clipping is tested
    columns = {"x1": z[:, 0], "x2": z[:, 1], "(intercept)": np.ones(len(train))}
    columns |= {
        f"color={c}": (train["color"] == c).to_numpy(float) for c in ("red", "green", "blue")
    }
    x = np.column_stack([columns[name] for name in names])
    y = (train["label"].to_numpy()[:, None] == np.asarray(classes)[None, :]).astype(float)
    weights = np.linalg.solve(x.T @ x + alpha * np.eye(len(names)), x.T @ y)
    return weights, x


@pytest.mark.parametrize("aggregator", [FedAvg(), SecureAggregator()], ids=["plain", "secure"])
def test_the_federated_solution_is_the_central_closed_form(
    pods: list[Path], aggregator: Any, tmp_path: Path
) -> None:
    model = RidgeClassifier(DataStructure(target="label"), alpha=2.5)
    history = model.fit([str(p) for p in pods], aggregator, backend="inprocess", verbose=False)
    names = model.feature_names_
    assert sorted(names) == sorted(
        ["color=red", "color=green", "color=blue", "x1", "x2", "(intercept)"]
    )
    assert sorted(model.classes_) == sorted(CLASSES)
    expected, x = central_weights(pods, names, model.classes_, alpha=2.5)
    np.testing.assert_allclose(model.coef_, expected, atol=1e-6, rtol=0)
    # predict is the argmax of the scores; predict_proba their softmax.
    frame = pd.concat([Pod.from_yaml(p).load().train for p in pods], ignore_index=True)
    scores = x @ expected
    assert list(model.predict(frame)) == list(np.asarray(model.classes_)[scores.argmax(axis=1)])
    proba = model.predict_proba(frame)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert (proba.argmax(axis=1) == scores.argmax(axis=1)).all()
    # One training exchange, reported as one round, with the pods' summed metrics.
    assert len(history) == 1 and history[0]["round"] == 1
    assert history[0]["train"]["train_accuracy"] == pytest.approx(
        float((scores.argmax(axis=1) == pd.Index(model.classes_).get_indexer(frame.label)).mean())
    )
    # Scored again on the pods (their validation rows), through the same aggregator.
    again = model.evaluate(pod_identifiers=[str(p) for p in pods], aggregator=aggregator)
    for key, value in history[0]["evaluate"].items():
        assert again[key] == pytest.approx(value, abs=1e-9)
    # The saved model needs no pod and predicts the same.
    loaded = load_model(model.serialize(tmp_path / "ridge.pt"))
    assert isinstance(loaded, RidgeClassifier)
    np.testing.assert_array_equal(loaded.coef_, model.coef_)


@pytest.mark.parametrize("alpha", [0, -1.0, float("nan"), float("inf"), "1.0", True, None])
def test_a_bad_alpha_is_a_config_error_naming_it(alpha: Any) -> None:
    with pytest.raises(ConfigError, match="alpha"):
        RidgeClassifier(DataStructure(target="label"), alpha=alpha).check_params()


def test_fit_refuses_a_bad_alpha_before_any_pod_computes(pods: list[Path]) -> None:
    with pytest.raises(ConfigError, match=r"alpha=-1"):
        RidgeClassifier(DataStructure(target="label"), alpha=-1).fit(
            [str(p) for p in pods], backend="inprocess", verbose=False
        )


def test_registered_under_its_entry_point_names() -> None:
    assert load_plugin("models", "ridge-classifier") is RidgeClassifier
    assert load_plugin("pod_models", "ridge-classifier") is RidgePod
    origins = {(p.kind, p.name): p.distribution for p in list_plugins()}
    assert origins[("models", "ridge-classifier")] == "fedplug-example-model"
    assert origins[("pod_models", "ridge-classifier")] == "fedplug-example-model"


def test_pods_that_do_not_accept_it_refuse_it(tmp_path: Path) -> None:
    # The default policy accepts only fedplug's built-in models.
    paths = write_pods(tmp_path, accepted=None)
    with pytest.raises(PolicyRefusal, match=r"ridge-classifier.*policy\.accepted_models"):
        RidgeClassifier(DataStructure(target="label")).fit(
            [str(p) for p in paths], backend="inprocess", verbose=False
        )


def test_hydra_finds_its_config() -> None:
    # The searchpath plugin puts conf/model/ridge.yaml on `fedplug run`'s search path.
    fedplug = Path(sys.executable).with_name("fedplug")
    done = subprocess.run(
        [str(fedplug), "run", "model=ridge", "model.alpha=0.5", "--cfg", "job"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    model = yaml.safe_load(done.stdout)["model"]
    assert model == {"name": "ridge-classifier", "alpha": 0.5}
