"""Faults on a real SuperLink: a pod's SuperNode dies in the middle of a secure round.

The SuperNode (and everything it started) gets SIGKILL, as when a pod's machine dies:
the server hears nothing and must rely on its timeouts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from deploy_helpers import check_against_plaintext, cluster, write_pods

# Starts real SuperLinks and SuperNodes: the slow tier (`pytest -m deploy`).
pytestmark = pytest.mark.deploy

TIMEOUT = 15.0  # seconds the server waits for pods in each exchange (uploads, unmask)
TIMEOUTS = f"federation.round_timeout={TIMEOUT} aggregator.params.timeout={TIMEOUT}"
SECURE = "train.secure"  # the message type of every secure exchange a pod receives


def test_a_lost_pod_is_named_and_training_ends_on_survivors_then_fails_below_min_pods(
    tmp_path: Path,
) -> None:
    pods = write_pods(tmp_path / "pods")
    with cluster(tmp_path) as c:
        c.start_superlink()
        a, b, cc = c.start_pods(pods)

        # Run 1: pod-c dies when the training round reaches it (its third secure upload,
        # after the two secure statistics exchanges). The survivors' unmask exchange
        # removes its masks from their sum (nothing is re-run), and training finishes on
        # pod-a and pod-b.
        run = c.start_run(
            f"aggregator=secure model.rounds=1 {TIMEOUTS} pods.identifiers=[pod-a,pod-b,pod-c]",
            tmp_path / "out1",
            name="run1",
        )
        c.wait_for_log(cc, f"Receiving: {SECURE}", count=3, timeout=300)
        c.kill(cc)
        first = c.finish(run, timeout=300)
        assert first.status == "finished:completed", c.dump_logs()
        assert "training round 1: pod(s) ['pod-c'] dropped out" in first.log, first.log
        assert "round 1/1" in first.log
        # The model is the weighted mean of the survivors' updates alone (the scaling
        # was agreed by all three, before pod-c died).
        check_against_plaintext(tmp_path / "out1", pods[:2], rounds=1, scaling_pods=pods)

        # Run 2 on the two survivors: pod-b dies in the first secure exchange, leaving
        # one pod, fewer than the threshold (2 of 2): nothing is unmasked and the run must
        # stop with an error naming pod-b, within the configured timeout (no hang).
        seen = b.log().count(f"Receiving: {SECURE}")
        run = c.start_run(
            f"aggregator=secure model.rounds=1 {TIMEOUTS} pods.identifiers=[pod-a,pod-b]",
            tmp_path / "out2",
            name="run2",
        )
        c.wait_for_log(b, f"Receiving: {SECURE}", count=seen + 1, timeout=300)
        c.kill(b)
        # Bounded: finish() fails the test if the run outlives one wait for the dead pod
        # and the ServerApp's exit (timing targets live in benchmarks/).
        second = c.finish(run, timeout=4 * TIMEOUT + 60)
        assert a.alive()

    assert second.status == "finished:failed", second.log
    assert "pod-b" in second.details and "fewer than the threshold" in second.details, (
        second.details
    )
    assert "fedplug run failed" in second.log and "pod-b" in second.log
    assert not (tmp_path / "out2" / "model.pt").exists()
