"""Flower's weighted-mean Message-API strategies as fedplug strategy plugins.

Each is a :class:`fedplug.plugins.StrategyPlugin`: Flower's class over every pod of the
task, its parameters checked by name. All are ``secure_compatible`` (their aggregation
is a function of the pods' weighted mean).
"""

from __future__ import annotations

from flwr.serverapp import strategy as flwr_strategy

from fedplug.plugins import StrategyPlugin

# FedAvg and FedProx return the weighted mean itself; the others step from it.
fedavg = StrategyPlugin("fedavg", flwr_strategy.FedAvg)
fedprox = StrategyPlugin("fedprox", flwr_strategy.FedProx)
fedavgm = StrategyPlugin("fedavgm", flwr_strategy.FedAvgM, server_step=True)
fedadam = StrategyPlugin("fedadam", flwr_strategy.FedAdam, server_step=True)
fedyogi = StrategyPlugin("fedyogi", flwr_strategy.FedYogi, server_step=True)
fedadagrad = StrategyPlugin("fedadagrad", flwr_strategy.FedAdagrad, server_step=True)
