"""``fedplug pod check`` and ``fedplug pod start``."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from pathlib import Path

from rich.console import Console

from fedplug._errors import ConfigError

console = Console()


def pod_check(pod_file: str) -> int:
    """Load the pod, validate its data against its schema, print a schema summary."""
    from fedplug.data import Pod, render_schema_table

    pod = Pod.from_yaml(Path(pod_file))
    loaded = pod.load()
    console.print(f"[bold green]ok[/]: pod {pod.name!r} ({pod.datasource.describe()})")
    console.print(
        f"  rows: {len(loaded.train)} train + {len(loaded.validation)} validation; "
        f"approved pods: {pod.approved_pods if pod.approved_pods is not None else 'any'}; "
        f"secure aggregation required: {pod.policy.require_secure_aggregation}; "
        f"min pods: {pod.policy.min_pods}; accepted tasks: {list(pod.policy.accepted_tasks)}"
    )
    console.print(render_schema_table(loaded.schema))
    return 0


def supernode_command(ns: argparse.Namespace, pod_file: Path) -> list[str]:
    exe = shutil.which("flower-supernode")
    if exe is None:
        raise ConfigError("flower-supernode is not on PATH; install fedplug (it installs flwr).")
    command = [exe, "--superlink", ns.superlink, "--node-config", f"pod='{pod_file}'"]
    if ns.insecure:
        command.append("--insecure")
    elif ns.root_certificates:
        command += ["--root-certificates", ns.root_certificates]
    else:
        raise ConfigError(
            "choose --insecure (local testing) or --root-certificates CA.pem (TLS) for the "
            "connection to the SuperLink."
        )
    if ns.auth_key:
        command += ["--auth-supernode-private-key", ns.auth_key]
    if ns.clientappio_api_address:
        command += ["--clientappio-api-address", ns.clientappio_api_address]
    return command


def pod_start(ns: argparse.Namespace) -> int:
    """Check the pod first (a broken pod never joins), then run a SuperNode serving it."""
    pod_file = Path(ns.pod_file).resolve()
    pod_check(str(pod_file))
    command = supernode_command(ns, pod_file)
    console.print("starting: " + " ".join(command))
    env = {**os.environ, "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1"}
    return subprocess.call(command, env=env)
