"""Adds this package's Hydra configs to `fedplug run`'s search path.

Hydra finds this plugin by scanning the ``hydra_plugins`` namespace package; it makes
``model=ridge`` resolve to ``fedplug_example_model/conf/model/ridge.yaml``.
"""

from __future__ import annotations

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class FedplugExampleModelSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(
            provider="fedplug-example-model", path="pkg://fedplug_example_model.conf"
        )
