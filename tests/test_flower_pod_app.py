"""The pod ClientApp answers every message, well-formed or not, without crashing."""

from __future__ import annotations

import json

import numpy as np
from fed_harness import make_grid, make_plan
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict

from fedplug import FedAvg
from fedplug._flower import LocalGrid, build_client_app
from fedplug._flower import _wire as wire


def _send(grid: LocalGrid, content: RecordDict, message_type: str, node: int = 1) -> Message:
    (reply,) = grid.send_and_receive(
        [Message(content, dst_node_id=node, message_type=message_type)]
    )
    return reply


def _train_content(plan) -> RecordDict:  # noqa: ANN001
    return RecordDict(
        {
            "arrays": ArrayRecord([np.asarray(w) for w in plan.initial_weights]),
            "config": ConfigRecord(
                {
                    wire.TASK_KEY: plan.task.with_scaling(np.zeros(6), np.ones(6)).to_json(),
                    "server-round": 1,
                    wire.PODS_KEY: json.dumps(plan.pods),
                }
            ),
        }
    )


def test_schema_query_returns_metadata_only(fed_pods) -> None:
    pods = fed_pods(2, rows=120)
    reply = _send(make_grid(pods), RecordDict(), wire.SCHEMA_QUERY)
    assert not reply.has_error()
    record = reply.content["schema"]
    assert record["pod"] == "pod-a"
    schema = json.loads(str(record["schema"]))
    assert schema["columns"]["workclass"]["stype"] == "categorical"
    assert "num_rows" not in schema
    assert set(reply.content.keys()) == {"schema"}


def test_plaintext_train_and_evaluate(fed_pods) -> None:
    pods = fed_pods(2, rows=120)
    plan = make_plan(pods, FedAvg(), rounds=1)
    grid = make_grid(pods)
    reply = _send(grid, _train_content(plan), wire.TRAIN)
    assert not reply.has_error(), reply.error
    arrays = reply.content["arrays"].to_numpy_ndarrays()
    assert [a.shape for a in arrays] == [np.shape(w) for w in plan.initial_weights]
    assert not all(np.array_equal(a, w) for a, w in zip(arrays, plan.initial_weights, strict=True))
    assert reply.content["metrics"]["num-examples"] == 90  # 120 rows, 25% held out
    reply = _send(grid, _train_content(plan), wire.EVALUATE)
    assert not reply.has_error(), reply.error
    assert 0.0 <= reply.content["metrics"]["accuracy"] <= 1.0


def test_unknown_message_type_gets_an_error_reply(fed_pods) -> None:
    pods = fed_pods(2, rows=120)
    reply = _send(make_grid(pods), RecordDict(), "query.gossip")
    assert reply.has_error() and reply.error.code == wire.BAD_REQUEST
    assert "does not handle this message type; it handles query.schema" in reply.error.reason


def test_malformed_train_message_gets_an_error_reply(fed_pods) -> None:
    pods = fed_pods(2, rows=120)
    grid = make_grid(pods)
    reply = _send(grid, RecordDict({"config": ConfigRecord({"x": 1})}), wire.TRAIN)
    assert reply.has_error() and reply.error.code == wire.BAD_REQUEST
    assert "pod 'pod-a' failed (bad-request)" in reply.error.reason
    garbage = RecordDict({"config": ConfigRecord({wire.TASK_KEY: "{not json"})})
    reply = _send(grid, garbage, wire.EVALUATE)
    assert reply.has_error() and "pod 'pod-a'" in reply.error.reason
    # The pod still works afterwards.
    assert not _send(grid, RecordDict(), wire.SCHEMA_QUERY).has_error()


def test_train_without_the_pod_list_is_refused_below_min_pods(fed_pods) -> None:
    pods = fed_pods(2, rows=120)
    plan = make_plan(pods, FedAvg(), rounds=1)
    content = _train_content(plan)
    del content["config"][wire.PODS_KEY]
    reply = _send(make_grid(pods), content, wire.TRAIN)
    assert reply.has_error() and json.loads(reply.error.reason)["reason"] == "too-few-pods"


def test_task_kind_outside_policy_is_refused(fed_pods) -> None:
    policy = {"policy": {"min_pods": 2, "accepted_tasks": ["evaluate"]}}
    pods = fed_pods(2, rows=120, policies={"pod-a": policy})
    plan = make_plan(pods, FedAvg(), rounds=1)
    reply = _send(make_grid(pods), _train_content(plan), wire.TRAIN)
    assert reply.has_error() and reply.error.code == wire.POLICY_REFUSAL
    payload = json.loads(reply.error.reason)
    assert payload["reason"] == "task-kind" and payload["pods"] == ["pod-a"]


def test_supernode_without_a_pod_explains_how_to_name_one() -> None:
    grid = LocalGrid({1: build_client_app()})
    reply = _send(grid, RecordDict(), wire.SCHEMA_QUERY)
    assert reply.has_error()
    assert "serves no pod" in reply.error.reason and "fedplug pod start" in reply.error.reason


def test_pod_with_invalid_data_refuses_with_every_violation(fed_pods, tmp_path) -> None:
    pods = fed_pods(2, rows=120)
    csv = tmp_path / "pod-a.csv"
    lines = csv.read_text().splitlines()
    lines[5] = "x" + lines[5]  # a non-numeric age
    lines[7] = lines[7].replace("Private", "Pirate")  # outside the workclass vocabulary
    csv.write_text("\n".join(lines) + "\n")
    reply = _send(make_grid(pods), RecordDict(), wire.SCHEMA_QUERY)
    assert reply.has_error()
    # The schema's column names, never the offending values (those are in the pod's log).
    assert "columns ['age', 'workclass']" in reply.error.reason
    assert "Pirate" not in reply.error.reason
