"""A pod's own policy on a real SuperLink: approved_pods excludes another pod of the task."""

from __future__ import annotations

from pathlib import Path

import pytest
from deploy_helpers import cluster, write_pods

# Starts real SuperLinks and SuperNodes: the slow tier (`pytest -m deploy`).
pytestmark = pytest.mark.deploy


def test_a_pod_refuses_an_unapproved_peer_and_the_error_names_both(tmp_path: Path) -> None:
    pods = write_pods(
        tmp_path / "pods",
        rows=(300, 300, 300),
        extra={"pod-c": {"approved_pods": ["pod-a"]}},  # pod-b is not approved by pod-c
    )
    with cluster(tmp_path) as c:
        c.start_superlink()
        c.start_pods(pods)
        run = c.start_run(
            "aggregator=secure model.rounds=1 pods.identifiers=[pod-a,pod-b,pod-c]",
            tmp_path / "out",
        )
        outcome = c.finish(run, timeout=300)

    assert outcome.status == "finished:failed", outcome.log
    for text in (outcome.details, outcome.log):
        assert "refuse" in text and "approved_pods" in text
        assert "'pod-c'" in text and "'pod-b'" in text, text
    assert not (tmp_path / "out" / "model.pt").exists()
