"""``fedplug submit CONNECTION [OVERRIDES]``: ``flwr run --stream`` that fails when the run does.

``flwr run . CONNECTION --stream`` exits 0 once the stream ends, even when the run ended
``finished:failed`` (Flower 1.42), so a script or CI job cannot tell. This streams the same
run, then asks the SuperLink for the run's final status (``flwr ls --run-id ID
--format json``) and exits 1 with Flower's status details unless it is
``finished:completed``. The submission itself is :func:`fedplug._federation.submit_run`,
which ``fit(..., federation=...)`` uses too.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from fedplug._errors import ConfigError
from fedplug._federation import (
    COMPLETED,
    STARTED,
    RunFailed,
    app_dir,
    app_label,
    flwr_executable,
    run_status,
    submit_run,
)

__all__ = [
    "COMPLETED",
    "STARTED",
    "RunFailed",
    "app_dir",
    "flwr_executable",
    "run_config",
    "run_status",
    "submit",
]


def run_config(overrides: Sequence[str], output_dir: str) -> str:
    """The inline ``--run-config`` value of the equivalent ``flwr run`` command."""
    for value in (*overrides, output_dir):
        if "'" in value:
            raise ConfigError(
                f"{value!r}: a single quote cannot travel in Flower's inline --run-config; write "
                'the override without it (e.g. pods.identifiers=[a,b] or "name with spaces").'
            )
    return f"overrides='{' '.join(overrides)}' output-dir='{output_dir}'"


def _write(line: str) -> None:
    sys.stdout.write(line)
    sys.stdout.flush()


def submit(
    connection: str,
    overrides: Sequence[str],
    *,
    output_dir: str = "",
    app: str | None = None,
    timeout: float = 3600.0,
) -> int:
    """Run the task on the SuperLink ``connection`` names, streaming its log; 0 if it
    completed, else :class:`RunFailed` with the run's status and Flower's details."""
    if not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ConfigError(f"--timeout must be a number of seconds above 0, got {timeout!r}.")
    flwr = flwr_executable()
    shown = [flwr, "run", app_label(app), connection, "--stream"]
    try:  # what to type for the same run by hand (the overrides travel in a file)
        shown += ["--run-config", f'"{run_config(overrides, output_dir)}"']
    except ConfigError:
        shown += ["--run-config", "RUN-CONFIG.toml"]
    print("submitting: " + " ".join(shown), flush=True)
    done = submit_run(
        connection, overrides, output_dir=output_dir, app=app, timeout=timeout, show=_write
    )
    print(f"run {done.run_id} on {connection!r}: {done.status}", flush=True)
    return 0
