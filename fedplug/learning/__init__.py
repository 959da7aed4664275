"""Layer 2: datastructures, the tabular model, encoding, local training and metrics.

Uses torch and :mod:`fedplug.data`; never Flower.
"""

from __future__ import annotations

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
from ._task import PodTrainer, TrainingTask, scaling_for  # noqa: E402 - uses the above
from ._torch_module import ModuleSpec, TorchModulePod
from ._training import train_local

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
