"""The ``tabular-regressor`` model plugin's pod half, and the network spec both halves share.

The network is the classifier's (embeddings + MLP) with one output: the target
standardized by its cross-pod mean and std, which the statistics exchanges compute
through the run's aggregator with the features' (see ``ResolvedColumns.scaled``). Losses,
updates and metrics are then of order one whatever the target's units, so they keep
their precision within the secure aggregator's clip ranges.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F  # noqa: N812

from fedplug._errors import ConfigError
from fedplug._validation import check_known_keys

from ._evaluation import evaluate_regression
from ._model import TabularMLP, _check_args, get_weights
from ._network_pod import NetworkPod

if TYPE_CHECKING:
    from fedplug.data import Schema

    from ._datastructure import ResolvedColumns
    from ._task import TrainingTask

#: The regressor's losses, on the standardized target.
LOSSES = ("mse", "huber")

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def check_loss(loss: object, huber_delta: object) -> tuple[str, float]:
    """``(loss, huber_delta)`` once valid, else a ConfigError naming the valid values."""
    if loss not in LOSSES:
        raise ConfigError(
            f"model: loss={loss!r} is not a regression loss; use one of {list(LOSSES)} "
            "(e.g. model.loss=huber)"
        )
    if (
        isinstance(huber_delta, bool)
        or not isinstance(huber_delta, (int, float))
        or not math.isfinite(huber_delta)
        or huber_delta <= 0
    ):
        raise ConfigError(
            f"model: huber_delta={huber_delta!r} must be a number > 0 (in units of the "
            "target's standard deviation, e.g. 1.0)"
        )
    return str(loss), float(huber_delta)


@dataclass(frozen=True)
class RegressorSpec:
    """What a pod needs to rebuild the regressor's network and its loss (``task.model``).

    ``huber_delta`` is in units of the target's cross-pod standard deviation (the loss
    is computed on the standardized target): errors beyond it count linearly.
    """

    cardinalities: tuple[int, ...]
    n_continuous: int
    hidden: tuple[int, ...] = (64, 32)
    dropout: float = 0.1
    loss: str = "mse"
    huber_delta: float = 1.0

    def __post_init__(self) -> None:
        cards, sizes = _check_args(
            self.cardinalities, self.n_continuous, 1, self.hidden, self.dropout, ("n_outputs", 1)
        )
        loss, delta = check_loss(self.loss, self.huber_delta)
        # Frozen: normalise lists (from YAML/JSON) to tuples so specs compare equal.
        object.__setattr__(self, "cardinalities", cards)
        object.__setattr__(self, "hidden", sizes)
        object.__setattr__(self, "n_continuous", int(self.n_continuous))
        object.__setattr__(self, "dropout", float(self.dropout))
        object.__setattr__(self, "loss", loss)
        object.__setattr__(self, "huber_delta", delta)

    @classmethod
    def for_columns(
        cls,
        schema: Schema,
        resolved: ResolvedColumns,
        hidden: Sequence[int] = (64, 32),
        dropout: float = 0.1,
        loss: str = "mse",
        huber_delta: float = 1.0,
    ) -> RegressorSpec:
        """The spec for the resolved columns of a (combined) schema."""
        cards = tuple(len(schema[c].categories or ()) for c in resolved.categorical)
        return cls(
            cardinalities=cards,
            n_continuous=len(resolved.continuous),
            hidden=tuple(hidden) if isinstance(hidden, Sequence) else hidden,
            dropout=dropout,
            loss=loss,
            huber_delta=huber_delta,
        )

    def build(self) -> TabularMLP:
        """A freshly initialised one-output net (seed torch first for reproducible weights)."""
        return TabularMLP(self.cardinalities, self.n_continuous, 1, self.hidden, self.dropout)

    def loss_fn(self) -> LossFn:
        """The batch's mean loss of the net's ``[n, 1]`` outputs against ``[n]`` targets."""
        delta = self.huber_delta
        if self.loss == "huber":
            return lambda out, y: F.huber_loss(out.reshape(-1), y, delta=delta)
        return lambda out, y: F.mse_loss(out.reshape(-1), y)

    def initial_weights(self, seed: int) -> list[np.ndarray]:
        """The round-0 weights: the net built under ``seed``."""
        torch.manual_seed(seed)
        return get_weights(self.build())

    def to_dict(self) -> dict[str, Any]:
        """YAML/JSON-safe dictionary."""
        d = asdict(self)
        d["cardinalities"] = list(self.cardinalities)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RegressorSpec:
        """Inverse of :meth:`to_dict`; unknown or missing keys are an error."""
        names = [f.name for f in fields(cls)]
        if not isinstance(data, Mapping):
            raise ConfigError(f"model: expected a mapping with keys {names}, got {data!r}")
        check_known_keys(data, names, where="model")
        missing = [n for n in ("cardinalities", "n_continuous") if n not in data]
        if missing:
            raise ConfigError(f"model: missing key(s) {missing}; valid keys are {names}")
        values = dict(data)
        for key in ("cardinalities", "hidden"):
            if key in values and isinstance(values[key], list):
                values[key] = tuple(values[key])
        return cls(**values)


class RegressorPod(NetworkPod):
    """The pod half of the ``tabular-regressor`` model plugin.

    Trains and scores on the target standardized by the task's cross-pod ``mean``/``std``
    (their last entry); its metrics are the weighted-mean-friendly
    :data:`~fedplug.learning._metrics.REGRESSION_MOMENTS`, from which the server computes
    RMSE, MAE and R^2 of the pooled rows in the target's units.
    """

    learning_task = "regression"

    def __init__(self, task: TrainingTask, train: pd.DataFrame, validation: pd.DataFrame):
        super().__init__(task, train, validation)
        self.spec = RegressorSpec.from_dict(task.model)

    def loss_fn(self) -> LossFn:
        return self.spec.loss_fn()

    def evaluate(self, weights: list[np.ndarray]) -> dict:
        net = self._net(weights)
        return evaluate_regression(net, self._data("validation"), self.spec.loss_fn())
