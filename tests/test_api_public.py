"""The public surface: pinned, lazily loaded, and light to import."""

from __future__ import annotations

import subprocess
import sys

import fedplug

EXPECTED = [
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
    "SecureAggregationError",
    "SecureAggregator",
    "TabularClassifier",
    "TrainingError",
    "__version__",
    "combine_pod_schemas",
]


def test_all_is_pinned() -> None:
    assert sorted(fedplug.__all__) == sorted(EXPECTED)


def test_every_public_name_resolves() -> None:
    for name in fedplug.__all__:
        assert getattr(fedplug, name) is not None


def test_import_is_light() -> None:
    code = "import sys, fedplug, fedplug.data; print('flwr' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_errors_share_one_base() -> None:
    for name in EXPECTED:
        value = getattr(fedplug, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, fedplug.FedplugError)


def test_all_matches_the_lazy_exports() -> None:
    assert sorted(fedplug.__all__) == sorted([*fedplug._WHERE, "__version__"])
