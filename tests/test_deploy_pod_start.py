"""``fedplug pod start`` as a process: its SuperNode child, its secret, and how it stops.

The pod process runs ``flower-supernode --isolation process`` as its child and serves the
child's Runtime API itself, authenticated by a shared secret: nobody else on the machine
can take the pod's tasks; SIGTERM stops both and removes the secret; the child dies with
the pod process; and a pod whose SuperNode exits stops with an error.
"""

from __future__ import annotations

import os
import re
import signal
import stat
from pathlib import Path

import httpx
import pytest
from deploy_helpers import Cluster, Proc, cluster, descendants, wait_for, write_pods

# Starts real SuperLinks and SuperNodes: the slow tier (`pytest -m deploy`).
pytestmark = pytest.mark.deploy


def _supernode_child(proc: Proc) -> int:
    """The pid of the pod process's flower-supernode child."""
    for pid in descendants(proc.popen.pid):
        try:
            if b"flower-supernode" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    raise AssertionError(f"no flower-supernode under {proc.name}:\n{proc.log()}")


def _started(proc: Proc) -> tuple[Path, int]:
    """The secret file and the Runtime API port from the pod's "starting:" line."""
    line = next(x for x in proc.log().splitlines() if x.startswith("starting: "))
    secret = Path(re.search(r"--superexec-auth-secret-file (\S+)", line).group(1))
    return secret, int(re.search(r"--port (\d+)", line).group(1))


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def _runtime_client(port: int, secret: bytes | None):  # noqa: ANN202 - a Flower internal
    from flwr.supercore.interceptors import (
        RuntimeVersionHttpInterceptor,
        SuperExecAuthHttpInterceptor,
    )
    from flwr.supercore.runtime import RuntimeHttpClient

    interceptors: list = [RuntimeVersionHttpInterceptor(component_name="SuperExec")]
    if secret is not None:
        methods = {"/flwr.proto.Runtime/AcquireTask"}
        interceptors.append(
            SuperExecAuthHttpInterceptor(master_secret=secret, protected_methods=methods)
        )
    return RuntimeHttpClient(f"http://127.0.0.1:{port}", interceptors=interceptors, timeout=10)


def _start(c: Cluster, pod: Path) -> tuple[Proc, int]:
    proc = c.start_supernode(pod)
    c.wait_for_log(proc, "serving", timeout=60)
    return proc, _supernode_child(proc)


def test_pod_start_owns_its_supernode_and_its_secret(tmp_path: Path) -> None:
    from flwr.proto.runtime_pb2 import AcquireTaskRequest

    pods = write_pods(tmp_path / "pods", names=("pod-a", "pod-b", "pod-c"), rows=(60, 60, 60))
    with cluster(tmp_path) as c:
        c.start_superlink()

        # The secret is private; without it the Runtime API hands out no task.
        a, a_child = _start(c, pods[0])
        secret, port = _started(a)
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        assert stat.S_IMODE(secret.parent.stat().st_mode) == 0o700
        assert len(secret.read_bytes()) == 32
        request = AcquireTaskRequest(supported_task_types=["flwr-clientapp"])
        for key in (None, b"x" * 32):  # unsigned, or signed with another secret
            client = _runtime_client(port, key)
            with pytest.raises(httpx.HTTPStatusError) as refused:
                client.AcquireTask(request)
            assert refused.value.response.status_code == 401
            assert "Authentication failed" in refused.value.response.text
            client.close()
        client = _runtime_client(port, secret.read_bytes())  # the owner's secret works
        assert not client.AcquireTask(request).HasField("task")  # (no run: no task)
        client.close()

        # SIGTERM: the pod stops its SuperNode, removes the secret and exits 0.
        a.popen.send_signal(signal.SIGTERM)
        assert a.popen.wait(timeout=30) == 0, a.log()
        wait_for(lambda: _gone(a_child), 10, "the SuperNode to stop")
        assert not secret.exists() and not secret.parent.exists()

        # SIGKILL of the pod process: its SuperNode dies with it (no orphan serving).
        b, b_child = _start(c, pods[1])
        os.kill(b.popen.pid, signal.SIGKILL)
        b.popen.wait(timeout=10)
        wait_for(lambda: _gone(b_child), 10, "the orphaned SuperNode to die")

        # The SuperNode dies on its own: the pod stops with an error that says so.
        cc, cc_child = _start(c, pods[2])
        os.kill(cc_child, signal.SIGKILL)
        assert cc.popen.wait(timeout=30) == 1
        assert "fedplug pod 'pod-c' stops: its SuperNode" in cc.log()
        assert not _started(cc)[0].parent.exists()
