"""The pod half of ``ridge-classifier``: this pod's answers to the two exchanges.

A pod loads it by the entry-point name ``ridge-classifier`` (group ``fedplug.pod_models``)
only if its owner installed this package and its policy lists the name in
``policy.accepted_models``. It answers with sums over its own rows, never a row.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from fedplug import ModelMismatchError
from fedplug.learning import TrainingTask
from fedplug.plugins import PodModel

from ._design import Design, evaluation_sums, statistics


class RidgePod(PodModel):
    """Answers ``statistics`` (the training exchange) and ``evaluate``."""

    def __init__(self, task: TrainingTask, train: pd.DataFrame, validation: pd.DataFrame):
        super().__init__(task, train, validation)
        self._encoded: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @cached_property
    def design(self) -> Design:
        # Not in __init__: fedplug also builds the pod half for the scaling exchanges
        # (PodModel.moments), before the task carries the mean and std.
        return Design.from_task(self.task)

    def _part(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        """``(X, class indices)`` of the training or validation rows, built once."""
        if part not in self._encoded:
            frame = self._train_frame if part == "train" else self._validation_frame
            where = f"this pod's {part} rows"
            self._encoded[part] = (self.design.features(frame), self.design.labels(frame, where))
        return self._encoded[part]

    def answer(self, request: dict[str, Any]) -> np.ndarray:
        op = request.get("op")
        if op == "statistics":
            x, labels = self._part("train")
            return statistics(x, self.design.one_hot(labels))
        if op == "evaluate":
            weights = np.asarray(request.get("weights"), dtype=np.float64)
            expected = (self.design.n_features, self.design.n_classes)
            if weights.shape != expected:
                raise ModelMismatchError(
                    f"ridge-classifier: the server sent weights of shape {weights.shape}, "
                    f"expected {expected}; the server and this pod run different versions of "
                    "fedplug-example-model"
                )
            out: list[float] = []
            for part in ("train", "validation"):
                out += evaluation_sums(*self._part(part), weights)
            return np.asarray(out, dtype=np.float64)
        raise ModelMismatchError(
            f"ridge-classifier: unknown exchange {op!r}; the server and this pod run different "
            "versions of fedplug-example-model"
        )
