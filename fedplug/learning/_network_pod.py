"""The pod half shared by the models that train a torch network by strategy rounds.

``tabular-classifier``, ``tabular-regressor`` and ``torch-module`` differ only in the
network their task describes, its loss and its metrics: encoding the pod's frames (once
per task), rebuilding the network from the global weights and the local training loop
live here once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from ._encoding import EncodedTable, TabularEncoder
from ._model import get_weights, set_weights
from ._optimizer import Optimizer
from ._pod_model import PodModel
from ._training import train_local

if TYPE_CHECKING:
    from ._task import TrainingTask

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class NetworkPod(PodModel):
    """A pod half that trains ``self.spec.build()`` with fedplug's loop.

    Subclasses set ``self.spec`` (anything with ``build() -> torch.nn.Module``) in
    ``__init__`` and implement :meth:`evaluate`; :meth:`loss_fn` defaults to cross-entropy.
    """

    spec: Any

    def __init__(self, task: TrainingTask, train: pd.DataFrame, validation: pd.DataFrame):
        super().__init__(task, train, validation)
        self._encoded: dict[str, EncodedTable] = {}

    def loss_fn(self) -> LossFn | None:
        """The training loss (``None``: ``train_local``'s cross-entropy)."""
        return None

    def _data(self, part: str) -> EncodedTable:
        if part not in self._encoded:
            encoder = TabularEncoder(
                self.schema,
                self.resolved,
                np.asarray(self.task.mean, dtype=np.float64),
                np.asarray(self.task.std, dtype=np.float64),
            )
            frame = self._train_frame if part == "train" else self._validation_frame
            self._encoded[part] = encoder.encode(frame)
        return self._encoded[part]

    def _net(self, weights: list[np.ndarray]) -> torch.nn.Module:
        torch.manual_seed(self.task.seed)
        net = self.spec.build()
        set_weights(net, weights)
        return net

    def fit(
        self, weights: list[np.ndarray], server_round: int, proximal_mu: float = 0.0
    ) -> tuple[list[np.ndarray], dict]:
        net = self._net(weights)
        metrics = train_local(
            net,
            self._data("train"),
            epochs=self.task.epochs,
            steps=self.task.steps,
            batch_size=self.task.batch_size,
            optimizer=Optimizer.from_dict(self.task.optimizer),
            # A different seed per round and pod-independent: reproducible, not repetitive.
            seed=self.task.seed + server_round,
            proximal_mu=proximal_mu,
            loss_fn=self.loss_fn(),
        )
        return get_weights(net), metrics
