"""Flower's weighted-mean Message-API strategies as fedplug strategy plugins.

A strategy plugin is a callable ``factory(n_pods, **params) -> flwr Strategy`` with two
attributes: ``fedplug_plugin_api`` (the plugin API it was written for) and
``secure_compatible`` (its aggregation is a weighted mean of the pods' arrays, so secure
aggregation can replace that mean).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from flwr.serverapp import strategy as flwr_strategy
from flwr.serverapp.strategy import Strategy

from fedplug._errors import ConfigError

PLUGIN_API = 1


def _factory(name: str, cls: type[Strategy]) -> Callable[..., Strategy]:
    def factory(n_pods: int, **params: Any) -> Strategy:
        # Every pod of the task takes part in every round, as a pod's policy expects.
        base = {
            "fraction_train": 1.0,
            "fraction_evaluate": 1.0,
            "min_train_nodes": n_pods,
            "min_evaluate_nodes": n_pods,
            "min_available_nodes": n_pods,
        }
        valid = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = sorted(set(params) - valid)
        if unknown:
            raise ConfigError(
                f"strategy {name!r} has no parameter(s) {unknown}; valid ones: "
                f"{sorted(valid - set(base))}."
            )
        try:
            return cls(**{**base, **params})
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"strategy {name!r}: invalid parameters {params}: {exc}") from exc

    factory.__name__ = name
    factory.__qualname__ = name
    factory.__doc__ = f"Flower's {cls.__name__} (weighted mean over the pods' arrays)."
    factory.fedplug_plugin_api = PLUGIN_API  # type: ignore[attr-defined]
    factory.secure_compatible = True  # type: ignore[attr-defined]
    # FedAvg and FedProx return the weighted mean itself; the others step from it.
    factory.server_step = cls not in (flwr_strategy.FedAvg, flwr_strategy.FedProx)  # type: ignore[attr-defined]
    return factory


fedavg = _factory("fedavg", flwr_strategy.FedAvg)
fedavgm = _factory("fedavgm", flwr_strategy.FedAvgM)
fedadam = _factory("fedadam", flwr_strategy.FedAdam)
fedyogi = _factory("fedyogi", flwr_strategy.FedYogi)
fedadagrad = _factory("fedadagrad", flwr_strategy.FedAdagrad)
fedprox = _factory("fedprox", flwr_strategy.FedProx)
