"""The model-plugin conformance kit passes the built-in models and catches broken ones."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedplug import DataStructure, GradientBoostedTrees, Optimizer, TabularClassifier
from fedplug import _model_base as fedplug_model
from fedplug.data._pod import BUILTIN_MODELS
from fedplug.testing import check_model


def _classifier(**kw: Any) -> TabularClassifier:
    return TabularClassifier(
        DataStructure(target="label"),
        rounds=2,
        hidden=(8,),
        batch_size=16,
        optimizer=Optimizer("SGD", {"lr": 0.05}),
        **kw,
    )


def test_the_built_in_models_pass() -> None:
    check_model(_classifier())
    check_model(GradientBoostedTrees(DataStructure(target="label"), n_trees=3, max_depth=2))


class Forgetful(TabularClassifier):
    """Does not store a parameter under its own name."""

    def __init__(self, datastructure: DataStructure, width: int = 8) -> None:
        super().__init__(datastructure, rounds=1, hidden=(width,))


class Lossy(TabularClassifier):
    """Saves the weights but loses the scaling: predictions change after loading."""

    def to_payload(self) -> dict[str, Any]:
        payload = super().to_payload()
        task = self._fitted[0]
        payload["task"] = task.with_scaling(np.zeros(len(task.mean)), np.ones(len(task.std)))
        payload["task"] = payload["task"].to_json()
        return payload


class Unnamed(TabularClassifier):
    plugin_name = "no-such-model"


class Clumsy(GradientBoostedTrees):
    """Keeps a counter on the model across fits: a second fit trains another model."""

    def driver(self):  # noqa: ANN201
        from dataclasses import replace

        from fedplug._trees import boosting_driver

        self._fits = getattr(self, "_fits", 0) + 1
        return boosting_driver(replace(self.params(), max_depth=self._fits), 1)


class Meddling(GradientBoostedTrees):
    """Overwrites a parameter while fitting."""

    def training_task(self, schema):  # noqa: ANN001, ANN201
        self.n_trees = 1
        return super().training_task(schema)


@pytest.mark.parametrize(
    ("model", "check"),
    [
        (Forgetful(DataStructure(target="label")), "check_model_init"),
        (Lossy(DataStructure(target="label"), rounds=1, hidden=(8,)), "check_model_serialize"),
        (Unnamed(DataStructure(target="label")), "check_model_declarations"),
        (
            Clumsy(DataStructure(target="label"), n_trees=2, max_depth=1),
            "check_model_repeatable",
        ),
        (
            Meddling(DataStructure(target="label"), n_trees=2, max_depth=1),
            "check_model_keeps_parameters",
        ),
    ],
)
def test_broken_models_are_caught(model: Any, check: str) -> None:
    with pytest.raises(AssertionError, match=check):
        check_model(model)


THIRD_PARTY = '''
from fedplug import GradientBoostedTrees


class ThirdPartyTrees(GradientBoostedTrees):
    """The built-in trees under a name that no pod accepts by default."""

    plugin_name = "kit-third-party-trees"
'''


def test_a_third_party_model_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A model plugin that is not a built-in: the kit's pods must accept it by name (a pod's
    # policy.accepted_models defaults to the built-ins), as its author's pods would.
    name = "kit-third-party-trees"
    assert name not in BUILTIN_MODELS
    site = tmp_path / "site"
    site.mkdir()
    (site / "fedplug_kit_third_party.py").write_text(THIRD_PARTY)
    info = site / "fedplug_kit_third_party-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fedplug-kit-third-party\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        f"[fedplug.models]\n{name} = fedplug_kit_third_party:ThirdPartyTrees\n"
        f"[fedplug.pod_models]\n{name} = fedplug.learning:BoostingPod\n"
    )
    monkeypatch.syspath_prepend(str(site))
    try:
        from fedplug_kit_third_party import ThirdPartyTrees  # type: ignore[import-not-found]

        check_model(ThirdPartyTrees(DataStructure(target="label"), n_trees=2, max_depth=1))
    finally:
        sys.modules.pop("fedplug_kit_third_party", None)


class Hollow(TabularClassifier):
    """Forgets a hook the base class only declares."""

    evaluate_frame = fedplug_model.Model.evaluate_frame


class Undecided(GradientBoostedTrees):
    """Trains both ways at once."""

    def initial_weights(self, task):  # noqa: ANN001, ANN201
        return []


@pytest.mark.parametrize(
    ("model", "problem"),
    [
        (Hollow(DataStructure(target="label")), r"does not implement \['evaluate_frame'\]"),
        (Undecided(DataStructure(target="label")), "must train one way"),
    ],
)
def test_a_model_missing_a_hook_or_training_two_ways_is_caught(model: Any, problem: str) -> None:
    with pytest.raises(AssertionError, match=rf"check_model_declarations.*{problem}"):
        check_model(model)
