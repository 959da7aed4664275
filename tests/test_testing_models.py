"""The model-plugin conformance kit passes the built-in models and catches broken ones."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fedplug import DataStructure, GradientBoostedTrees, Optimizer, TabularClassifier
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
