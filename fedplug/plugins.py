"""The public plugin API: what a third-party plugin imports, and the plugin registry.

A plugin is a class or factory registered under an entry point of the group
``fedplug.<kind>`` (kinds: strategies, models, datasources, aggregators) declaring
``fedplug_plugin_api`` (:data:`PLUGIN_API_VERSION` for new plugins). See
``docs/writing-a-plugin.md`` for each contract and ``fedplug.testing`` for the checks a
plugin's own tests run. Names load lazily: listing plugins imports neither Flower nor
torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedplug._lazy import lazy_exports

_EXPORTS = {
    "fedplug._plugins": [
        "PLUGIN_API_VERSION",
        "SUPPORTED_PLUGIN_APIS",
        "PluginInfo",
        "list_plugins",
        "load_plugin",
    ],
    "fedplug._flower._aggregators": ["Aggregator"],
    "fedplug._flower._session": ["PodSession"],
    "fedplug._flower._pod_strategy": ["PlaintextStrategy", "PodStrategy", "RoundCallback"],
    "fedplug._flower._strategy_plugin": ["StrategyPlugin", "every_pod"],
    "fedplug.data": ["Datasource"],
    "fedplug._model_base": ["Model", "ModelDriver", "ModelEvaluator"],
    "fedplug.learning": ["Exchange", "PodModel"],
}

__all__ = [
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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from fedplug._flower._aggregators import Aggregator
    from fedplug._flower._pod_strategy import PlaintextStrategy, PodStrategy, RoundCallback
    from fedplug._flower._session import PodSession
    from fedplug._flower._strategy_plugin import StrategyPlugin, every_pod
    from fedplug._model_base import Model, ModelDriver, ModelEvaluator
    from fedplug._plugins import (
        PLUGIN_API_VERSION,
        SUPPORTED_PLUGIN_APIS,
        PluginInfo,
        list_plugins,
        load_plugin,
    )
    from fedplug.data import Datasource
    from fedplug.learning import Exchange, PodModel
