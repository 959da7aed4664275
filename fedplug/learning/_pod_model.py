"""The pod half of a model plugin: what a pod computes for the exchanges a model asks for.

A pod loads it by the entry-point name the task carries (group ``fedplug.pod_models``) from
what its owner installed, and only if its policy accepts that name. Every answer is a vector
that the run's aggregator sums or averages over pods, plain or secure: a pod half never
returns rows, and the server never sees one pod's vector under secure aggregation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fedplug._errors import ModelMismatchError
from fedplug.data import Schema

from ._datastructure import DataStructure
from ._stats import local_feature_moments

if TYPE_CHECKING:
    from fedplug.data import PodPolicy

    from ._task import TrainingTask


class PodModel:
    """Base class of a model plugin's pod half.

    ``__init__(task, train, validation)`` receives the task (plain data the server sent)
    and the pod's validated frames; it must not modify them. Override what the model's
    server half asks for:

    - :meth:`fit` / :meth:`evaluate` for models trained by rounds of a Flower strategy
      (the server averages the returned weights and metrics, weighted by examples);
    - :meth:`answer` for models driven by exchanges (the server sums the vectors).
    """

    #: The fedplug plugin API this pod half is written for.
    fedplug_plugin_api = 2
    #: What the target is checked for (see ``DataStructure.resolve``): "classification"
    #: or "regression".
    learning_task = "classification"

    @classmethod
    def admit(cls, task: TrainingTask, policy: PodPolicy, pod: str) -> None:
        """Refuse (``PolicyRefusal``) a task this pod's policy does not allow, before
        anything is built; the pod's policy already accepted the model plugin itself."""

    def __init__(self, task: TrainingTask, train: pd.DataFrame, validation: pd.DataFrame):
        self.task = task
        self.schema = Schema.from_dict(task.schema)
        self.datastructure = DataStructure.from_dict(task.datastructure)
        self.resolved = self.datastructure.resolve(self.schema, task=self.learning_task)
        self._train_frame = train
        self._validation_frame = validation

    def moments(self) -> tuple[np.ndarray, int]:
        """This pod's statistics of the continuous features (and a regression's target)
        and the rows they summarise.

        First exchange: the column means. Second (once the task carries a public centre
        and unit per column): the first two moments of ``(x - centre) / unit``. The server
        turns their cross-pod means into the scaling every model shares.
        """
        columns = self.resolved.scaled
        if not self.task.stats_unit:
            vector = local_feature_moments(self._train_frame, columns)[: len(columns)]
        else:
            vector = local_feature_moments(
                self._train_frame, columns, self.task.stats_center, self.task.stats_unit
            )
        return vector, len(self._train_frame)

    def fit(
        self, weights: list[np.ndarray], server_round: int, proximal_mu: float = 0.0
    ) -> tuple[list[np.ndarray], dict]:
        """Train from the global ``weights``; return new weights and metrics (with the
        example count under ``num-examples``)."""
        raise self._unsupported("fit")

    def evaluate(self, weights: list[np.ndarray]) -> dict:
        """Metrics of ``weights`` on the pod's validation rows (with ``num-examples``)."""
        raise self._unsupported("evaluate")

    def answer(self, request: dict[str, Any]) -> np.ndarray:
        """This pod's vector for an exchange the server half asked for (summed over pods)."""
        raise self._unsupported("answer")

    def _unsupported(self, what: str) -> ModelMismatchError:
        return ModelMismatchError(
            f"model plugin {self.task.model_plugin!r}: its pod half "
            f"{type(self).__name__} does not implement {what}(); the server half and the pod "
            "half come from different versions of the plugin"
        )
