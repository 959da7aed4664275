"""The ``tabular-regressor`` model plugin's server half: fit, predict, persist.

The classifier's network with one output, trained by rounds of the Flower strategy on the
target standardized by its cross-pod mean and std (computed through the run's aggregator
with the features' statistics, so under ``aggregator=secure`` the server learns only
those, never one pod's). The pods report means over their validation rows that average
correctly by examples (:data:`fedplug.learning._metrics.REGRESSION_MOMENTS`); the server
turns the pooled means into RMSE, MAE and R^2 in the target's units.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fedplug._errors import ConfigError
from fedplug._network_model import NetworkModel
from fedplug.data import Schema
from fedplug.learning import (
    DataStructure,
    EncodedTable,
    Optimizer,
    RegressorSpec,
    TabularEncoder,
    TrainingTask,
    evaluate_regression,
    regression_metrics,
    set_weights,
)
from fedplug.learning._metrics import REGRESSION_MOMENTS
from fedplug.learning._regressor import check_loss

#: The format of this plugin's payload inside a model file (see ``Model.serialize``).
PAYLOAD_FORMAT = "fedplug.tabular-regressor/1"
PLUGIN_NAME = "tabular-regressor"


def target_scaling(task: TrainingTask) -> tuple[float, float]:
    """The target's cross-pod ``(mean, std)`` a scaled regression task carries (last entry)."""
    if not task.mean or not task.std:
        raise ConfigError(
            "tabular-regressor: the task carries no target scaling; it was not through the "
            "statistics exchanges (train it with fit())"
        )
    return float(task.mean[-1]), float(task.std[-1])


def in_target_units(metrics: dict[str, Any], std: float) -> dict[str, Any]:
    """``metrics`` with the pods' pooled regression moments replaced, in place, by ``mse``,
    ``rmse``, ``mae`` (the target's units) and ``r2``; metrics without them (already
    converted, or a round that failed) are left as they are."""
    if all(k in metrics for k in REGRESSION_MOMENTS):
        moments = {k: metrics.pop(k) for k in REGRESSION_MOMENTS}
        metrics.update(regression_metrics(moments, std))
    return metrics


class TabularRegressor(NetworkModel):
    """A regressor over a tabular datastructure with a continuous target, trained across pods.

    The classifier's parameters, plus ``loss`` ("mse" or "huber") and ``huber_delta`` (in
    units of the target's standard deviation: the loss is computed on the standardized
    target). ``predict`` returns values in the target's units; ``evaluate`` and the
    history give ``rmse``, ``mae`` (target units) and ``r2``, and ``loss`` (standardized).
    ``__init__`` only stores its parameters; they are checked when ``fit`` is called.
    """

    plugin_name = PLUGIN_NAME

    # Set once trained (fit() or deserialize()): the trained task and weights.
    _fitted: tuple[TrainingTask, list[np.ndarray]]

    def __init__(
        self,
        datastructure: DataStructure,
        schema: Schema | None = None,
        epochs: int | None = 1,
        steps: int | None = None,
        batch_size: int = 64,
        rounds: int = 5,
        optimizer: Optimizer | None = None,
        hidden: Sequence[int] = (64, 32),
        dropout: float = 0.1,
        loss: str = "mse",
        huber_delta: float = 1.0,
        seed: int = 42,
    ) -> None:
        self.datastructure = datastructure
        self.schema = schema
        self.epochs = epochs
        self.steps = steps
        self.batch_size = batch_size
        self.rounds = rounds
        self.optimizer = optimizer
        self.hidden = hidden
        self.dropout = dropout
        self.loss = loss
        self.huber_delta = huber_delta
        self.seed = seed

    # -- the model-plugin contract ------------------------------------------------------
    def check_params(self) -> None:
        self.check_training_params()
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError(f"dropout={self.dropout!r} is invalid: use a number in [0, 1).")
        check_loss(self.loss, self.huber_delta)

    def training_task(self, schema: Schema) -> TrainingTask:
        resolved = self.datastructure.resolve(schema, task="regression")
        used = [resolved.target, *resolved.categorical, *resolved.continuous]
        spec = RegressorSpec.for_columns(
            schema,
            resolved,
            tuple(self.hidden),
            float(self.dropout),
            self.loss,
            float(self.huber_delta),
        )
        return self.network_task(schema, used, spec.to_dict())

    def initial_weights(self, task: TrainingTask) -> list[np.ndarray]:
        """The round-0 model: the task's network built under the task's seed."""
        return RegressorSpec.from_dict(task.model).initial_weights(task.seed)

    def set_trained(self, task: TrainingTask, state: Any, history: list[dict]) -> None:
        _, std = target_scaling(task)
        for entry in history:
            # In place: the run's result shares these entries, and the front ends (fit's
            # return value, fedplug run's and flwr run's history.json) show them.
            if isinstance(entry.get("evaluate"), dict):
                in_target_units(entry["evaluate"], std)
        weights = [np.asarray(w) for w in state]
        super().set_trained(task, weights, history)
        self._fitted = (task, weights)

    def evaluate(
        self,
        frame: pd.DataFrame | None = None,
        *,
        pod_identifiers: Sequence[Any] | None = None,
        aggregator: Any = None,
        pod_dirs: Sequence[Path] | None = None,
        round_timeout: float = 300.0,
        backend: str = "auto",
        verbose: bool | int = False,
    ) -> dict[str, float]:
        """``rmse``, ``mae`` (target units), ``r2``, ``mse`` and ``loss`` (the training loss
        on the standardized target) on a labelled ``frame``, or on the pods' validation
        rows with ``pod_identifiers`` (their pooled rows' metrics; per pod in
        :attr:`pod_metrics_` under plaintext aggregation)."""
        metrics = super().evaluate(
            frame,
            pod_identifiers=pod_identifiers,
            aggregator=aggregator,
            pod_dirs=pod_dirs,
            round_timeout=round_timeout,
            backend=backend,
            verbose=verbose,
        )
        if pod_identifiers is not None:
            # The pods report moments of the standardized target (see set_trained).
            std = self.target_std_
            in_target_units(metrics, std)
            for pod in getattr(self, "pod_metrics_", {}).values():
                in_target_units(pod, std)
        return metrics

    # -- inference ----------------------------------------------------------------------
    @property
    def target_mean_(self) -> float:
        """The target's cross-pod mean the model was trained with (target units)."""
        self._require_trained()
        return target_scaling(self._fitted[0])[0]

    @property
    def target_std_(self) -> float:
        """The target's cross-pod standard deviation the model was trained with."""
        self._require_trained()
        return target_scaling(self._fitted[0])[1]

    def _encode(
        self, frame: pd.DataFrame, require_target: bool
    ) -> tuple[torch.nn.Module, EncodedTable, RegressorSpec]:
        self._require_trained()
        task, weights = self._fitted
        if not isinstance(frame, pd.DataFrame):
            caller = "evaluate()" if require_target else "predict()"
            raise ConfigError(f"{caller} takes a pandas DataFrame, got {type(frame).__name__}.")
        schema = Schema.from_dict(task.schema)
        resolved = self.datastructure.resolve(schema, task="regression")
        target = resolved.target
        if not require_target:
            # predict() never reads the target: a column of that name is ignored.
            schema = schema.select([c for c in schema.columns if c != target])
            frame = frame.drop(columns=[target], errors="ignore")
        schema.validate(
            frame,
            where=f"the frame passed to {'evaluate()' if require_target else 'predict()'}",
            fix="Fix the frame: give it the columns the model was trained on, with values its "
            "schema allows (extra columns are ignored).",
        )
        encoder = TabularEncoder(
            Schema.from_dict(task.schema), resolved, np.asarray(task.mean), np.asarray(task.std)
        )
        spec = RegressorSpec.from_dict(task.model)
        net = spec.build()
        set_weights(net, weights)
        net.eval()
        return net, encoder.encode(frame), spec

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Predicted values of the target, in its units (float64, one per row)."""
        net, data, _ = self._encode(frame, require_target=False)
        mean, std = target_scaling(self._fitted[0])
        with torch.no_grad():
            z = net(data.x_cat, data.x_cont).reshape(-1).double().numpy()
        return z * std + mean

    def evaluate_frame(self, frame: pd.DataFrame) -> dict[str, float]:
        """``rmse``, ``mae`` (target units), ``r2``, ``mse`` and ``loss`` (the training loss
        on the standardized target) on a frame with the target column."""
        net, data, spec = self._encode(frame, require_target=True)
        moments = evaluate_regression(net, data, spec.loss_fn())
        _, std = target_scaling(self._fitted[0])
        return {"loss": moments["loss"], **regression_metrics(moments, std)}

    # -- persistence --------------------------------------------------------------------
    def to_payload(self) -> dict[str, Any]:
        """Weights, architecture, target scaling, schema and datastructure."""
        self._require_trained()
        task, weights = self._fitted
        return {
            "format": PAYLOAD_FORMAT,
            "task": task.to_json(),
            "weights": [torch.from_numpy(np.asarray(w).copy()) for w in weights],
            "history": json.dumps(getattr(self, "history_", [])),
            "params": json.dumps({"rounds": self.rounds}),
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> TabularRegressor:
        if payload.get("format") != PAYLOAD_FORMAT:
            found = payload.get("format")
            raise ValueError(f"expected a {PAYLOAD_FORMAT!r} payload, got {found!r}")
        task = TrainingTask.from_json(payload["task"])
        spec = RegressorSpec.from_dict(task.model)
        params = json.loads(payload["params"])
        model = cls(
            DataStructure.from_dict(task.datastructure),
            schema=Schema.from_dict(task.schema),
            epochs=task.epochs,
            steps=task.steps,
            batch_size=task.batch_size,
            rounds=params["rounds"],
            optimizer=Optimizer.from_dict(task.optimizer),
            hidden=spec.hidden,
            dropout=spec.dropout,
            loss=spec.loss,
            huber_delta=spec.huber_delta,
            seed=task.seed,
        )
        model.set_trained(
            task, [w.numpy() for w in payload["weights"]], json.loads(payload["history"])
        )
        return model
