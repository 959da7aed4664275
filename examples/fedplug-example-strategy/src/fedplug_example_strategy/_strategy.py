"""FedAvg with a server learning rate: ``global + lr * (weighted mean - global)``.

``lr = 1`` is plain FedAvg; ``lr < 1`` damps each round's step, which can steady training
when pods' data differ a lot.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import numpy as np
from fedplug import ConfigError
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg


class FedAvgLR(FedAvg):
    """Flower's FedAvg, then a server step of size ``server_lr`` towards the mean."""

    def __init__(self, *, server_lr: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.server_lr = server_lr
        self._current: list[np.ndarray] | None = None

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        # The arrays sent out are the global model the server step starts from.
        self._current = arrays.to_numpy_ndarrays()
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        # The weighted mean, from FedAvg: the only thing secure aggregation reveals, and
        # all this strategy needs.
        mean, metrics = super().aggregate_train(server_round, replies)
        if mean is None or self._current is None:
            return mean, metrics
        stepped = [
            (g.astype(np.float64) + self.server_lr * (m.astype(np.float64) - g)).astype(g.dtype)
            for g, m in zip(self._current, mean.to_numpy_ndarrays(), strict=True)
        ]
        return ArrayRecord(stepped), metrics


def fedavg_lr(n_pods: int, **params: Any) -> FedAvgLR:
    """The ``fedavg-lr`` strategy plugin: FedAvgLR over every one of the task's ``n_pods``."""
    valid = (set(inspect.signature(FedAvg.__init__).parameters) - {"self"}) | {"server_lr"}
    unknown = sorted(set(params) - valid)
    if unknown:
        raise ConfigError(
            f"strategy 'fedavg-lr' has no parameter(s) {unknown}; valid ones: {sorted(valid)}."
        )
    server_lr = params.get("server_lr", 1.0)
    if isinstance(server_lr, bool) or not isinstance(server_lr, (int, float)) or server_lr <= 0:
        raise ConfigError(
            f"strategy 'fedavg-lr': server_lr={server_lr!r} is invalid; use a positive number "
            "(1.0 is plain FedAvg)."
        )
    # fedplug runs every pod of a task in every round, as the pods' policies expect.
    base = {
        "fraction_train": 1.0,
        "fraction_evaluate": 1.0,
        "min_train_nodes": n_pods,
        "min_evaluate_nodes": n_pods,
        "min_available_nodes": n_pods,
    }
    return FedAvgLR(**{**base, **params})


# What fedplug reads from a strategy plugin.
fedavg_lr.fedplug_plugin_api = 1  # type: ignore[attr-defined]  # plugin API it was written for
fedavg_lr.secure_compatible = True  # type: ignore[attr-defined]  # a function of the mean only
fedavg_lr.server_step = True  # type: ignore[attr-defined]  # the result is not the mean itself
