"""``fedplug pod check`` and ``fedplug pod start``."""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from fedplug._errors import ConfigError

console = Console()

#: What the SuperNode never does in fedplug's setup: install packages a run asks for.
NO_RUNTIME_INSTALL = {"FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1"}


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
    if pod.identity_key:
        from fedplug.secagg import IdentityKey

        key = IdentityKey.from_pem(Path(pod.identity_key).read_bytes())
        pinned = sorted(pod.pinned_keys or {})
        console.print(
            f"  identity key {pod.identity_key}: public key [bold]{key.public_b64()}[/] "
            "(the other pods' owners pin it: identity.pinned_keys); "
            f"pinned peers: {pinned or 'none'}",
            highlight=False,
            soft_wrap=True,  # the key must stay on one line, to be copied
        )
    console.print(render_schema_table(loaded.schema))
    return 0


def free_local_port() -> int:
    """A free TCP port on 127.0.0.1 (for the SuperNode's internal Runtime API)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _runtime_port(ns: argparse.Namespace) -> str:
    """The SuperNode's Runtime API port: ``--port``, else a free one.

    The Runtime API only connects the SuperNode to the app processes it starts on the same
    machine, so any free port works; choosing one lets several pods share a machine
    without each owner picking ports (Flower's default, 9094, would collide).
    """
    port = getattr(ns, "port", None)
    if port is None:
        return str(free_local_port())
    if not str(port).isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--port {port!r} is not a TCP port; give a number in 1..65535.")
    return str(port)


def supernode_command(ns: argparse.Namespace, pod_file: Path) -> list[str]:
    """The ``flower-supernode`` command (Flower 1.42 flags) serving ``pod_file``."""
    exe = shutil.which("flower-supernode") or shutil.which(
        "flower-supernode", path=str(Path(sys.executable).parent)
    )
    if exe is None:
        raise ConfigError("flower-supernode is not on PATH; install fedplug (it installs flwr).")
    if "'" in str(pod_file):
        raise ConfigError(
            f"the pod file path {str(pod_file)!r} contains a quote (') that Flower's "
            "--node-config cannot carry; move or rename the file."
        )
    command = [exe, "--superlink", ns.superlink, "--node-config", f"pod='{pod_file}'"]
    if ns.insecure and ns.root_certificates:
        raise ConfigError(
            "give either --insecure (no TLS) or --root-certificates CA.pem (TLS), not both."
        )
    if ns.insecure:
        command.append("--insecure")
    elif ns.root_certificates:
        ca = Path(ns.root_certificates).expanduser()
        if not ca.is_file():
            raise ConfigError(
                f"--root-certificates {str(ca)!r} does not exist; pass the CA certificate "
                "(PEM) the SuperLink's certificate was signed with."
            )
        command += ["--root-certificates", str(ca.resolve())]
    else:
        raise ConfigError(
            "choose --insecure (local testing) or --root-certificates CA.pem (TLS) for the "
            "connection to the SuperLink."
        )
    if ns.auth_key:
        key = Path(ns.auth_key).expanduser()
        if not key.is_file():
            raise ConfigError(
                f"--auth-key {str(key)!r} does not exist; create the pod's key pair with "
                f"`ssh-keygen -t ecdsa -b 384 -N '' -f {key}` and register {key}.pub with "
                "the SuperLink (`flwr supernode register`)."
            )
        command += ["--auth-supernode-private-key", str(key.resolve())]
    command += ["--host", "127.0.0.1", "--port", _runtime_port(ns)]
    return command


def pod_start(ns: argparse.Namespace) -> int:
    """Check the pod first (a broken pod never joins), then become a SuperNode serving it."""
    pod_file = Path(ns.pod_file).expanduser().resolve()
    pod_check(str(pod_file))
    command = supernode_command(ns, pod_file)
    console.print("starting: " + " ".join(command), highlight=False)
    env = {**os.environ, **NO_RUNTIME_INSTALL}
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        # Become the SuperNode: signals (Ctrl-C, a service manager's stop) and the exit
        # status are then the SuperNode's own.
        os.execve(command[0], command, env)
    return subprocess.call(command, env=env)
