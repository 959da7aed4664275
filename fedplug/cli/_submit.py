"""``fedplug submit CONNECTION [OVERRIDES]``: ``flwr run --stream`` that fails when the run does.

``flwr run . CONNECTION --stream`` exits 0 once the stream ends, even when the run ended
``finished:failed`` (Flower 1.42), so a script or CI job cannot tell. This streams the same
run, then asks the SuperLink for the run's final status (``flwr ls --run-id ID
--format json``) and exits 1 with Flower's status details unless it is
``finished:completed``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from fedplug._errors import ConfigError, FedplugError

#: What `flwr run` prints once the SuperLink accepted the run.
STARTED = "Successfully started run "
COMPLETED = "finished:completed"
#: Seconds for a `flwr ls`/`flwr stop` call, and to wait for a streamed run's final status.
CLI_TIMEOUT = 60.0
STATUS_WAIT = 30.0


class RunFailed(FedplugError):
    """The run on the SuperLink did not complete."""


def flwr_executable() -> str:
    found = shutil.which("flwr") or shutil.which("flwr", path=str(Path(sys.executable).parent))
    if found is None:
        raise ConfigError(
            "the Flower CLI `flwr` is not on PATH; install fedplug (it installs flwr)."
        )
    return found


def app_dir(given: str | None) -> Path:
    """The Flower App to submit: ``--app``, else the fedplug checkout holding conf/."""
    from fedplug._task_builder import conf_dir

    directory = Path(given).expanduser() if given else conf_dir().parent
    pyproject = directory / "pyproject.toml"
    if not pyproject.is_file() or "[tool.flwr.app" not in pyproject.read_text(errors="replace"):
        raise ConfigError(
            f"{str(directory)!r} is not a Flower App (no pyproject.toml with [tool.flwr.app]); "
            "run from a fedplug checkout or pass its root with --app DIR."
        )
    return directory.resolve()


def run_config(overrides: Sequence[str], output_dir: str) -> str:
    """The ``--run-config`` value: the overrides and output directory, single-quoted."""
    for value in (*overrides, output_dir):
        if "'" in value:
            raise ConfigError(
                f"{value!r}: a single quote cannot travel in Flower's --run-config; write the "
                'override without it (e.g. pods.identifiers=[a,b] or "name with spaces").'
            )
    return f"overrides='{' '.join(overrides)}' output-dir='{output_dir}'"


def run_status(flwr: str, run_id: int, connection: str) -> tuple[str, str]:
    """The run's status (e.g. ``finished:failed``) and Flower's status details."""
    try:
        done = subprocess.run(
            [flwr, "ls", "--run-id", str(run_id), connection, "--format", "json"],
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        run = json.loads(done.stdout)["runs"][0]
    except subprocess.TimeoutExpired:
        return "", f"`flwr ls` did not answer within {CLI_TIMEOUT:.0f}s"
    except (json.JSONDecodeError, KeyError, IndexError, TypeError):
        return "", (done.stdout + done.stderr).strip()
    return str(run.get("status", "")), str(run.get("status-details", ""))


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
    if not timeout > 0:
        raise ConfigError(f"--timeout must be a number of seconds above 0, got {timeout!r}.")
    flwr = flwr_executable()
    directory = app_dir(app)
    command = [flwr, "run", str(directory), connection, "--stream"]
    command += ["--run-config", run_config(overrides, output_dir)]
    print("submitting: " + " ".join(command), flush=True)
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []

    def relay() -> None:  # the run's log, as flwr streams it
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            sys.stdout.write(line)
            sys.stdout.flush()

    reader = threading.Thread(target=relay, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=CLI_TIMEOUT)
        run_id = _run_id(lines)
        if run_id is not None:
            subprocess.run(
                [flwr, "stop", str(run_id), connection],
                capture_output=True,
                timeout=CLI_TIMEOUT,
                stdin=subprocess.DEVNULL,
            )
        raise RunFailed(
            f"run {run_id if run_id is not None else '(not started)'} did not end within "
            f"--timeout {timeout:.0f}s; it was stopped (`flwr stop`). Raise --timeout for "
            "longer runs."
        ) from None
    reader.join(timeout=CLI_TIMEOUT)
    run_id = _run_id(lines)
    if run_id is None:
        tail = "".join(lines[-20:]).strip()
        raise RunFailed(
            f"`flwr run` did not start a run on {connection!r} (exit code {code}):\n{tail}\n"
            f"Check the connection in $FLWR_HOME/config.toml and that the SuperLink is up."
        )
    status, details = run_status(flwr, run_id, connection)
    deadline = time.monotonic() + STATUS_WAIT
    while not status.startswith("finished") and time.monotonic() < deadline:
        time.sleep(1.0)  # the stream can end a moment before the SuperLink records the end
        status, details = run_status(flwr, run_id, connection)
    if status != COMPLETED:
        raise RunFailed(
            f"run {run_id} on {connection!r} ended {status or 'with an unknown status'}: "
            f"{details.rstrip('.') or '(no details)'}. Its whole log: "
            f"`flwr log {run_id} {connection}` "
            f"(flwr run itself exited with code {code})."
        )
    print(f"run {run_id} on {connection!r}: {status}", flush=True)
    return 0


def _run_id(lines: Sequence[str]) -> int | None:
    for line in lines:
        if STARTED in line:
            word = line.split(STARTED, 1)[1].split()
            if word and word[0].isdigit():
                return int(word[0])
    return None
