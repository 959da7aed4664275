"""What the models trained by strategy rounds share: their training parameters and task.

``TabularClassifier``, ``TabularRegressor`` and ``TorchModule`` each train a torch network
for ``rounds`` rounds of ``epochs`` (or ``steps``) with an optimizer; this base checks those
parameters once and builds the task pods get around each model's own network spec.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fedplug._errors import ConfigError
from fedplug._model_base import Model
from fedplug._validation import positive_int
from fedplug.data import Schema
from fedplug.learning import DataStructure, Optimizer, TrainingTask


class NetworkModel(Model):
    """A model trained by rounds of the Flower strategy (weights averaged by the aggregator).

    Subclasses store ``datastructure``, ``epochs``, ``steps``, ``batch_size``, ``rounds``,
    ``optimizer`` and ``seed`` in ``__init__``.
    """

    datastructure: DataStructure
    epochs: int | None
    steps: int | None
    batch_size: int
    rounds: int
    optimizer: Optimizer | None
    seed: int

    def check_training_params(self) -> None:
        """The parameters every network model has; a ConfigError names the bad one."""
        name = type(self).__name__
        if not isinstance(self.datastructure, DataStructure):
            raise ConfigError(
                "datastructure must be a fedplug.DataStructure, "
                f"got {type(self.datastructure).__name__}."
            )
        if (self.epochs is None) == (self.steps is None):
            raise ConfigError(
                f"give exactly one of epochs={self.epochs!r} and steps={self.steps!r} "
                "(training per round is counted in one or the other)."
            )
        for key in ("epochs", "steps", "batch_size", "rounds"):
            value = getattr(self, key)
            if value is not None or key in ("batch_size", "rounds"):
                positive_int(value, name=key, fix=f"pass e.g. {name}(..., {key}=1 or more)")

    def network_task(
        self, schema: Schema, used: Sequence[str], model: dict[str, Any]
    ) -> TrainingTask:
        """The task pods get: the used columns' schema, the datastructure, the network spec
        ``model``, the optimizer (Adam 1e-3 unless given) and the training schedule."""
        optimizer = self.optimizer or Optimizer("Adam", {"lr": 1e-3})
        return TrainingTask(
            schema=schema.select(list(used)).to_dict(),
            datastructure=self.datastructure.to_dict(),
            model=model,
            optimizer=optimizer.to_dict(),
            epochs=self.epochs,
            steps=self.steps,
            batch_size=int(self.batch_size),
            seed=int(self.seed),
            model_plugin=self.plugin_name,
        )
