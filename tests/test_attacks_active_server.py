"""An active server against the real pod ClientApp (issue 10, items 2, 3, 4 and 7).

The server here is the test: it sends whatever messages it likes to pods that require
secure aggregation, approve and pin each other, as the README's Deploy section sets them
up. Each attack that worked before this issue is performed and shown to fail.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
from fed_harness import make_grid, make_plan
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict

from fedplug import SecureAggregator
from fedplug._flower import LocalGrid
from fedplug._flower import _wire as wire
from fedplug._flower._secure_strategy import SecureKeys, run_key_setup
from fedplug._flower._session import PodSession
from fedplug._flower._wire import SecureParams
from fedplug.secagg import IdentityKey, KeyBundle, exchange_public_bytes, new_exchange_key

SECURE = {"policy": {"require_secure_aggregation": True, "min_pods": 2}}


def _secure_pods(fed_pods, n: int = 3, **extra: dict) -> list:  # noqa: ANN001
    names = [f"pod-{chr(ord('a') + i)}" for i in range(n)]
    policies = {name: {**SECURE, **extra.get(name, {})} for name in names}
    return fed_pods(n, rows=120, policies=policies)


def _setup(grid: LocalGrid, n: int) -> tuple[PodSession, SecureKeys]:
    session = PodSession(pods={i + 1: f"pod-{chr(ord('a') + i)}" for i in range(n)})
    return session, run_key_setup(grid, session, SecureAggregator().settings())


def _exchange(  # noqa: ANN202
    grid,  # noqa: ANN001
    plan,  # noqa: ANN001
    keys,  # noqa: ANN001
    node: int,
    seq: int,
    participants,  # noqa: ANN001
    roster=None,  # noqa: ANN001
    max_weight: int = 10**6,
):
    """One secure statistics exchange (cheap: the pod sums its feature moments), single-
    masked (dropout="abort") so that one message is a whole exchange."""
    params = SecureParams(
        run=keys.run,
        seq=seq,
        participants=sorted(participants),
        roster=roster if roster is not None else keys.roster,
        q=2**61 - 1,
        clip=8.0,
        stats_clip=1e4,
        max_weight=max_weight,
        n_pods=len(keys.roster),
        mode="abort",
    )
    config = ConfigRecord(
        {
            wire.TASK_KEY: plan.task.to_json(),
            wire.PHASE_KEY: wire.PHASE_STATS,
            wire.PODS_KEY: json.dumps(sorted(participants)),
        }
    )
    content = RecordDict(
        {
            "arrays": ArrayRecord([np.zeros(len(plan.task.continuous()))]),
            "config": config,
            wire.SECURE_KEY: params.to_record(),
        }
    )
    (reply,) = grid.send_and_receive(
        [Message(content, dst_node_id=node, message_type=wire.SECURE_TRAIN)]
    )
    return reply


def _refused(reply: Message, reason: str) -> None:
    assert reply.has_error(), "the pod answered; it should have refused"
    assert reply.error.code == wire.POLICY_REFUSAL, reply.error.reason
    assert json.loads(reply.error.reason)["reason"] == reason, reply.error.reason


def test_a_second_key_setup_in_a_run_is_refused_and_resets_nothing(fed_pods) -> None:
    """Item 2: setup again, then one exchange again over {a,b}, {a,c}."""
    pods = _secure_pods(fed_pods)
    grid, plan = make_grid(pods), make_plan(pods, SecureAggregator())
    session, keys = _setup(grid, 3)
    assert not _exchange(grid, plan, keys, 1, 1, ["pod-a", "pod-b", "pod-c"]).has_error()
    assert not _exchange(grid, plan, keys, 1, 2, ["pod-a", "pod-b"]).has_error()
    setup = Message(
        RecordDict(
            {
                "config": ConfigRecord(
                    {"run": keys.run, wire.PODS_KEY: json.dumps(session.pod_names)}
                )
            }
        ),
        dst_node_id=1,
        message_type=wire.SECAGG_SETUP,
    )
    for run in (keys.run, "a-run-id-of-the-servers-choosing"):
        setup.content["config"]["run"] = run
        (reply,) = grid.send_and_receive([setup])
        _refused(reply, "setup-repeated")
    for other in (["pod-a", "pod-c"], ["pod-a", "pod-b"]):
        reply = _exchange(grid, plan, keys, 1, 2, other)
        assert reply.has_error() and reply.error.code == wire.POLICY_REFUSAL


def test_an_invented_peer_is_refused(fed_pods) -> None:
    """Item 3: the server adds a bundle of its own under a new name, or under pod-b's."""
    pods = _secure_pods(fed_pods, 2)
    grid, plan = make_grid(pods), make_plan(pods, SecureAggregator())
    _, keys = _setup(grid, 2)
    server_key = IdentityKey.generate()
    for name, reason in (("pod-x", "unpinned-pod"), ("pod-b", "pinned-key-mismatch")):
        fake = KeyBundle.create(
            server_key, name, keys.run, exchange_public_bytes(new_exchange_key()), bytes(16)
        ).to_dict()
        roster = [b for b in keys.roster if b["pod"] != name and b["pod"] == "pod-a"] + [fake]
        reply = _exchange(grid, plan, keys, 1, 1, ["pod-a", name], roster=roster)
        _refused(reply, reason)


def test_an_unpinned_approved_peer_is_refused_at_load(fed_pods) -> None:
    """Item 3: a secure pod whose approved peer is not pinned never starts."""
    import pytest

    from fedplug import PodConfigError
    from fedplug.data import Pod

    pods = _secure_pods(fed_pods, 2)
    import yaml

    config = yaml.safe_load(pods[0].read_text())
    config["identity"]["pinned_keys"] = {}
    pods[0].write_text(yaml.safe_dump(config))
    with pytest.raises(PodConfigError, match=r"no key for approved pod\(s\) 'pod-b'.*pod keys"):
        Pod.from_yaml(pods[0]).check()


def test_a_roster_of_one_is_refused_whatever_min_pods_says(fed_pods) -> None:
    """Item 4: a pod with min_pods 1 would otherwise upload its encoding unmasked."""
    pods = fed_pods(2, rows=120, policies={"pod-a": {"policy": {"min_pods": 1}}})
    grid, plan = make_grid(pods), make_plan(pods, SecureAggregator())
    _, keys = _setup(grid, 2)
    alone = [b for b in keys.roster if b["pod"] == "pod-a"]
    reply = _exchange(grid, plan, keys, 1, 1, ["pod-a"], roster=alone)
    _refused(reply, "too-few-pods")


def test_sums_over_different_pod_sets_are_refused(fed_pods) -> None:
    """Item 7: exchange 100 over {a,b,c}, 101 over {a,b}, then {a,c} or {a,b,c} again.

    The shrink from {a,b,c} to {a,b} is what a real dropout looks like, so pods accept it
    (the README's threat model lists it as what an active server can still do); every set
    that is not a subset of the last one, as client sampling would ask, is refused.
    """
    pods = _secure_pods(fed_pods)
    grid, plan = make_grid(pods), make_plan(pods, SecureAggregator())
    _, keys = _setup(grid, 3)
    everyone = ["pod-a", "pod-b", "pod-c"]
    for node in (1, 2, 3):
        assert not _exchange(grid, plan, keys, node, 100, everyone).has_error()
    for node in (1, 2):
        assert not _exchange(grid, plan, keys, node, 101, ["pod-a", "pod-b"]).has_error()
    _refused(_exchange(grid, plan, keys, 1, 102, ["pod-a", "pod-c"]), "participants-grew")
    _refused(_exchange(grid, plan, keys, 2, 102, everyone), "participants-grew")
    # The refusals used nothing up: the set that only shrank is still served.
    assert not _exchange(grid, plan, keys, 1, 103, ["pod-a", "pod-b"]).has_error()


def test_params_of_the_secure_record_round_trip() -> None:
    params = SecureParams(
        "r", 1, ["a", "b"], [], 2**61 - 1, 8.0, 1e4, 10, 2, "recover", 3, "harary"
    )
    assert SecureParams.from_record(params.to_record()) == params
    assert dataclasses.replace(params, seq=2).seq == 2


def test_max_weight_cannot_be_varied_to_bisect_a_pods_count(fed_pods) -> None:
    """Item 5: "does it encode under max_weight=m?" for m = 512, 256, ... is the count."""
    pods = _secure_pods(fed_pods, 2)
    grid, plan = make_grid(pods), make_plan(pods, SecureAggregator())
    _, keys = _setup(grid, 2)
    both = ["pod-a", "pod-b"]
    assert not _exchange(grid, plan, keys, 1, 1, both, max_weight=1024).has_error()
    for seq, guess in enumerate((512, 256, 128, 10**6), start=2):
        _refused(_exchange(grid, plan, keys, 1, seq, both, max_weight=guess), "settings-changed")
