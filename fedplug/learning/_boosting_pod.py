"""The pod half of the ``gradient-boosted-trees`` model plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fedplug._errors import ConfigError

from ._boosting import BoostingData, BoostingParams, Ensemble, probabilities
from ._pod_model import PodModel

if TYPE_CHECKING:
    from ._task import TrainingTask

#: Per-row log loss is capped here, so an evaluation exchange has a known bound.
MAX_ROW_LOSS = 30.0


def log_loss_and_correct(
    ensemble: Ensemble, data: BoostingData, bins: np.ndarray
) -> tuple[float, float]:
    """Summed log loss (per row at most MAX_ROW_LOSS) and number of correct predictions."""
    p = probabilities(data.margins(ensemble, bins), ensemble.n_classes)
    picked = p[np.arange(len(data.labels)), data.labels]
    loss = np.minimum(-np.log(np.maximum(picked, 1e-300)), MAX_ROW_LOSS)
    return float(loss.sum()), float((p.argmax(axis=1) == data.labels).sum())


class BoostingPod(PodModel):
    """Answers the boosting exchanges (``init``, ``hist``) and ``eval`` on this pod's rows."""

    def __init__(self, task: TrainingTask, train: pd.DataFrame, validation: pd.DataFrame):
        super().__init__(task, train, validation)
        self.params = BoostingParams.from_dict(task.model)
        self._data: dict[str, BoostingData] = {}

    def data(self, part: str) -> BoostingData:
        if part not in self._data:
            frame = self._train_frame if part == "train" else self._validation_frame
            self._data[part] = BoostingData(
                frame, self.resolved.target, self.resolved.classes, self.resolved.continuous
            )
        return self._data[part]

    def answer(self, request: dict[str, Any]) -> np.ndarray:
        if request.get("op") == "eval":
            return self._evaluate(Ensemble.from_dict(request["ensemble"]))
        if request.get("op") in ("init", "hist"):
            return self.data("train").answer(request)
        raise ConfigError(
            f"gradient-boosted trees: unknown exchange {request.get('op')!r}; the server and "
            "this pod run different versions of fedplug"
        )

    def _evaluate(self, ensemble: Ensemble) -> np.ndarray:
        """``[rows, loss sum, correct]`` for the training rows, then the validation rows."""
        out = []
        for part in ("train", "validation"):
            data = self.data(part)
            if len(data.labels) == 0:
                out += [0.0, 0.0, 0.0]
                continue
            loss, correct = log_loss_and_correct(ensemble, data, data.bins(ensemble.binning))
            out += [float(len(data.labels)), loss, correct]
        return np.asarray(out)
