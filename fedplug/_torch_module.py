"""The ``torch-module`` model plugin's server half: your own ``torch.nn.Module`` across pods.

``TorchModule(datastructure, module="mypkg.nets:Net", module_params={...}, loss=...)``
trains ``Net(n_features, n_outputs, **module_params)`` with fedplug's loop on the encoded
features (one-hot categoricals, then continuous features standardized across pods; see
:mod:`fedplug.learning._torch_module`). A categorical target is a classification
(``loss="cross_entropy"``), a continuous one a regression on the target standardized
across pods (``"mse"``, ``"huber"`` or ``"l1"``). The module must be installed where the
ServerApp runs and on every pod, and each pod's owner must list its import path in
``policy.accepted_modules``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch

from fedplug._errors import ConfigError
from fedplug._network_model import NetworkModel
from fedplug._regressor import in_target_units, target_scaling
from fedplug.data import Schema
from fedplug.learning import (
    DataStructure,
    EncodedTable,
    ModuleSpec,
    Optimizer,
    TabularEncoder,
    TrainingTask,
    evaluate_local,
    evaluate_regression,
    regression_metrics,
    set_weights,
)
from fedplug.learning._torch_module import LOSSES, load_module

PLUGIN_NAME = "torch-module"


class TorchModule(NetworkModel):
    """A user's ``torch.nn.Module`` (by import path) trained across pods by fedplug's loop.

    ``__init__`` only stores its parameters; they are checked when ``fit`` is called.
    """

    plugin_name = PLUGIN_NAME

    _fitted: tuple[TrainingTask, list[np.ndarray]]

    def __init__(
        self,
        datastructure: DataStructure,
        module: str = "",
        module_params: Mapping[str, Any] | None = None,
        loss: str | None = None,
        schema: Schema | None = None,
        epochs: int | None = 1,
        steps: int | None = None,
        batch_size: int = 64,
        rounds: int = 5,
        optimizer: Optimizer | None = None,
        seed: int = 42,
    ) -> None:
        self.datastructure = datastructure
        self.module = module
        self.module_params = module_params
        self.loss = loss
        self.schema = schema
        self.epochs = epochs
        self.steps = steps
        self.batch_size = batch_size
        self.rounds = rounds
        self.optimizer = optimizer
        self.seed = seed

    # -- the model-plugin contract ------------------------------------------------------
    def check_params(self) -> None:
        self.check_training_params()
        if self.loss is not None and self.loss not in LOSSES:
            raise ConfigError(f"loss={self.loss!r} is unknown; use one of {list(LOSSES)}.")
        if self.module_params is not None and not isinstance(self.module_params, Mapping):
            raise ConfigError(
                f"module_params={self.module_params!r} must be a mapping of the module's "
                "keyword arguments."
            )
        load_module(self.module)  # here too: the ServerApp builds the round-0 weights

    def _spec(self, schema: Schema) -> tuple[ModuleSpec, list[str]]:
        resolved = self.datastructure.resolve(schema, task="auto")
        regression = resolved.task == "regression"
        default = "mse" if regression else "cross_entropy"
        spec = ModuleSpec(
            module=self.module,
            cardinalities=tuple(len(schema[c].categories or ()) for c in resolved.categorical),
            n_continuous=len(resolved.continuous),
            n_outputs=1 if regression else len(resolved.classes),
            regression=regression,
            loss=self.loss or default,
            module_params=dict(self.module_params or {}),
        ).check()
        return spec, [resolved.target, *resolved.categorical, *resolved.continuous]

    def training_task(self, schema: Schema) -> TrainingTask:
        spec, used = self._spec(schema)
        return self.network_task(schema, used, spec.to_dict())

    def initial_weights(self, task: TrainingTask) -> list[np.ndarray]:
        return ModuleSpec.from_dict(task.model).initial_weights(task.seed)

    def set_trained(self, task: TrainingTask, state: Any, history: list[dict]) -> None:
        spec = ModuleSpec.from_dict(task.model)
        if spec.regression:
            _, std = target_scaling(task)
            for entry in history:
                if isinstance(entry.get("evaluate"), dict):
                    in_target_units(entry["evaluate"], std)
        weights = [np.asarray(w) for w in state]
        super().set_trained(task, weights, history)
        self._fitted = (task, weights)

    # -- inference ----------------------------------------------------------------------
    def _encode(
        self, frame: pd.DataFrame, require_target: bool
    ) -> tuple[torch.nn.Module, EncodedTable, ModuleSpec]:
        self._require_trained()
        task, weights = self._fitted
        if not isinstance(frame, pd.DataFrame):
            raise ConfigError(f"predict() takes a pandas DataFrame, got {type(frame).__name__}.")
        schema = Schema.from_dict(task.schema)
        resolved = self.datastructure.resolve(schema, task="auto")
        check = schema
        if not require_target:
            check = schema.select([c for c in schema.columns if c != resolved.target])
            frame = frame.drop(columns=[resolved.target], errors="ignore")
        caller = "evaluate()" if require_target else "predict()"
        check.validate(
            frame,
            where=f"the frame passed to {caller}",
            fix="Fix the frame: give it the columns the model was trained on, with values its "
            "schema allows (extra columns are ignored).",
        )
        encoder = TabularEncoder(schema, resolved, np.asarray(task.mean), np.asarray(task.std))
        spec = ModuleSpec.from_dict(task.model)
        net = spec.build()
        set_weights(net, weights)
        net.eval()
        return net, encoder.encode(frame), spec

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        net, data, spec = self._encode(frame, require_target=False)
        if spec.regression:
            raise ConfigError("predict_proba(): this model is a regression; call predict().")
        with torch.no_grad():
            return torch.softmax(net(data.x_cat, data.x_cont), dim=1).numpy()

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Class labels, or a regression's values in the target's units."""
        net, data, spec = self._encode(frame, require_target=False)
        task = self._fitted[0]
        with torch.no_grad():
            out = net(data.x_cat, data.x_cont)
        if spec.regression:
            mean, std = target_scaling(task)
            return out.reshape(-1).double().numpy() * std + mean
        classes = self.datastructure.resolve(Schema.from_dict(task.schema)).classes
        return np.asarray(classes, dtype=object)[out.argmax(dim=1).numpy()]

    def evaluate_frame(self, frame: pd.DataFrame) -> dict[str, float]:
        net, data, spec = self._encode(frame, require_target=True)
        if not spec.regression:
            metrics = evaluate_local(net, data)
            metrics.pop("num-examples", None)
            return metrics
        moments = evaluate_regression(net, data, LOSSES[spec.loss])
        _, std = target_scaling(self._fitted[0])
        return {"loss": moments["loss"], **regression_metrics(moments, std)}

    # -- persistence --------------------------------------------------------------------
    def to_payload(self) -> dict[str, Any]:
        self._require_trained()
        task, weights = self._fitted
        return {
            "task": task.to_json(),
            "weights": [torch.from_numpy(np.asarray(w).copy()) for w in weights],
            "history": json.dumps(getattr(self, "history_", [])),
            "params": json.dumps({"rounds": self.rounds, "loss": self.loss}),
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> TorchModule:
        task = TrainingTask.from_json(payload["task"])
        spec = ModuleSpec.from_dict(task.model)
        params = json.loads(payload["params"])
        model = cls(
            DataStructure.from_dict(task.datastructure),
            module=spec.module,
            module_params=spec.module_params,
            loss=params["loss"],
            schema=Schema.from_dict(task.schema),
            epochs=task.epochs,
            steps=task.steps,
            batch_size=task.batch_size,
            rounds=params["rounds"],
            optimizer=Optimizer.from_dict(task.optimizer),
            seed=task.seed,
        )
        weights = [w.numpy() for w in payload["weights"]]
        model.set_trained(task, weights, json.loads(payload["history"]))
        return model
