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
    graph: str = "all",
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
            graph=graph,
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
    gets the survivors' shares sealed for it; after a dropout (``survivors`` not every pod
    that got shares), the consistency step first: every survivor signs the set."""
    receipts = None
    if set(survivors) != set(inbox):
        receipts = {
            name: pods[name].sign_survivors(round=round, survivors=survivors)
            for name in survivors
            if name in pods
        }
    return {
        name: pods[name].unmask(
            round=round,
            survivors=survivors,
            sealed={s: d for s, d in inbox[name].items() if s in survivors},
            receipts=receipts,
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
    graph: str = "all",
) -> np.ndarray:
    packed = {n: pack(v.copy()) for n, v in masked.items()}
    return server.recover_sum(
        packed,
        participants,
        answers,
        round=round,
        threshold=threshold,
        packed_length=LENGTH,
        graph=graph,
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
    # Its pair keys come from its peers' answers and from its own (if it answered).
    keys = {n: a.pair_keys[pod] for n, a in answers.items() if pod in a.pair_keys}
    if pod in answers:
        keys.update(answers[pod].pair_keys)
    masks = [(k, not pod < n) for n, k in keys.items()]
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


def test_the_run_goes_on_over_the_survivors() -> None:
    pods, server = federation(4)
    names, t = sorted(pods), majority(4)
    masked, inbox = upload_all(pods, updates(names, 1), round=1, threshold=t)
    survivors = names[:3]
    unmask_all(pods, inbox, survivors, round=1)
    live = {p: pods[p] for p in survivors}
    values = updates(survivors, 2)
    masked, inbox = upload_all(live, values, round=2, threshold=t)
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
def test_a_server_telling_pods_different_survivor_sets_gets_no_pod_in_the_clear() -> None:
    """(c) The server tells the target p that peers S dropped (p reveals its pair keys with
    S and its own share), S that p survived (shares of p's seed) and D that p dropped
    (their pair keys with p): all three would put p's update in the clear. After a dropout
    a pod unmasks only with every survivor's signature of its very set, and each pod signs
    one set per exchange: D, signing p's set, commit to p being alive, and refuse the set
    without p. p's pair keys with D never come out; p's update stays masked."""
    pods, server = federation(5)
    names, t = sorted(pods), majority(5)
    values = updates(names, 5)
    masked, inbox = upload_all(pods, values, round=1, threshold=t)
    p, S, D = "pod-0", ["pod-1", "pod-2"], ["pod-3", "pod-4"]
    told_p = sorted([p, *D])
    receipts = {q: pods[q].sign_survivors(round=1, survivors=told_p) for q in told_p}
    sealed = {s: x for s, x in inbox[p].items() if s in told_p}
    answers = {p: pods[p].unmask(round=1, survivors=told_p, sealed=sealed, receipts=receipts)}
    assert set(answers[p].pair_keys) == set(S)
    answers.update(unmask_all({s: pods[s] for s in S}, inbox, names, round=1))  # no dropout
    without_p = sorted([*S, *D])
    for d in D:
        with pytest.raises(PolicyRefusal, match="survivors-inconsistent"):
            pods[d].sign_survivors(round=1, survivors=without_p)
        with pytest.raises(PolicyRefusal, match="survivors-inconsistent"):
            pods[d].unmask(round=1, survivors=without_p, sealed={}, receipts={})
    residual = server_view_of(server, p, masked[p], names, answers, round=1)
    assert_uniform(residual, values[p])


def test_the_reviewers_split_attack_now_fails() -> None:
    """The attack a review found against the design without a consistency step, replayed."""
    pods, server = federation(5)
    names, t = sorted(pods), majority(5)
    values = updates(names, 7)
    masked, inbox = upload_all(pods, values, round=1, threshold=t)
    p, S, D = "pod-0", ["pod-1", "pod-2"], ["pod-3", "pod-4"]
    answers: dict[str, Unmasking] = {}
    refused = 0
    for pod, told in [(p, [p, *D]), *((s, names) for s in S), *((d, [*S, *D]) for d in D)]:
        told = sorted(told)
        try:
            receipts = {q: pods[q].sign_survivors(round=1, survivors=told) for q in told}
            sealed = {s: x for s, x in inbox[pod].items() if s in told}
            answers[pod] = pods[pod].unmask(
                round=1, survivors=told, sealed=sealed, receipts=receipts
            )
        except PolicyRefusal as exc:
            assert exc.reason in ("survivors-inconsistent", "unmask-repeated")
            refused += 1
    assert refused >= 1
    residual = server_view_of(server, p, masked[p], names, answers, round=1)
    assert_uniform(residual, values[p])


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


# -- Harary graphs: O(log K) peers per pod ------------------------------------------------------
def test_the_harary_graph_is_symmetric_of_log_degree_and_fixed_by_the_session() -> None:
    from fedplug.secagg._graph import harary_degree, neighbours

    pods = [f"p{i:03d}" for i in range(100)]
    graph = neighbours("harary", pods, "session-1")
    assert harary_degree(100) == 14
    assert all(len(peers) == 14 and p not in peers for p, peers in graph.items())
    assert all(a in graph[b] for a in graph for b in graph[a])
    assert neighbours("harary", list(reversed(pods)), "session-1") == graph
    assert neighbours("harary", pods, "session-2") != graph  # the session orders the pods
    small = neighbours("harary", pods[:6], "s")  # degree >= K - 1: everyone
    assert small == neighbours("all", pods[:6], "s")


@pytest.mark.parametrize("dropped", [[], ["pod-3"], ["pod-0", "pod-7", "pod-15"]])
def test_harary_rounds_give_the_survivors_exact_sum(dropped: list[str]) -> None:
    from fedplug.secagg._graph import harary_degree

    pods, server = federation(20)
    names = sorted(pods)
    t = majority(harary_degree(20) + 1)  # a majority of the pods holding one pod's shares
    values = updates(names, seed=20)
    masked, inbox = upload_all(pods, values, round=1, threshold=t, graph="harary")
    assert all(len(box) == harary_degree(20) for box in inbox.values())  # shares: peers only
    survivors = [p for p in names if p not in dropped]
    assert len(survivors) == 20 - len(dropped)
    answers = unmask_all(pods, inbox, survivors, round=1)
    total = recover(server, masked, names, answers, round=1, threshold=t, graph="harary")
    assert np.array_equal(total, sum_vectors([values[p] for p in survivors]))


def test_under_harary_a_late_upload_stays_hidden() -> None:
    from fedplug.secagg._graph import harary_degree

    pods, server = federation(20)
    names = sorted(pods)
    t = majority(harary_degree(20) + 1)
    values = updates(names, seed=21)
    masked, inbox = upload_all(pods, values, round=1, threshold=t, graph="harary")
    late = "pod-5"
    answers = unmask_all(pods, inbox, [p for p in names if p != late], round=1)
    residual = server_view_of(server, late, masked[late], names, answers, round=1)
    assert_uniform(residual, values[late])


def test_the_graph_and_its_threshold_floor_are_the_pods_to_check() -> None:
    from fedplug.secagg._graph import harary_degree

    pods, _ = federation(20)
    names = sorted(pods)
    low = majority(harary_degree(20) + 1) - 1
    with pytest.raises(PolicyRefusal, match="threshold-too-low"):
        upload_all(pods, updates(names, 22), round=1, threshold=low, graph="harary")
    pods, _ = federation(20)
    t = majority(harary_degree(20) + 1)
    masked, inbox = upload_all(pods, updates(names, 23), round=1, threshold=t, graph="harary")
    unmask_all(pods, inbox, names, round=1)
    with pytest.raises(PolicyRefusal, match="settings-changed"):
        upload_all(pods, updates(names, 24), round=2, threshold=11)


def test_single_and_double_masking_do_not_mix_in_a_run() -> None:
    """A review found that at the core, an abort-style exchange (mask) between a recover
    exchange and its unmask could grow the pod set back. The masking kind is fixed per run."""
    pods, _ = federation(3)
    names, t = sorted(pods), majority(3)
    upload_all(pods, updates(names, 30), round=1, threshold=t)
    with pytest.raises(PolicyRefusal, match="settings-changed"):
        pods["pod-0"].mask(np.zeros(8, dtype=np.uint64), round=2, attempt=0, participants=names)
    pods, _ = federation(3)
    pods["pod-0"].mask(np.zeros(8, dtype=np.uint64), round=1, attempt=0, participants=names)
    with pytest.raises(PolicyRefusal, match="settings-changed"):
        pods["pod-0"].upload(updates(names, 31)["pod-0"], round=2, participants=names, threshold=t)
