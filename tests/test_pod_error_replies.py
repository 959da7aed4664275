"""Error replies carry a reason from a fixed set, never data (issue 10, item 5).

Each test makes a pod fail the way an attacker (or an accident) would, then reads every
error reply the server got: no cell value, row number or count computed from the data
appears there, while the pod's own log holds the full detail for its owner.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from fed_harness import make_grid, make_plan
from flwr.app import Message, RecordDict

from fedplug import SecureAggregator
from fedplug._errors import FedplugError
from fedplug._flower import LocalGrid, run_plan
from fedplug._flower import _wire as wire
from fedplug._flower._pod_errors import FAILURES, REFUSALS
from fedplug.data import Pod

SECRET = "Patient-4711-HIV-positive"


def _errors(grid: LocalGrid) -> list[str]:
    return [str(r.error.reason) for r in grid.replies if r.has_error()]


def _train_rows(pod_file) -> int:  # noqa: ANN001
    return len(Pod.from_yaml(pod_file).load().train)


def test_a_bad_cell_value_stays_in_the_pods_log(fed_pods, tmp_path, caplog) -> None:
    pods = fed_pods(2, rows=120)
    csv = tmp_path / "pod-a.csv"
    lines = csv.read_text().splitlines()
    lines[4] = lines[4].replace("Private", SECRET)
    csv.write_text("\n".join(lines) + "\n")
    grid = make_grid(pods)
    with caplog.at_level(logging.WARNING, logger="fedplug.pod"):
        (reply,) = grid.send_and_receive(
            [Message(RecordDict(), dst_node_id=1, message_type=wire.SCHEMA_QUERY)]
        )
    assert reply.has_error() and reply.error.code == wire.POD_FAILURE
    payload = json.loads(reply.error.reason)
    assert payload["reason"] == "pod-data"
    assert "pod 'pod-a'" in payload["message"] and "workclass" in payload["message"]
    assert SECRET not in reply.error.reason
    assert "row" not in payload["message"].replace("throw", "")  # no row numbers either
    assert SECRET in caplog.text  # the owner reads it in the pod's log


def test_a_count_above_max_weight_is_capped_never_refused(fed_pods, caplog) -> None:
    """A refusal when n > max_weight would tell the server one bit about the count per run
    (enough runs bisect it); the pod weighs itself as max_weight instead and says so locally.
    """
    pods = fed_pods(2, rows=200)
    counts = {str(_train_rows(p)) for p in pods}
    grid = make_grid(pods)
    with caplog.at_level(logging.WARNING, logger="fedplug.pod"):
        result = run_plan(grid, make_plan(pods, SecureAggregator(max_weight=100), rounds=1))
    assert _errors(grid) == []
    assert len(result.history) == 1
    assert any(
        f"{c} examples exceed the aggregator's max_weight=100" in caplog.text for c in counts
    )


def test_a_non_finite_update_does_not_reveal_how_many_values(fed_pods, caplog, monkeypatch) -> None:
    from fedplug.learning import PodTrainer

    fit = PodTrainer.fit

    def poisoned(self, weights, server_round, mu=0.0):  # noqa: ANN001, ANN202
        new, metrics = fit(self, weights, server_round, mu)
        new[0].reshape(-1)[:37] = np.nan  # 37 values of the update diverged
        return new, metrics

    monkeypatch.setattr(PodTrainer, "fit", poisoned)
    pods = fed_pods(2, rows=200)
    grid = make_grid(pods)
    with caplog.at_level(logging.WARNING, logger="fedplug.pod"), pytest.raises(FedplugError):
        run_plan(grid, make_plan(pods, SecureAggregator(), rounds=1))
    errors = _errors(grid)
    assert errors
    for reason in errors:
        assert json.loads(reason)["reason"] == "encoding"
        assert "37" not in reason and "non-finite" not in reason
    assert "update has 37 non-finite element(s)" in caplog.text


def test_every_reason_text_is_fixed() -> None:
    # The explanations are constants: nothing from a message or the data is formatted in.
    for table in (REFUSALS, FAILURES):
        for reason, text in table.items():
            assert reason and "{" not in text and text == text.strip()
