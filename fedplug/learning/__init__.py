"""Layer 2: datastructures, the models, encoding, local training and metrics.

Uses torch and :mod:`fedplug.data`; never Flower. Names load lazily: a datastructure or a
task can be read (a config checked, a policy refusal given) without importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedplug._lazy import lazy_exports

_EXPORTS = {
    "._boosting": ["BoostingParams", "BoostingSetup", "Ensemble", "Exchange", "fit_ensemble"],
    "._boosting_pod": ["BoostingPod"],
    "._datastructure": ["DataStructure", "ResolvedColumns"],
    "._encoding": ["EncodedTable", "TabularEncoder"],
    "._evaluation": ["evaluate_local", "evaluate_regression"],
    "._metrics": ["classification_metrics", "regression_metrics", "regression_moments", "roc_auc"],
    "._model": [
        "TabularMLP",
        "TabularNet",
        "TabularNetSpec",
        "embedding_dim",
        "get_weights",
        "set_weights",
    ],
    "._optimizer": ["Optimizer"],
    "._pod_model": ["PodModel"],
    "._regressor": ["LOSSES", "RegressorPod", "RegressorSpec"],
    "._stats": ["local_feature_moments", "moment_units", "scaling_from_moments"],
    "._task": ["PodTrainer", "TrainingTask", "scaling_for"],
    "._torch_module": ["ModuleSpec", "TorchModulePod"],
    "._training": ["train_local"],
}


__all__ = [
    "ModuleSpec",
    "TorchModulePod",
    "BoostingParams",
    "BoostingPod",
    "BoostingSetup",
    "Ensemble",
    "Exchange",
    "PodModel",
    "LOSSES",
    "RegressorPod",
    "RegressorSpec",
    "fit_ensemble",
    "PodTrainer",
    "TrainingTask",
    "scaling_for",
    "DataStructure",
    "EncodedTable",
    "Optimizer",
    "ResolvedColumns",
    "TabularEncoder",
    "TabularMLP",
    "TabularNet",
    "TabularNetSpec",
    "classification_metrics",
    "embedding_dim",
    "evaluate_local",
    "evaluate_regression",
    "get_weights",
    "local_feature_moments",
    "moment_units",
    "regression_metrics",
    "regression_moments",
    "roc_auc",
    "scaling_from_moments",
    "set_weights",
    "train_local",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # static analysers see the eager imports
    from ._boosting import BoostingParams, BoostingSetup, Ensemble, Exchange, fit_ensemble
    from ._boosting_pod import BoostingPod
    from ._datastructure import DataStructure, ResolvedColumns
    from ._encoding import EncodedTable, TabularEncoder
    from ._evaluation import evaluate_local, evaluate_regression
    from ._metrics import classification_metrics, regression_metrics, regression_moments, roc_auc
    from ._model import (
        TabularMLP,
        TabularNet,
        TabularNetSpec,
        embedding_dim,
        get_weights,
        set_weights,
    )
    from ._optimizer import Optimizer
    from ._pod_model import PodModel
    from ._regressor import LOSSES, RegressorPod, RegressorSpec
    from ._stats import local_feature_moments, moment_units, scaling_from_moments
    from ._task import PodTrainer, TrainingTask, scaling_for
    from ._torch_module import ModuleSpec, TorchModulePod
    from ._training import train_local
