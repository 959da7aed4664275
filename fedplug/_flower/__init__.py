"""Layer 4: the Flower adapters (the only package that imports flwr).

Names load lazily: a pod's ClientApp process (a fresh one per message on a real SuperNode)
imports only the pod side, not the simulation engine or the server strategies.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "Aggregator": "._aggregators",
    "FedAvg": "._aggregators",
    "SecureAggregator": "._aggregators",
    "LocalGrid": "._local_grid",
    "build_client_app": "._pod_app",
    "RunPlan": "._server",
    "RunResult": "._server",
    "run_plan": "._server",
    "run_in_simulation": "._simulation",
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


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:
    from ._aggregators import Aggregator, FedAvg, SecureAggregator
    from ._local_grid import LocalGrid
    from ._pod_app import build_client_app
    from ._server import RunPlan, RunResult, run_plan
    from ._simulation import run_in_simulation
