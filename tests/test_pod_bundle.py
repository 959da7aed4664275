"""A pod checks each app bundle (FAB) and refuses any that is not fedplug's own app.

In-process, in seconds: the bundle check, the pod executor's answer to a refused and to an
accepted bundle, the shared secret's file, and the ClientApp a plain flower-supernode
would load. The end-to-end attack on a real SuperLink is in test_deploy_bundle.py.
"""

from __future__ import annotations

import io
import json
import stat
import zipfile
from pathlib import Path

import pytest
import tomli
from deploy_helpers import REPO_ROOT, write_pods
from flwr.app import Context, Message, RecordDict

from fedplug._flower import LocalGrid
from fedplug._flower import _wire as wire
from fedplug._flower import app as flower_app
from fedplug._flower._flower_internals import COMPLETED, FAILED, TaskInput
from fedplug._flower._pod_executor import (
    BUNDLE_REFUSED,
    PodExecutor,
    inspect_bundle,
    listener_owner,
    private_secret,
)


@pytest.fixture(scope="module")
def fedplug_fab() -> bytes:
    from flwr.cli.build import build_fab_from_disk

    return build_fab_from_disk(REPO_ROOT)


def _rebuild(fab: bytes, *, extra: dict[str, bytes] | None = None, pyproject=None) -> bytes:  # noqa: ANN001
    """The same bundle with files added or pyproject.toml changed."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(fab)) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "pyproject.toml" and pyproject is not None:
                data = pyproject(data.decode()).encode()
            dst.writestr(name, data)
        for name, data in (extra or {}).items():
            dst.writestr(name, data)
    return out.getvalue()


# -- the check ------------------------------------------------------------------------------
def test_fedplugs_own_bundle_is_accepted(fedplug_fab: bytes) -> None:
    assert inspect_bundle(fedplug_fab) is None


def test_a_bundle_with_code_is_refused_naming_the_file(fedplug_fab: bytes) -> None:
    why = inspect_bundle(_rebuild(fedplug_fab, extra={"evil.py": b"import os\n"}))
    assert why is not None and "'evil.py'" in why and "other than pyproject.toml" in why
    # Code hidden among the configs, or a path that climbs out, is refused just the same.
    assert "conf/x.py" in (inspect_bundle(_rebuild(fedplug_fab, extra={"conf/x.py": b""})) or "")
    assert inspect_bundle(_rebuild(fedplug_fab, extra={"conf/../x.yaml": b""})) is not None


@pytest.mark.parametrize(
    ("key", "named"),
    [("clientapp", "evil:client"), ("serverapp", "evil:server")],
)
def test_a_bundle_naming_another_component_is_refused(
    fedplug_fab: bytes, key: str, named: str
) -> None:
    original = f"fedplug._flower.app:{key.replace('app', '_app')}"
    fab = _rebuild(fedplug_fab, pyproject=lambda text: text.replace(original, named))
    assert tomli.loads(zipfile.ZipFile(io.BytesIO(fab)).read("pyproject.toml").decode())
    why = inspect_bundle(fab)
    assert why is not None and f"names the {key} '{named}'" in why and original in why


def test_a_blob_that_is_no_zip_is_refused() -> None:
    assert (
        inspect_bundle(b"#!/bin/sh\nrm -rf ~\n") == "the app bundle is not a readable zip archive"
    )
    assert inspect_bundle(b"") == "the app bundle is not a readable zip archive"


def test_a_bundle_without_pyproject_is_refused() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("conf/config.yaml", "seed: 1\n")
    assert inspect_bundle(out.getvalue()) == "the app bundle has no pyproject.toml"


# -- the executor's answer ------------------------------------------------------------------
def _task(fab: bytes, message_type: str = wire.SCHEMA_QUERY, run_id: int = 77) -> TaskInput:
    LocalGrid({})  # sets Flower's task identity, which a new Message needs
    message = Message(RecordDict(), dst_node_id=1, message_type=message_type)
    message.metadata.__dict__["_message_id"] = "m-1"
    context = Context(run_id=run_id, node_id=1, node_config={}, state=RecordDict(), run_config={})
    return TaskInput(message, context, run_id, fab)


def test_the_executor_refuses_a_foreign_bundle_and_runs_fedplugs_app_for_its_own(
    tmp_path: Path, fedplug_fab: bytes, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    (pod,) = write_pods(tmp_path, names=("pod-a",), rows=(60,))
    executor = PodExecutor(pod, "127.0.0.1:9", b"s" * 32)  # never connects here
    try:
        evil = _rebuild(fedplug_fab, extra={"evil.py": b""})
        with caplog.at_level("WARNING", logger="fedplug.pod"):
            reply, status, details = executor.answer(_task(evil))
        assert status == FAILED and reply.has_error()
        assert reply.error.code == wire.POLICY_REFUSAL
        payload = json.loads(reply.error.reason)
        assert payload["reason"] == BUNDLE_REFUSED and payload["pods"] == ["pod-a"]
        assert payload["message"] == details
        assert "pod 'pod-a' refuses run 77" in details and "evil.py" in details
        assert "flwr run <fedplug checkout>" in details
        assert "run 77" in caplog.text and BUNDLE_REFUSED in caplog.text

        # The verdict is kept per bundle: the archive is read once.
        calls = []
        monkeypatch.setattr(
            "fedplug._flower._pod_executor.inspect_bundle", lambda fab: calls.append(1) or None
        )
        executor.answer(_task(evil))
        assert calls == []

        reply, status, details = executor.answer(_task(fedplug_fab))
        assert (status, details) == (COMPLETED, "")
        assert not reply.has_error() and reply.content["schema"]["pod"] == "pod-a"
    finally:
        executor.close()


def test_the_executor_keeps_the_pods_state_to_itself(tmp_path: Path, fedplug_fab: bytes) -> None:
    """Whatever node state the Runtime API hands over is ignored, and none is handed back:
    a process posing as the SuperNode (or a failed push) can neither plant, read, reset nor
    roll back the pod's keys and record of exchanges."""
    from flwr.app import ConfigRecord

    from fedplug._flower._secure_pod import STATE_KEY

    (pod,) = write_pods(tmp_path, names=("pod-a",), rows=(60,))
    executor = PodExecutor(pod, "127.0.0.1:9", b"s" * 32)
    try:
        config = ConfigRecord({"run": "r-1", wire.PODS_KEY: json.dumps(["pod-a", "pod-b"])})
        task = _task(fedplug_fab, wire.SECAGG_SETUP)
        task.message.content["config"] = config
        # A planted state claiming setup already happened (and holding chosen keys).
        task.context.state[STATE_KEY] = ConfigRecord({"state": '{"run_id": "planted"}'})
        reply, status, _ = executor.answer(task)
        assert status == COMPLETED and not reply.has_error(), reply.error
        assert "bundle" in reply.content
        assert STATE_KEY not in task.context.state  # nothing of the pod's state goes back
        assert len(task.context.state) == 0
        # The pod's own record holds: a second setup in that run is refused.
        again = _task(fedplug_fab, wire.SECAGG_SETUP)
        again.message.content["config"] = config
        reply, _, _ = executor.answer(again)
        assert reply.has_error() and json.loads(reply.error.reason)["reason"] == "setup-repeated"
        # Another run is another record.
        other = _task(fedplug_fab, wire.SECAGG_SETUP, run_id=78)
        other.message.content["config"] = config
        assert not executor.answer(other)[0].has_error()
        # Many runs, refused bundles or not, never push run 77's record out.
        evil = _rebuild(fedplug_fab, extra={"evil.py": b""})
        for run_id in range(100, 140):
            executor.answer(_task(evil if run_id % 2 else fedplug_fab, run_id=run_id))
        assert all(run % 2 == 0 for run in executor._states if run >= 100)  # refused: none
        reply, _, _ = executor.answer(again)
        assert reply.has_error() and json.loads(reply.error.reason)["reason"] == "setup-repeated"
    finally:
        executor.close()


def test_a_listener_on_the_runtime_port_must_be_the_pods_supernode() -> None:
    import os
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        assert listener_owner(port, [os.getpid()]) is None  # bound, not listening yet
        sock.listen()
        assert listener_owner(port, [os.getpid()]) is True
        # Somebody else's listener (here: ours, seen from another process's pids).
        assert listener_owner(port, [os.getppid()]) is False
    # A wildcard listener takes 127.0.0.1's calls too: it counts.
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert listener_owner(port, [os.getppid()]) is False
        assert listener_owner(port, [os.getpid()]) is True


def test_the_shared_secret_is_private_and_removed(tmp_path: Path) -> None:
    with private_secret() as (path, secret):
        assert len(secret) == 32 and path.read_bytes() == secret
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert not path.exists() and not path.parent.exists()


# -- plain flower-supernode -----------------------------------------------------------------
def test_the_bundles_named_client_app_refuses_on_a_plain_supernode(tmp_path: Path) -> None:
    """What Flower's flwr-clientapp loads on plain flower-supernode answers with a refusal."""
    (pod,) = write_pods(tmp_path, names=("pod-a",), rows=(30,))
    task = _task(b"")
    task.context.node_config["pod"] = str(pod)
    reply = flower_app.client_app(task.message, task.context)
    assert reply.has_error() and reply.error.code == wire.POLICY_REFUSAL
    payload = json.loads(reply.error.reason)
    assert payload["reason"] == "unsafe-launch" and payload["pods"] == ["pod-a"]
    assert "plain flower-supernode" in payload["message"]
    assert "fedplug pod start POD.yaml" in payload["message"]


def test_a_pod_refusing_the_schema_query_fails_the_run_at_once_with_its_reason(
    tmp_path: Path,
) -> None:
    """A pod on a plain flower-supernode refuses; the run says so, not "not found"."""
    from fedplug import PodConfigError, PolicyRefusal
    from fedplug._flower import build_client_app
    from fedplug._flower._server import discover_pods

    a, b = write_pods(tmp_path, names=("pod-a", "pod-b"), rows=(40, 40))
    grid = LocalGrid(
        {1: build_client_app(), 2: flower_app.client_app},
        node_configs={1: {"pod": str(a)}, 2: {"pod": str(b)}},
    )
    # A timeout this long would fail the test run: the refusal must end the search first.
    refused = r"pod\(s\) \['pod-b'\] refused the run \(unsafe-launch\): the pod was started"
    with pytest.raises(PolicyRefusal, match=refused) as info:
        discover_pods(grid, ["pod-a", "pod-b"], timeout=3600)
    assert info.value.reason == "unsafe-launch" and info.value.pods == ["pod-b"]
    # A SuperNode's own words never reach the modeller, only fedplug's fixed explanation.
    liar = LocalGrid(
        {1: lambda m, c: wire.refusal_reply(m, "made-up", "VISIT evil.example", ["pod-b"])}
    )
    with pytest.raises(PolicyRefusal, match="a reason fedplug does not know") as info:
        discover_pods(liar, ["pod-b"], timeout=3600)
    assert "evil.example" not in str(info.value)
    # A SuperNode that serves no pod is named in the "not found" error.
    lonely = LocalGrid({1: build_client_app()})
    with pytest.raises(PodConfigError, match="not found.*serves no pod"):
        discover_pods(lonely, ["pod-x"], timeout=0.5, interval=0.1)
