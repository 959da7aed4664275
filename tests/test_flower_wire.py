"""The wire format's readers: a reply of the wrong layout is named, never a KeyError."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp.strategy import FedAvg as FlowerFedAvg

from fedplug import PodConfigError, TrainingError
from fedplug._flower import LocalGrid
from fedplug._flower import _wire as wire
from fedplug._flower._pod_strategy import PlaintextStrategy
from fedplug._flower._server import discover_pods
from fedplug._flower._session import PodSession
from fedplug.testing import fake_pod_app, make_updates


def _app(reply: RecordDict) -> ClientApp:
    """A SuperNode answering every message with ``reply``'s content."""
    app = ClientApp()

    def answer(message: Message, context: object) -> Message:
        return Message(RecordDict(dict(reply.items())), reply_to=message)

    app.query("schema")(answer)
    app.train()(answer)
    app.evaluate()(answer)
    return app


def _reply(content: RecordDict) -> Message:
    grid = LocalGrid({1: _app(content)})
    query = Message(RecordDict(), dst_node_id=1, message_type=wire.SCHEMA_QUERY)
    (reply,) = grid.send_and_receive([query])
    return reply


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (RecordDict(), "KeyError: 'schema'"),
        (RecordDict({"schema": ConfigRecord({"pod": "p"})}), "KeyError: 'schema'"),
        (
            RecordDict(
                {
                    "schema": ConfigRecord(
                        {"pod": "p", "schema": "[1]", "require-secure": False, "min-pods": 2}
                    )
                }
            ),
            "not a mapping",
        ),
    ],
)
def test_a_malformed_schema_reply_is_named(content: RecordDict, named: str) -> None:
    with pytest.raises(wire.MalformedMessage, match=r"a pod's schema reply is malformed") as info:
        wire.read_schema_reply(_reply(content))
    assert named in str(info.value) and "same fedplug version" in str(info.value)


def test_a_well_formed_schema_reply_reads_back() -> None:
    content = RecordDict(
        {
            "schema": ConfigRecord(
                {"pod": "p", "schema": '{"columns": {}}', "require-secure": True, "min-pods": 3}
            )
        }
    )
    info = wire.read_schema_reply(_reply(content))
    assert info == wire.PodInfo("p", {"columns": {}}, True, 3)


def test_a_supernode_answering_garbage_is_not_taken_for_a_pod() -> None:
    grid = LocalGrid({1: _app(RecordDict({"schema": ConfigRecord({"pod": "p"})}))})
    with pytest.raises(PodConfigError, match=r"not found.*A SuperNode answered: a pod's schema"):
        discover_pods(grid, ["p"], timeout=0.5, interval=0.05)


def _round(
    apps: dict[int, ClientApp], arrays: list[np.ndarray]
) -> tuple[PlaintextStrategy, list[Message]]:
    grid = LocalGrid(apps)
    session = PodSession(pods={n: f"pod-{n}" for n in apps}, round_timeout=5.0)
    n = len(apps)
    inner = FlowerFedAvg(min_train_nodes=n, min_available_nodes=n, fraction_evaluate=0.0)
    strategy = PlaintextStrategy(inner, session)
    sent = strategy.configure_train(1, ArrayRecord(arrays), ConfigRecord(), grid)
    return strategy, list(grid.send_and_receive(sent))


def test_a_malformed_train_reply_is_that_pod_s_failure() -> None:
    updates = make_updates(2, seed=0)
    no_count = RecordDict(
        {"arrays": ArrayRecord([np.ones(3, np.float32)]), "metrics": MetricRecord({"x": 1.0})}
    )
    apps = {1: fake_pod_app(updates, 0), 2: _app(no_count)}
    strategy, replies = _round(apps, updates.global_arrays)
    good = strategy.checked_replies(replies, "training round 1", train=True)
    assert [r.metadata.src_node_id for r in good] == [1]


def test_a_round_of_malformed_replies_fails_naming_each_pod() -> None:
    no_arrays = RecordDict({"metrics": MetricRecord({"num-examples": 5})})
    strategy, replies = _round({1: _app(no_arrays), 2: _app(no_arrays)}, [np.zeros(3)])
    with pytest.raises(TrainingError, match=r"failed on every pod") as info:
        strategy.aggregate_train(1, replies)
    message = str(info.value)
    assert "pod 'pod-1'" in message and "pod 'pod-2'" in message
    assert "no 'arrays' record" in message
