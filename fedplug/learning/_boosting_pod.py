"""The pod half of the ``gradient-boosted-trees`` model plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fedplug._errors import ConfigError

from ._boosting import TARGET_CLIP, BoostingData, BoostingParams, Ensemble, probabilities
from ._pod_model import PodModel

if TYPE_CHECKING:
    from ._task import TrainingTask

#: Per-row log loss is capped here, so an evaluation exchange has a known bound.
MAX_ROW_LOSS = 30.0
#: A regression's per-row error (standardized) is capped here, for the same reason.
ERROR_CAP = 2 * TARGET_CLIP


def row_caps(n_classes: int) -> tuple[float, float]:
    """What one row adds at most to the two sums of an evaluation: loss and correct
    (regression: squared and absolute error). Pods send the sums divided by these, so
    every element is at most the pod's row count (the exchange's default bound)."""
    return (ERROR_CAP**2, ERROR_CAP) if n_classes == 0 else (MAX_ROW_LOSS, 1.0)


def log_loss_and_correct(
    ensemble: Ensemble, data: BoostingData, bins: np.ndarray
) -> tuple[float, float]:
    """Summed log loss (per row at most MAX_ROW_LOSS) and number of correct predictions;
    for a regression, the summed squared and absolute errors of the standardized target."""
    if ensemble.n_classes == 0:
        error = np.clip(data.margins(ensemble, bins)[:, 0] - data.labels, -ERROR_CAP, ERROR_CAP)
        return float((error**2).sum()), float(np.abs(error).sum())
    p = probabilities(data.margins(ensemble, bins), ensemble.n_classes)
    picked = p[np.arange(len(data.labels)), data.labels]
    loss = np.minimum(-np.log(np.maximum(picked, 1e-300)), MAX_ROW_LOSS)
    return float(loss.sum()), float((p.argmax(axis=1) == data.labels).sum())


class BoostingPod(PodModel):
    """Answers the boosting exchanges (``init``, ``hist``) and ``eval`` on this pod's rows."""

    # Classification or regression, as the target's semantic type says.
    learning_task = "auto"

    def __init__(self, task: TrainingTask, train: pd.DataFrame, validation: pd.DataFrame):
        super().__init__(task, train, validation)
        self.params = BoostingParams.from_dict(task.model)
        self._data: dict[str, BoostingData] = {}

    def target_scaling(self) -> tuple[float, float] | None:
        """A regression's cross-pod target mean and std (the last scaled column)."""
        if self.resolved.task != "regression":
            return None
        return float(self.task.mean[-1]), float(self.task.std[-1])

    def data(self, part: str) -> BoostingData:
        if part not in self._data:
            frame = self._train_frame if part == "train" else self._validation_frame
            self._data[part] = BoostingData(
                frame,
                self.resolved.target,
                self.resolved.classes,
                self.resolved.continuous,
                self.target_scaling(),
            )
        return self._data[part]

    def answer(self, request: dict[str, Any]) -> np.ndarray:
        if request.get("op") == "eval":
            return self._evaluate(self.data("train").ensemble(request["ensemble"]))
        if request.get("op") in ("init", "hist"):
            return self.data("train").answer(request)
        raise ConfigError(
            f"gradient-boosted trees: unknown exchange {request.get('op')!r}; the server and "
            "this pod run different versions of fedplug"
        )

    def _evaluate(self, ensemble: Ensemble) -> np.ndarray:
        """``[rows, loss sum, correct]`` for the training rows, then the validation rows
        (regression: ``[rows, squared error sum, absolute error sum]``)."""
        out = []
        for part in ("train", "validation"):
            data = self.data(part)
            if len(data.labels) == 0:
                out += [0.0, 0.0, 0.0]
                continue
            loss, correct = log_loss_and_correct(ensemble, data, data.bins(ensemble.binning))
            first, second = row_caps(ensemble.n_classes)
            out += [float(len(data.labels)), loss / first, correct / second]
        return np.asarray(out)
