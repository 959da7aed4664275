"""A training task as it travels to pods, and the pod-side work it describes.

The server sends a :class:`TrainingTask` with every message as JSON; a pod rebuilds the
model and encoder from it, so pods need no configuration of their own beyond their data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F  # noqa: N812

from fedplug.data import Schema

from ._datastructure import DataStructure
from ._evaluation import evaluate_local
from ._model import TabularNetSpec
from ._network_pod import NetworkPod
from ._stats import scaling_from_moments


@dataclass
class TrainingTask:
    """Everything a pod needs to train and evaluate one model."""

    schema: dict[str, Any]
    datastructure: dict[str, Any]
    model: dict[str, Any]
    optimizer: dict[str, Any]
    epochs: int | None = 1
    steps: int | None = None
    batch_size: int = 64
    seed: int = 42
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    # Set between the two statistics exchanges: moments are then of (x - center) / unit.
    stats_center: list[float] = field(default_factory=list)
    stats_unit: list[float] = field(default_factory=list)
    #: The model plugin whose pod half runs this task (an entry-point name pods load).
    model_plugin: str = "tabular-classifier"

    def to_json(self) -> str:
        # Key order matters: column order defines the model inputs.
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> TrainingTask:
        return cls(**json.loads(text))

    def digest(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def with_scaling(self, mean: np.ndarray, std: np.ndarray) -> TrainingTask:
        data = asdict(self)
        data.update(mean=[float(v) for v in mean], std=[float(v) for v in std])
        return TrainingTask(**data)

    def with_stats_center(self, center: np.ndarray, unit: np.ndarray) -> TrainingTask:
        data = asdict(self)
        data.update(stats_center=[float(v) for v in center], stats_unit=[float(v) for v in unit])
        return TrainingTask(**data)

    def continuous(self) -> list[str]:
        """The columns the cross-pod statistics scale (``mean``/``std`` are of these): the
        continuous features, then a regression's (continuous) target."""
        schema = Schema.from_dict(self.schema)
        return DataStructure.from_dict(self.datastructure).resolve(schema, task="auto").scaled


class PodTrainer(NetworkPod):
    """The pod half of the ``tabular-classifier`` model plugin (the MLP)."""

    def __init__(self, task: TrainingTask, train: pd.DataFrame, validation: pd.DataFrame):
        super().__init__(task, train, validation)
        self.spec = TabularNetSpec.from_dict(task.model)

    def loss_fn(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
        if not self.spec.class_weights:
            return None  # train_local's cross-entropy
        weight = torch.tensor(self.spec.class_weights, dtype=torch.float32)
        return partial(F.cross_entropy, weight=weight)

    def evaluate(self, weights: list[np.ndarray]) -> dict:
        net = self._net(weights)
        return evaluate_local(net, self._data("validation"))

    def answer(self, request: dict[str, Any]) -> np.ndarray:
        """``class_counts``: this pod's training rows per class (for balanced weights)."""
        if request.get("op") != "class_counts":
            return super().answer(request)
        labels = self._data("train").y
        assert labels is not None  # the training rows always carry the target
        counts = np.bincount(labels.numpy(), minlength=self.spec.n_classes)
        return counts.astype(np.float64)


def scaling_for(task: TrainingTask, centred_moments: np.ndarray) -> TrainingTask:
    """Return the task with the cross-pod scaling statistics filled in."""
    mean, std = scaling_from_moments(
        centred_moments, len(task.continuous()), task.stats_center, task.stats_unit
    )
    return task.with_scaling(mean, std)
