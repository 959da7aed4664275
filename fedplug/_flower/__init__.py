"""Layer 4: the Flower adapters (the only package that imports flwr)."""

from __future__ import annotations

from ._aggregators import Aggregator, FedAvg, SecureAggregator
from ._local_grid import LocalGrid
from ._pod_app import build_client_app
from ._server import RunPlan, RunResult, run_plan
from ._simulation import run_in_simulation

__all__ = [
    "Aggregator",
    "FedAvg",
    "LocalGrid",
    "RunPlan",
    "RunResult",
    "SecureAggregator",
    "build_client_app",
    "run_in_simulation",
    "run_plan",
]
