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
        # Warnings are Exceptions too, but they are warned, never raised.
        if isinstance(value, type) and issubclass(value, Exception):
            if issubclass(value, Warning):
                assert issubclass(value, UserWarning)
            else:
                assert issubclass(value, fedplug.FedplugError)


def test_all_matches_the_lazy_exports() -> None:
    import fedplug._flower
    import fedplug.plugins

    for package, extra in (
        (fedplug, ["__version__"]),
        (fedplug._flower, []),
        (fedplug.plugins, []),
    ):
        lazy = [name for names in package._EXPORTS.values() for name in names]
        assert sorted(package.__all__) == sorted([*lazy, *extra]), package.__name__
        assert set(package.__all__) <= set(dir(package))


PLUGINS_EXPECTED = [
    "PLUGIN_API_VERSION",
    "SUPPORTED_PLUGIN_APIS",
    "Aggregator",
    "Datasource",
    "Exchange",
    "Model",
    "ModelDriver",
    "ModelEvaluator",
    "PodModel",
    "PlaintextStrategy",
    "PluginInfo",
    "PodSession",
    "PodStrategy",
    "RoundCallback",
    "StrategyPlugin",
    "every_pod",
    "list_plugins",
    "load_plugin",
]


def test_the_plugin_api_is_pinned_and_resolves() -> None:
    import fedplug.plugins

    assert sorted(fedplug.plugins.__all__) == sorted(PLUGINS_EXPECTED)
    for name in fedplug.plugins.__all__:
        assert getattr(fedplug.plugins, name) is not None
    assert fedplug.plugins.Aggregator is fedplug.Aggregator


def test_listing_plugins_imports_neither_flower_nor_torch() -> None:
    code = (
        "import sys; from fedplug.plugins import list_plugins; "
        "names = {p.name for p in list_plugins('aggregators')}; "
        "print(sorted(names), 'flwr' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-2:] == ["False", "False"]
    assert "'secure'" in out.stdout and "'fedavg'" in out.stdout
