"""The ``torch-module`` model plugin's pod half: the user's own ``torch.nn.Module``.

The module is named by an import path (``mypkg.nets:Net``) and built as
``Net(n_features, n_outputs, **module_params)``. It sees one float tensor per batch: the
one-hot categoricals (one slot more per column, for unknown values) then the continuous
features standardized by their cross-pod mean and std; it returns ``[rows, n_outputs]``
(class logits, or one column for a regression on the standardized target). fedplug's own
loop trains it (``train_local``), so FedAvg, FedProx and secure aggregation apply as for
the built-in networks.

A pod imports the module only if its owner listed that exact path in
``policy.accepted_modules``: the server names code, the pod decides whether it runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from fedplug._errors import ConfigError, PolicyRefusal

from ._evaluation import evaluate_local, evaluate_regression
from ._model import get_weights
from ._network_pod import NetworkPod

if TYPE_CHECKING:
    from fedplug.data import PodPolicy

    from ._task import TrainingTask

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: Losses by name: cross-entropy for classes, the others for a regression.
LOSSES: dict[str, LossFn] = {
    "cross_entropy": F.cross_entropy,
    "mse": F.mse_loss,
    "huber": F.huber_loss,
    "l1": F.l1_loss,
}
CLASSIFICATION_LOSSES = ("cross_entropy",)


def load_module(path: object) -> type[nn.Module]:
    """The ``torch.nn.Module`` subclass at ``package.module:Class``, or a ConfigError."""
    if not isinstance(path, str) or path.count(":") != 1:
        raise ConfigError(
            f"model: module={path!r} must be an import path package.module:Class naming a "
            "torch.nn.Module subclass (e.g. model.module=mypkg.nets:Net)"
        )
    module_name, attr = path.split(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"model: module {path!r} cannot be imported ({type(exc).__name__}: {exc}); install "
            "the package that provides it here and on every pod that trains it"
        ) from exc
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise ConfigError(f"model: module {path!r} is {obj!r}, not a torch.nn.Module subclass")
    return obj


class ModuleAdapter(nn.Module):
    """Feeds the user's module one float tensor built from fedplug's encoded columns."""

    def __init__(self, net: nn.Module, cardinalities: tuple[int, ...], squeeze: bool) -> None:
        super().__init__()
        self.net = net
        self.cardinalities = cardinalities
        self.squeeze = squeeze  # a regression's single output, as a vector

    def forward(self, x_cat: torch.Tensor, x_cont: torch.Tensor) -> torch.Tensor:
        parts = [
            F.one_hot(x_cat[:, i], c + 1).to(x_cont.dtype) for i, c in enumerate(self.cardinalities)
        ]
        out = self.net(torch.cat([*parts, x_cont], dim=1))
        return out.reshape(-1) if self.squeeze else out


@dataclass(frozen=True)
class ModuleSpec:
    """What a pod needs to rebuild the network and its loss (``task.model``)."""

    module: str
    cardinalities: tuple[int, ...]
    n_continuous: int
    n_outputs: int  # classes, or 1 for a regression
    regression: bool
    loss: str
    module_params: dict[str, Any] = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return sum(c + 1 for c in self.cardinalities) + self.n_continuous

    def check(self) -> ModuleSpec:
        if self.loss not in LOSSES:
            raise ConfigError(f"model: loss={self.loss!r} is unknown; use one of {list(LOSSES)}")
        if (self.loss in CLASSIFICATION_LOSSES) == self.regression:
            kind = "a regression (continuous target)" if self.regression else "a classification"
            valid = [n for n in LOSSES if (n in CLASSIFICATION_LOSSES) != self.regression]
            raise ConfigError(f"model: loss={self.loss!r} does not fit {kind}; use one of {valid}")
        if not isinstance(self.module_params, Mapping):
            raise ConfigError(
                f"model: module_params must be a mapping of keyword arguments, got "
                f"{self.module_params!r}"
            )
        return self

    def build(self) -> ModuleAdapter:
        cls = load_module(self.module)
        try:
            net = cls(self.n_features, self.n_outputs, **dict(self.module_params))
        except TypeError as exc:
            raise ConfigError(
                f"model: {self.module}({self.n_features}, {self.n_outputs}, "
                f"**{dict(self.module_params)}) failed: {exc}. A torch-module network takes "
                "(n_features, n_outputs, **module_params)."
            ) from exc
        return ModuleAdapter(net, self.cardinalities, squeeze=self.regression)

    def initial_weights(self, seed: int) -> list[np.ndarray]:
        torch.manual_seed(seed)
        return get_weights(self.build())

    def to_dict(self) -> dict[str, Any]:
        return {
            "module": self.module,
            "cardinalities": list(self.cardinalities),
            "n_continuous": self.n_continuous,
            "n_outputs": self.n_outputs,
            "regression": self.regression,
            "loss": self.loss,
            "module_params": dict(self.module_params),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModuleSpec:
        return cls(
            module=str(d["module"]),
            cardinalities=tuple(int(c) for c in d["cardinalities"]),
            n_continuous=int(d["n_continuous"]),
            n_outputs=int(d["n_outputs"]),
            regression=bool(d["regression"]),
            loss=str(d["loss"]),
            module_params=dict(d.get("module_params") or {}),
        ).check()


class TorchModulePod(NetworkPod):
    """Trains and scores the user's module on this pod's rows (if its policy allows it)."""

    learning_task = "auto"

    @classmethod
    def admit(cls, task: TrainingTask, policy: PodPolicy, pod: str) -> None:
        module = str(task.model.get("module"))
        if module not in policy.accepted_modules:
            raise PolicyRefusal(
                f"pod {pod!r} refuses to import module {module!r}: its policy.accepted_modules "
                f"is {list(policy.accepted_modules)}. Its owner installs the package and adds "
                f"{module!r} to policy.accepted_modules in the pod YAML, if they trust it.",
                reason="module-not-accepted",
                pods=[pod],
            )

    def __init__(self, task: TrainingTask, train: pd.DataFrame, validation: pd.DataFrame):
        super().__init__(task, train, validation)
        self.spec = ModuleSpec.from_dict(task.model)

    def loss_fn(self) -> LossFn:
        return LOSSES[self.spec.loss]

    def evaluate(self, weights: list[np.ndarray]) -> dict:
        net = self._net(weights)
        if self.spec.regression:
            return evaluate_regression(net, self._data("validation"), LOSSES[self.spec.loss])
        return evaluate_local(net, self._data("validation"))
