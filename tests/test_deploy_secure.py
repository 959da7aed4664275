"""Secure aggregation on a real SuperLink: three SuperNodes, three pods, ``flwr run``.

The ServerApp composes the task from Hydra overrides passed through the run config, as
``fedplug run`` does; the model it writes must equal the plaintext weighted mean of the
very updates the pods computed (replayed here: pod training is deterministic).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from deploy_helpers import check_against_plaintext, cluster, write_pods

# Starts real SuperLinks and SuperNodes: the slow tier (`pytest -m deploy`).
pytestmark = pytest.mark.deploy

PODS = "pods.identifiers=[pod-a,pod-b,pod-c]"


def test_secure_rounds_on_a_superlink_equal_the_plaintext_weighted_mean(tmp_path: Path) -> None:
    pods = write_pods(tmp_path / "pods")  # 500, 400 and 300 rows of census data
    out = tmp_path / "out"
    with cluster(tmp_path) as c:
        c.start_superlink()
        c.start_pods(pods)
        run = c.start_run(f"aggregator=secure model.rounds=2 {PODS}", out)
        outcome = c.finish(run, timeout=420)
        assert outcome.status == "finished:completed", c.dump_logs()

    log = outcome.log
    assert "round 1/2" in log and "round 2/2" in log  # per-round progress
    assert "aggregator=secure" in log
    assert "Successfully installed" in log or "installed" not in log.lower()
    assert "uv sync" not in log and "Installing app dependencies" not in log
    config = json.loads((out / "history.json").read_text())["config"]
    assert config["aggregator"]["name"] == "secure" and config["model"]["rounds"] == 2
    assert (out / "config.yaml").is_file() and (out / "metrics.png").is_file()
    check_against_plaintext(out, pods, rounds=2)
