"""Layer 4: the Flower adapters (the only package that imports flwr).

Names load lazily: a pod's ClientApp process (a fresh one per message on a real SuperNode)
imports only the pod side, not the simulation engine or the server strategies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedplug._lazy import lazy_exports

_EXPORTS = {
    "._aggregators": ["Aggregator", "FedAvg", "SecureAggregator"],
    "._local_grid": ["LocalGrid"],
    "._pod_app": ["build_client_app"],
    "._server": ["RunPlan", "RunResult", "run_plan"],
    "._simulation": ["run_in_simulation"],
}

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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from ._aggregators import Aggregator, FedAvg, SecureAggregator
    from ._local_grid import LocalGrid
    from ._pod_app import build_client_app
    from ._server import RunPlan, RunResult, run_plan
    from ._simulation import run_in_simulation
