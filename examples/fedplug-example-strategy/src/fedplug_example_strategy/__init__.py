"""An example third-party fedplug strategy plugin: FedAvg with a server learning rate."""

from __future__ import annotations

from ._strategy import FedAvgLR, fedavg_lr

__all__ = ["FedAvgLR", "fedavg_lr"]
