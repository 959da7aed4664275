"""FedAvg with a server learning rate: ``global + lr * (weighted mean - global)``.

``lr = 1`` is plain FedAvg; ``lr < 1`` damps each round's step, which can steady training
when pods' data differ a lot.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from fedplug.plugins import StrategyPlugin
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg


class FedAvgLR(FedAvg):
    """Flower's FedAvg, then a server step of size ``server_lr`` towards the mean."""

    def __init__(self, *, server_lr: float = 1.0, **kwargs: Any) -> None:
        if isinstance(server_lr, bool) or not isinstance(server_lr, (int, float)) or server_lr <= 0:
            raise ValueError(
                f"server_lr={server_lr!r} is invalid; use a positive number (1.0 is plain FedAvg)"
            )
        super().__init__(**kwargs)
        self.server_lr = float(server_lr)
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


#: The ``fedavg-lr`` strategy plugin: FedAvgLR over every pod of the task, its parameters
#: checked by name. The result is a step from the mean, not the mean (``server_step``),
#: and a function of the mean only, so secure aggregation can replace the mean.
fedavg_lr = StrategyPlugin("fedavg-lr", FedAvgLR, secure_compatible=True, server_step=True)
