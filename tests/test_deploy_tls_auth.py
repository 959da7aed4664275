"""TLS and SuperNode authentication: registered pods join and train, others are refused.

The test makes its own CA and server certificate and one ECDSA P-384 key per pod; the
modeller registers the pods' public keys with ``flwr supernode register`` before they
start. Registered pods are started with ``fedplug pod start`` (the data owner's command).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from deploy_helpers import (
    CONNECTION,
    check_against_plaintext,
    cluster,
    make_node_key,
    wait_for,
    write_pods,
)

# Starts real SuperLinks and SuperNodes: the slow tier (`pytest -m deploy`).
pytestmark = pytest.mark.deploy

NAMES = ("pod-a", "pod-b", "pod-c", "pod-x")


def test_registered_pods_train_over_tls_and_unregistered_ones_are_refused(tmp_path: Path) -> None:
    pods = write_pods(tmp_path / "pods", names=NAMES, rows=(500, 400, 300, 200))
    keys = {name: make_node_key(tmp_path / "keys", name) for name in NAMES}
    out = tmp_path / "out"
    with cluster(tmp_path, tls=True, auth=True) as c:
        c.start_superlink()
        for name in NAMES[:3]:
            c.register(keys[name][1])  # public key
        listed = c.flwr("supernode", "ls", CONNECTION, "--format", "json")
        assert listed.returncode == 0, listed.stderr

        members = [c.start_supernode(pod, key=keys[pod.stem][0], wait=False) for pod in pods[:3]]
        # A pod whose key was never registered (Flower's own SuperNode), and one with no
        # key at all (fedplug pod start, which stops when its SuperNode is refused).
        stranger = c.start_supernode(pods[3], key=keys["pod-x"][0], via_fedplug=False, wait=False)
        keyless = c.start_supernode(pods[3], wait=False)
        for intruder in (stranger, keyless):
            wait_for(lambda p=intruder: not p.alive(), 90, f"{intruder.name} to be refused")
            assert intruder.popen.returncode != 0
            assert "Failed to activate SuperNode" in intruder.log(), intruder.log()
            assert "SuperNode ID" not in intruder.log()
        for member in members:
            c.wait_connected(member)

        run = c.start_run(
            "aggregator=secure model.rounds=2 pods.identifiers=[pod-a,pod-b,pod-c]",
            out,
        )
        outcome = c.finish(run, timeout=420)
        assert outcome.status == "finished:completed", c.dump_logs()
        superlink_log = c.superlink.log()

    assert "insecure" not in superlink_log.lower()  # TLS on every API
    assert "SuperNode authentication is disabled" not in superlink_log
    history = json.loads((out / "history.json").read_text())["history"]
    assert len(history) == 2
    check_against_plaintext(out, pods[:3], rounds=2)
