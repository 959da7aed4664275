"""Dropout recovery in the protocol core: double masking, sealed Shamir shares, one unmask.

Each test performs what the issue names: (a) a pod drops after uploading and the round
completes with the survivors' exact sum; (b) the server holds every upload, the dropped
pod's late one included, and every unmask answer, and the dropped pod's vector is still
hidden; (c) a server telling pods different survivor sets gains nothing and is refused;
(d) too few survivors: nothing released; (e) one exchange's shares and keys do not unmask
another.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from fedplug._errors import PolicyRefusal, SecureAggregationError
from fedplug.secagg import IdentityKey, PodProtocol, ServerProtocol
from fedplug.secagg._field import Q, pack, sub, sum_vectors
from fedplug.secagg._masks import apply_masks, participants_digest
from fedplug.secagg._protocol import Unmasking, majority
from fedplug.secagg._shamir import SHARE_PRIME, combine, split

RUN = "run-r"
LENGTH = 4096


def federation(n: int, min_threshold: int = 0) -> tuple[dict[str, PodProtocol], ServerProtocol]:
    names = [f"pod-{i}" for i in range(n)]
    pods = {
        name: PodProtocol(
            name,
            IdentityKey.generate(),
            approved_pods=None,
            pinned_keys=None,
            min_pods=2,
            min_threshold=min_threshold,
        )
        for name in names
    }
    server = ServerProtocol(RUN, min_pods=2)
    server.collect_bundles([pod.start_run(RUN) for pod in pods.values()])
    roster = [b.to_dict() for b in server.roster()]
    for pod in pods.values():
        pod.accept_roster(RUN, roster)
    return pods, server


def updates(names: Sequence[str], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: rng.integers(0, Q, size=LENGTH, dtype=np.uint64) for n in names}


def upload_all(
    pods: Mapping[str, PodProtocol],
    values: Mapping[str, np.ndarray],
    *,
    round: int,
    threshold: int,
    receipts: Mapping[str, bytes] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, bytes]]]:
    """Every pod uploads; returns the masked vectors and, per recipient, its sealed shares."""
    participants = sorted(values)
    masked, inbox = {}, {n: {} for n in participants}
    for name in participants:
        masked[name], sealed = pods[name].upload(
            values[name],
            round=round,
            participants=participants,
            threshold=threshold,
            receipts=receipts,
        )
        for recipient, data in sealed.items():
            inbox[recipient][name] = data
    return masked, inbox


def unmask_all(
    pods: Mapping[str, PodProtocol],
    inbox: Mapping[str, Mapping[str, bytes]],
    survivors: Sequence[str],
    *,
    round: int,
) -> dict[str, Unmasking]:
    """The server's unmask exchange: each survivor among ``pods`` is told ``survivors`` and
    gets the survivors' shares sealed for it."""
    return {
        name: pods[name].unmask(
            round=round,
            survivors=survivors,
            sealed={s: d for s, d in inbox[name].items() if s in survivors},
        )
        for name in survivors
        if name in pods
    }


def recover(
    server: ServerProtocol,
    masked: Mapping[str, np.ndarray],
    participants: Sequence[str],
    answers: Mapping[str, Unmasking],
    *,
    round: int,
    threshold: int,
) -> np.ndarray:
    packed = {n: pack(v.copy()) for n, v in masked.items()}
    return server.recover_sum(
        packed, participants, answers, round=round, threshold=threshold, packed_length=LENGTH
    )


def server_view_of(
    server: ServerProtocol,
    pod: str,
    upload: np.ndarray,
    participants: Sequence[str],
    answers: Mapping[str, Unmasking],
    *,
    round: int,
) -> np.ndarray:
    """``pod``'s upload minus every mask the server can compute from what it received:
    every pair key revealed with ``pod``, and its seed where enough shares were released."""
    residual = upload.copy()
    # ``pod`` added the mask it shares with a peer when pod < peer: removing it subtracts.
    masks = [(a.pair_keys[pod], not pod < n) for n, a in answers.items() if pod in a.pair_keys]
    x = {name: i + 1 for i, name in enumerate(server.pods)}
    shares = {
        x[name]: int.from_bytes(a.shares[pod]) for name, a in answers.items() if pod in a.shares
    }
    t = majority(len(server.pods))
    if len(shares) >= t:
        masks.append((combine(shares, t), False))
    apply_masks(
        residual,
        masks,
        run_id=server.session,
        round=round,
        attempt=0,
        participants_digest=participants_digest(participants),
    )
    return residual


def assert_uniform(residual: np.ndarray, secret: np.ndarray) -> None:
    """``residual`` looks like uniform field elements and nothing like ``secret``."""
    assert not np.any(residual == secret)
    offset = sub(residual, secret)  # what hides the secret: must itself be uniform
    for v in (residual, offset):
        u = v.astype(np.float64) / Q
        assert abs(u.mean() - 0.5) < 0.03 and abs(u.var() - 1 / 12) < 0.01
        bits = ((v[:, None] >> np.arange(61, dtype=np.uint64)) & np.uint64(1)).mean(axis=0)
        assert np.all(np.abs(bits - 0.5) < 0.05), bits


# -- Shamir ------------------------------------------------------------------------------------
def test_any_threshold_of_the_shares_recover_the_seed_and_fewer_do_not() -> None:
    seed = bytes(range(32))
    shares = split(seed, 3, [1, 2, 3, 4, 5])
    for subset in ([1, 2, 3], [2, 4, 5], [1, 3, 5, 4]):
        assert combine({x: shares[x] for x in subset}, 3) == seed
    with pytest.raises(SecureAggregationError, match="fewer than the threshold 3"):
        combine({1: shares[1], 2: shares[2]}, 3)
    wrong = secrets.randbelow(SHARE_PRIME)  # a share that is not the one dealt
    with pytest.raises(SecureAggregationError, match="do not combine to a seed"):
        combine({1: shares[1], 2: shares[2], 3: wrong}, 3)


def test_shares_are_fresh_each_time() -> None:
    seed = bytes(32)
    assert split(seed, 2, [1, 2])[1] != split(seed, 2, [1, 2])[1]


# -- (a) the survivors' exact sum ------------------------------------------------------------
@pytest.mark.parametrize(
    ("n", "dropped"), [(2, []), (3, []), (3, ["pod-1"]), (5, ["pod-0", "pod-3"]), (7, ["pod-6"])]
)
def test_the_round_completes_with_the_survivors_exact_sum(n: int, dropped: list[str]) -> None:
    pods, server = federation(n)
    names, t = sorted(pods), majority(n)
    values = updates(names, seed=n)
    masked, inbox = upload_all(pods, values, round=1, threshold=t)
    survivors = [p for p in names if p not in dropped]
    answers = unmask_all(pods, inbox, survivors, round=1)
    # The dropped pods' uploads reached the server (late): they are left out of the sum.
    total = recover(server, masked, names, answers, round=1, threshold=t)
    assert np.array_equal(total, sum_vectors([values[p] for p in survivors]))


def test_the_run_goes_on_over_the_survivors_with_receipts() -> None:
    pods, server = federation(4)
    names, t = sorted(pods), majority(4)
    masked, inbox = upload_all(pods, updates(names, 1), round=1, threshold=t)
    survivors = names[:3]
    answers = unmask_all(pods, inbox, survivors, round=1)
    receipts = {p: a.receipt for p, a in answers.items()}
    live = {p: pods[p] for p in survivors}
    values = updates(survivors, 2)
    masked, inbox = upload_all(live, values, round=2, threshold=t, receipts=receipts)
    answers = unmask_all(live, inbox, survivors, round=2)
    total = recover(server, masked, survivors, answers, round=2, threshold=t)
    assert np.array_equal(total, sum_vectors(list(values.values())))


# -- (b) the dropped pod stays hidden -----------------------------------------------------------
def test_a_late_upload_reveals_nothing_even_with_every_unmask_answer() -> None:
    pods, server = federation(5)
    names, t = sorted(pods), majority(5)
    values = updates(names, seed=3)
    masked, inbox = upload_all(pods, values, round=1, threshold=t)
    late = "pod-2"
    survivors = [p for p in names if p != late]
    answers = unmask_all(pods, inbox, survivors, round=1)
    assert all(late not in a.shares and late in a.pair_keys for a in answers.values())
    residual = server_view_of(server, late, masked[late], names, answers, round=1)
    assert_uniform(residual, values[late])
    # What hides it is exactly the self-mask, whose seed never left the pod.
    seed = pods[late]._pending[3]  # the pod's own memory, which the server never sees
    apply_masks(
        residual,
        [(seed, False)],
        run_id=server.session,
        round=1,
        attempt=0,
        participants_digest=participants_digest(names),
    )
    assert np.array_equal(residual, values[late])


def test_a_survivor_s_upload_is_hidden_by_the_pair_masks_it_keeps() -> None:
    pods, server = federation(3)
    names, t = sorted(pods), majority(3)
    values = updates(names, seed=4)
    masked, inbox = upload_all(pods, values, round=1, threshold=t)
    answers = unmask_all(pods, inbox, names, round=1)
    # The server learns every survivor's seed (that is the point) but no pair key.
    residual = server_view_of(server, "pod-0", masked["pod-0"], names, answers, round=1)
    assert_uniform(residual, values["pod-0"])


# -- (c) different survivor sets for different pods -------------------------------------------
def test_telling_pods_different_survivor_sets_gains_nothing_and_is_refused() -> None:
    pods, server = federation(3)
    names, t = sorted(pods), majority(3)
    values = updates(names, seed=5)
    masked, inbox = upload_all(pods, values, round=1, threshold=t)
    target = "pod-1"
    # pod-0 is told pod-1 dropped (it reveals its pair key with pod-1); pod-2 that it
    # survived (it releases its share of pod-1's seed).
    told_dropped = pods["pod-0"].unmask(
        round=1, survivors=["pod-0", "pod-2"], sealed={"pod-2": inbox["pod-0"]["pod-2"]}
    )
    told_alive = unmask_all({p: pods[p] for p in ("pod-1", "pod-2")}, inbox, names, round=1)
    answers = {"pod-0": told_dropped, **told_alive}
    residual = server_view_of(server, target, masked[target], names, answers, round=1)
    # One share of pod-1's seed from pod-2 plus pod-1's own (threshold 2 reached: the seed
    # is out) and pod-0's pair key: pod-2's pair mask still hides pod-1's update.
    assert_uniform(residual, values[target])
    # The next exchange carries receipts for two different survivor sets: refused.
    # The next exchange carries receipts for two different survivor sets: each pod refuses
    # it (over all three pods, pod-0 also refuses pod-1 back: participants only shrink).
    receipts = {p: a.receipt for p, a in answers.items()}
    both = ["pod-0", "pod-2"]
    for name, other in (("pod-0", "pod-2"), ("pod-2", "pod-0")):
        with pytest.raises(PolicyRefusal, match="survivors-inconsistent") as info:
            pods[name].upload(
                values[name], round=2, participants=both, threshold=t, receipts=receipts
            )
        assert info.value.pods == [other]


def test_a_share_relayed_from_a_pod_said_to_have_dropped_is_refused() -> None:
    pods, _ = federation(3)
    names, t = sorted(pods), majority(3)
    _, inbox = upload_all(pods, updates(names, 6), round=1, threshold=t)
    with pytest.raises(PolicyRefusal, match="survivors-inconsistent"):
        pods["pod-0"].unmask(round=1, survivors=["pod-0", "pod-2"], sealed=inbox["pod-0"])
    # Nothing was released: the pod still answers a consistent request, once.
    answer = pods["pod-0"].unmask(round=1, survivors=names, sealed=inbox["pod-0"])
    assert set(answer.shares) == set(names) and not answer.pair_keys
    with pytest.raises(PolicyRefusal, match="unmask-repeated"):
        pods["pod-0"].unmask(round=1, survivors=names, sealed=inbox["pod-0"])


def test_a_survivor_set_larger_than_the_upload_s_is_refused() -> None:
    pods, _ = federation(4)
    names, t = sorted(pods), majority(4)
    three = {p: pods[p] for p in names[:3]}
    _, inbox = upload_all(three, updates(names[:3], 7), round=1, threshold=t)
    with pytest.raises(PolicyRefusal, match="participants-grew"):
        pods["pod-0"].unmask(round=1, survivors=names, sealed=inbox["pod-0"])


# -- (d) too few survivors ---------------------------------------------------------------------
def test_fewer_survivors_than_the_threshold_release_nothing() -> None:
    pods, server = federation(5)
    names, t = sorted(pods), majority(5)  # 3
    masked, inbox = upload_all(pods, updates(names, 8), round=1, threshold=t)
    survivors = names[:2]
    for name in survivors:
        with pytest.raises(PolicyRefusal, match=r"too-few-pods.*fewer than the threshold 3"):
            pods[name].unmask(
                round=1,
                survivors=survivors,
                sealed={s: inbox[name][s] for s in survivors if s != name},
            )
    with pytest.raises(SecureAggregationError, match="fewer than the threshold 3"):
        recover(server, masked, names, {}, round=1, threshold=t)


def test_a_threshold_below_a_majority_of_the_roster_is_refused() -> None:
    pods, _ = federation(5, min_threshold=4)
    names = sorted(pods)
    with pytest.raises(PolicyRefusal, match=r"threshold-too-low.*minimum 4"):
        upload_all(pods, updates(names, 9), round=1, threshold=3)
    pods, _ = federation(5)
    with pytest.raises(PolicyRefusal, match=r"threshold-too-low.*minimum 3"):
        upload_all(pods, updates(names, 9), round=1, threshold=2)


# -- (e) one exchange's secrets do not open another ---------------------------------------------
def test_shares_and_keys_of_one_exchange_do_not_unmask_another() -> None:
    pods, server = federation(3)
    names, t = sorted(pods), majority(3)
    values1 = updates(names, 10)
    masked1, inbox1 = upload_all(pods, values1, round=1, threshold=t)
    answers1 = unmask_all(pods, inbox1, names[:2], round=1)  # pod-2 dropped in exchange 1
    # Exchange 2, as if pod-2 came back (a malicious server replaying): pod-0 and pod-1 refuse
    # (participants only shrink); and pod-2's exchange-2 upload is not opened by exchange
    # 1's revealed pair keys.
    values2 = updates(names, 11)
    masked2, _ = pods["pod-2"].upload(values2["pod-2"], round=2, participants=names, threshold=t)
    residual = server_view_of(server, "pod-2", masked2, names, answers1, round=2)
    assert_uniform(residual, values2["pod-2"])
    # The revealed exchange-1 secrets do not even open exchange 1 for another round number.
    residual1 = server_view_of(server, "pod-2", masked1["pod-2"], names, answers1, round=2)
    assert_uniform(residual1, values1["pod-2"])


def test_state_survives_export_and_restore_between_upload_and_unmask() -> None:
    pods, server = federation(3)
    names, t = sorted(pods), majority(3)
    values = updates(names, 12)
    masked, inbox = upload_all(pods, values, round=1, threshold=t)
    for name, pod in list(pods.items()):
        fresh = PodProtocol(name, pod.identity, approved_pods=None, pinned_keys=None, min_pods=2)
        fresh.restore_state(pod.export_state())
        pods[name] = fresh
    answers = unmask_all(pods, inbox, names, round=1)
    total = recover(server, masked, names, answers, round=1, threshold=t)
    assert np.array_equal(total, sum_vectors(list(values.values())))
