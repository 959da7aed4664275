"""fedplug: federated learning on tabular data held by pods, on Flower.

The public API is what ``__all__`` lists; everything else is private. Names load
lazily, so ``import fedplug.data`` on a pod's tooling does not import torch or Flower.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedplug._lazy import lazy_exports
from fedplug._version import __version__

_EXPORTS = {
    "fedplug._errors": [
        "ConfigError",
        "DataSourceError",
        "DataStructureError",
        "DataValidationError",
        "FedplugError",
        "ModelFileError",
        "ModelMismatchError",
        "NotFittedError",
        "PluginError",
        "PodConfigError",
        "PolicyRefusal",
        "SchemaError",
        "SecureAggregationError",
        "TrainingError",
    ],
    "fedplug.data": [
        "CSVSource",
        "DataFrameSource",
        "ParquetSource",
        "Pod",
        "PodPolicy",
        "SQLSource",
        "Schema",
        "SchemaWarning",
    ],
    "fedplug.learning": ["DataStructure", "Optimizer"],
    "fedplug._api": ["TabularClassifier", "combine_pod_schemas"],
    "fedplug._trees": ["GradientBoostedTrees"],
    "fedplug._regressor": ["TabularRegressor"],
    "fedplug._torch_module": ["TorchModule"],
    "fedplug._model_base": ["load_model"],
    "fedplug._flower": ["Aggregator", "FedAvg", "SecureAggregator"],
}

__all__ = [
    "Aggregator",
    "CSVSource",
    "ConfigError",
    "DataFrameSource",
    "DataSourceError",
    "DataStructure",
    "DataStructureError",
    "DataValidationError",
    "FedAvg",
    "FedplugError",
    "GradientBoostedTrees",
    "ModelFileError",
    "ModelMismatchError",
    "NotFittedError",
    "Optimizer",
    "ParquetSource",
    "PluginError",
    "Pod",
    "PodConfigError",
    "PodPolicy",
    "PolicyRefusal",
    "SQLSource",
    "Schema",
    "SchemaError",
    "SchemaWarning",
    "SecureAggregationError",
    "SecureAggregator",
    "TabularClassifier",
    "TabularRegressor",
    "TorchModule",
    "TrainingError",
    "__version__",
    "combine_pod_schemas",
    "load_model",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # static analysers see the eager imports
    from fedplug._api import TabularClassifier, combine_pod_schemas
    from fedplug._errors import (
        ConfigError,
        DataSourceError,
        DataStructureError,
        DataValidationError,
        FedplugError,
        ModelFileError,
        ModelMismatchError,
        NotFittedError,
        PluginError,
        PodConfigError,
        PolicyRefusal,
        SchemaError,
        SecureAggregationError,
        TrainingError,
    )
    from fedplug._flower import Aggregator, FedAvg, SecureAggregator
    from fedplug._model_base import load_model
    from fedplug._regressor import TabularRegressor
    from fedplug._torch_module import TorchModule
    from fedplug._trees import GradientBoostedTrees
    from fedplug.data import (
        CSVSource,
        DataFrameSource,
        ParquetSource,
        Pod,
        PodPolicy,
        Schema,
        SchemaWarning,
        SQLSource,
    )
    from fedplug.learning import DataStructure, Optimizer
