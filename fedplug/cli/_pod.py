"""``fedplug pod check`` and ``fedplug pod start``."""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from fedplug._errors import ConfigError

if TYPE_CHECKING:
    from fedplug.data import LoadedPod, Pod

console = Console()

#: What the SuperNode never does in fedplug's setup: install packages a run asks for.
NO_RUNTIME_INSTALL = {"FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1"}


def pod_check(pod_file: str) -> int:
    """Load the pod, validate its data against its schema, print a schema summary.

    Inference warnings (a column whose inferred type is probably wrong) are printed too.
    """
    from fedplug.data import Pod

    from ._schema import schema_warnings_printed

    pod = Pod.from_yaml(Path(pod_file))
    with schema_warnings_printed(console):
        loaded = pod.load()
    _summary(pod, loaded)
    return 0


def _summary(pod: Pod, loaded: LoadedPod) -> None:
    from fedplug.data import render_schema_table

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


def free_local_port() -> int:
    """A free TCP port on 127.0.0.1 (for the SuperNode's internal Runtime API)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _runtime_port(ns: argparse.Namespace) -> str:
    """The SuperNode's Runtime API port: ``--port``, else a free one.

    The Runtime API only connects the SuperNode to this pod's own executor on the same
    machine (127.0.0.1), so any free port works; choosing one lets several pods share a machine
    without each owner picking ports (Flower's default, 9094, would collide).
    """
    port = getattr(ns, "port", None)
    if port is None:
        return str(free_local_port())
    if not str(port).isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--port {port!r} is not a TCP port; give a number in 1..65535.")
    return str(port)


def supernode_command(
    ns: argparse.Namespace, secret_file: Path, port: str | None = None
) -> list[str]:
    """The ``flower-supernode`` command (Flower 1.42 flags) a pod runs as its child.

    ``--isolation process``: the SuperNode starts no app process (Flower's would install
    and import whatever an app bundle names); ``fedplug pod start`` serves its tasks
    itself, authenticated by the shared secret in ``secret_file``. The Runtime API
    listens on 127.0.0.1 only.
    """
    exe = shutil.which("flower-supernode") or shutil.which(
        "flower-supernode", path=str(Path(sys.executable).parent)
    )
    if exe is None:
        raise ConfigError("flower-supernode is not on PATH; install fedplug (it installs flwr).")
    command = [exe, "--superlink", ns.superlink]
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
    command += ["--isolation", "process", "--superexec-auth-secret-file", str(secret_file)]
    command += ["--host", "127.0.0.1", "--port", port or _runtime_port(ns)]
    return command


def pod_start(ns: argparse.Namespace) -> int:
    """Check the pod first (a broken pod never joins), then serve it with fedplug's app.

    The SuperNode runs as a child process; this process answers its tasks with the
    fedplug ClientApp installed here and never runs code from an app bundle.
    """
    from fedplug._flower._pod_executor import serve_pod
    from fedplug._flower._pod_runtime import load_runtime

    pod_file = Path(ns.pod_file).expanduser().resolve()
    runtime = load_runtime(pod_file)  # validated once; the pod's process keeps it loaded
    _summary(runtime.pod, runtime.data)
    port = _runtime_port(ns)
    supernode_command(ns, Path("superexec-secret"), port)  # bad options fail before anything

    def announce(command: Sequence[str]) -> None:
        console.print("starting: " + " ".join(command), highlight=False, soft_wrap=True)

    return serve_pod(
        pod_file,
        lambda secret_file: supernode_command(ns, secret_file, port),
        int(port),
        {**os.environ, **NO_RUNTIME_INSTALL},
        announce,
    )
