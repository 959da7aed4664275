"""Running a plan on the Flower Simulation Engine, one simulated SuperNode per pod."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp
from flwr.simulation import run_simulation

from fedplug._errors import FedplugError, TrainingError

from ._pod_app import build_client_app
from ._server import RunPlan, RunResult, run_plan
from ._update_cache import forget_pod


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
    outcome: dict[str, object] = {}
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        try:
            outcome["result"] = run_plan(grid, plan)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = exc

    client = build_client_app([str(Path(p).resolve()) for p in pod_files])
    quiet_flower(verbose)
    # Ray would otherwise print a banner and warnings for every actor; the pods' own
    # errors come back to the server as error replies.
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    backend_config = {
        "client_resources": {"num_cpus": cpus_per_pod, "num_gpus": 0.0},
        "init_args": {"logging_level": "ERROR", "log_to_driver": verbose},
    }
    try:
        run_simulation(
            server_app=server,
            client_app=client,
            num_supernodes=len(pod_files),
            backend_config=backend_config,
            verbose_logging=verbose,
        )
    finally:
        # The pods' state on disk (updates kept for a redo) ends with the run.
        for name in plan.pods:
            forget_pod(name)
    if "error" in outcome:
        error = outcome["error"]
        if isinstance(error, FedplugError):
            raise error
        raise TrainingError(f"the federated run failed: {type(error).__name__}: {error}") from error
    if "result" not in outcome:
        raise TrainingError(
            "the simulation ended without a result; rerun with verbose=True to see Flower's log."
        )
    return outcome["result"]  # type: ignore[return-value]
