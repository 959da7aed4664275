"""Running a plan locally: in this process, or on the Flower Simulation Engine (Ray).

Both backends run the same ServerApp workflow over the same pod ClientApp, one simulated
SuperNode per pod, and give the same results. The in-process backend starts in well
under a second and keeps everything in one process; Ray pays ~20 s of start-up and a
process per pod, and spreads the pods over cores, which pays off for larger federations.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedplug._errors import ConfigError, FedplugError, TrainingError
from fedplug.data import Pod

from ._inprocess import run_inprocess
from ._pod_app import build_client_app
from ._server import RunPlan, RunResult, run_plan

if TYPE_CHECKING:
    from flwr.app.typing import ConfigRecordValues

#: The backends ``fit(backend=...)`` and ``federation.backend`` accept.
BACKENDS = ("auto", "inprocess", "ray")
#: ``auto`` runs up to this many pods in process, more on Ray.
INPROCESS_MAX_PODS = 8
#: ``verbose`` levels: 0 silent, 1 a line per round, 2 also Flower's (and Ray's) own log.
VERBOSE_LEVELS = (0, 1, 2)


def check_backend(backend: object) -> str:
    """``backend`` itself when it names a backend, else a ConfigError listing them."""
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ConfigError(
            f"backend={backend!r} is not a simulation backend; use one of {list(BACKENDS)}: "
            f"'inprocess' runs every pod in this process, 'ray' on Flower's Simulation "
            f"Engine, 'auto' in process up to {INPROCESS_MAX_PODS} pods and on Ray beyond "
            "(Hydra: federation=simulation or federation=simulation-ray)."
        )
    return backend


def verbosity(verbose: object) -> int:
    """The level of ``verbose`` (True is 1, False 0), else a ConfigError."""
    if isinstance(verbose, bool) or (isinstance(verbose, int) and verbose in VERBOSE_LEVELS):
        return int(verbose)
    raise ConfigError(
        f"verbose={verbose!r} is invalid: use False (silent), True (a line per round, the "
        "default) or 2 (also Flower's own log)."
    )


def choose_backend(backend: str, pods: Sequence[Path | Pod]) -> str:
    """The backend that runs ``pods``: ``auto`` resolved, in-memory pods checked."""
    check_backend(backend)
    in_memory = [p.name for p in pods if isinstance(p, Pod)]
    if backend == "auto":
        # Pods held in memory cannot travel to Ray's worker processes: in process, always.
        return "inprocess" if in_memory or len(pods) <= INPROCESS_MAX_PODS else "ray"
    if backend == "ray" and in_memory:
        raise ConfigError(
            f"pod(s) {in_memory} are fedplug.Pod objects held in this process; Ray's worker "
            "processes cannot reach them. Use backend='inprocess' (or 'auto'), or give those "
            "pods as pod files (a YAML file naming a CSV, Parquet or SQL source)."
        )
    return backend


def run_locally(
    plan: RunPlan,
    pods: Sequence[Path | Pod],
    *,
    backend: str = "auto",
    cpus_per_pod: float = 1.0,
    verbose: bool | int = 1,
) -> RunResult:
    """Run ``plan`` over ``pods`` (pod files or ``Pod`` objects) on a local backend."""
    level = verbosity(verbose)
    chosen = choose_backend(backend, pods)
    quiet_flower(level >= 2)
    if chosen == "inprocess":
        return run_inprocess(plan, pods)
    number = isinstance(cpus_per_pod, (int, float)) and not isinstance(cpus_per_pod, bool)
    if not (number and cpus_per_pod > 0):
        raise ConfigError(
            f"cpus_per_pod={cpus_per_pod!r} is invalid for the Ray backend: give the CPUs "
            "each simulated pod takes, a number > 0 (e.g. federation.cpus_per_pod=1)."
        )
    files = [p for p in pods if not isinstance(p, Pod)]
    return run_in_simulation(plan, files, cpus_per_pod=float(cpus_per_pod), verbose=level >= 2)


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
    """Run ``plan`` on Ray with one simulated SuperNode per pod file; return its result."""
    # Imported here: the in-process backend never needs the simulation engine.
    from flwr.simulation import run_simulation

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
