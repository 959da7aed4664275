"""Running a plan on the Flower Simulation Engine, one simulated SuperNode per pod."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp
from flwr.simulation import run_simulation

from fedplug._errors import FedplugError, TrainingError

from ._pod_app import build_client_app
from ._server import RunPlan, RunResult, run_plan

if TYPE_CHECKING:
    from flwr.app.typing import ConfigRecordValues


def quiet_flower(verbose: bool) -> None:
    """Flower logs every message at INFO; fedplug prints its own progress instead."""
    # Flower's own warnings (a deprecation notice for run_simulation, which `flwr run`
    # replaces for apps but not for an in-process API) would drown fedplug's progress.
    logging.getLogger("flwr").setLevel(logging.INFO if verbose else logging.ERROR)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)


def run_in_simulation(
    plan: RunPlan,
    pod_files: Sequence[Path],
    *,
    cpus_per_pod: float = 1.0,
    verbose: bool = False,
) -> RunResult:
    """Run ``plan`` with one simulated SuperNode per pod file and return its result."""
    # What the ServerApp's main left: its result, or the exception it raised.
    results: list[RunResult] = []
    errors: list[BaseException] = []
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        try:
            results.append(run_plan(grid, plan))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)

    client = build_client_app([str(Path(p).resolve()) for p in pod_files])
    quiet_flower(verbose)
    # Ray would otherwise print a banner and warnings for every actor; the pods' own
    # errors come back to the server as error replies.
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    backend_config: dict[str, dict[str, ConfigRecordValues]] = {
        "client_resources": {"num_cpus": cpus_per_pod, "num_gpus": 0.0},
        "init_args": {"logging_level": "ERROR", "log_to_driver": verbose},
    }
    run_simulation(
        server_app=server,
        client_app=client,
        num_supernodes=len(pod_files),
        backend_config=backend_config,
        verbose_logging=verbose,
    )
    if errors:
        error = errors[-1]
        if isinstance(error, FedplugError):
            raise error
        raise TrainingError(f"the federated run failed: {type(error).__name__}: {error}") from error
    if not results:
        raise TrainingError(
            "the simulation ended without a result; rerun with verbose=True to see Flower's log."
        )
    return results[-1]
