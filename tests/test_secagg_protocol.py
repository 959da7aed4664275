"""The secure-aggregation protocol end to end: sums, dropouts, refusals, replay protection."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from fedplug._errors import PolicyRefusal, SecureAggregationError
from fedplug.secagg import (
    FixedPointCodec,
    IdentityKey,
    KeyBundle,
    PodProtocol,
    ServerProtocol,
    exchange_public_bytes,
    new_exchange_key,
    sum_vectors,
)
from fedplug.secagg._field import Q, pack

RUN = "run-7"
CLIP = 8.0


def make_federation(
    names: Sequence[str],
    *,
    min_pods: int = 2,
    approved: Mapping[str, Sequence[str] | None] | None = None,
    pinned: Mapping[str, Mapping[str, bytes | str]] | None = None,
    setup: bool = True,
) -> tuple[dict[str, PodProtocol], ServerProtocol]:
    """Pods (with their own identity keys) and a server; with ``setup``, keys are agreed."""
    pods = {
        name: PodProtocol(
            name,
            IdentityKey.generate(),
            approved_pods=(approved or {}).get(name),
            pinned_keys=(pinned or {}).get(name),
            min_pods=min_pods,
        )
        for name in names
    }
    server = ServerProtocol(RUN, min_pods=min_pods)
    if setup:
        server.collect_bundles([pod.start_run(RUN) for pod in pods.values()])
        roster = [bundle.to_dict() for bundle in server.roster()]  # as sent over the wire
        for pod in pods.values():
            pod.accept_roster(RUN, roster)
    return pods, server


def encode(codec: FixedPointCodec, x: np.ndarray, weight: int) -> np.ndarray:
    """The vector a pod masks: its weighted update followed by its example count."""
    enc, _ = codec.encode_weighted(x, weight)
    return np.append(enc, codec.encode_count(weight))


def simulate_round(
    pods: Mapping[str, PodProtocol],
    server: ServerProtocol,
    encoded: Mapping[str, np.ndarray],
    *,
    round: int,
    attempt: int = 0,
    participants: Sequence[str] | None = None,
    packed: bool = False,
) -> np.ndarray:
    participants = sorted(participants if participants is not None else encoded)
    uploads = {
        name: pods[name].mask(
            encoded[name], round=round, attempt=attempt, participants=participants
        )
        for name in participants
    }
    if packed:  # as pods send them: packed words, unpacked by the server one at a time
        length = len(next(iter(uploads.values())))
        words = {name: pack(u) for name, u in uploads.items()}
        return server.sum_masked(words, participants, packed_length=length)
    return server.sum_masked(uploads, participants)


def random_update(rng: np.random.Generator, length: int) -> np.ndarray:
    x = rng.normal(0, 2, size=length)
    x[:4] = [CLIP, -CLIP, 0.0, -1e-12]  # extremes and signs in every update
    x[4:8] = rng.choice([CLIP, -CLIP], size=4) * rng.uniform(0.99, 1.0, size=4)
    return x


@pytest.mark.parametrize("k", range(2, 21))
def test_masked_sum_equals_plaintext_weighted_sum(k: int) -> None:
    rng = np.random.default_rng(k)
    names = [f"pod-{i:02d}" for i in range(k)]
    pods, server = make_federation(names)
    codec = FixedPointCodec(clip=CLIP, max_weight=10_000, n_pods=k)
    values = {n: random_update(rng, 64) for n in names}
    weights = {n: int(rng.integers(1, 10_001)) for n in names}
    encoded = {n: encode(codec, values[n], weights[n]) for n in names}
    total = simulate_round(pods, server, encoded, round=0)
    # Masks cancel exactly: the masked sum is the plain sum of the encodings.
    assert np.array_equal(total, sum_vectors(list(encoded.values())))
    weighted = codec.decode_sum(total[:-1])
    count = codec.decode_int(total[-1:])[0]
    plain = sum(weights[n] * np.clip(values[n], -CLIP, CLIP) for n in names)
    assert count == sum(weights.values())
    atol = sum(weights.values()) / codec.scale  # at most one unit per unit of weight
    np.testing.assert_allclose(weighted, plain, rtol=1e-6, atol=atol)
    np.testing.assert_allclose(weighted / count, plain / count, rtol=1e-6, atol=1e-9)
    # The uploads themselves do not reveal the encodings.
    upload = pods[names[0]].mask(encoded[names[0]], round=1, attempt=0, participants=names)
    assert np.count_nonzero(upload == encoded[names[0]]) <= 1
    # The streaming sum of packed uploads (what the Flower strategy uses) agrees exactly.
    assert np.array_equal(simulate_round(pods, server, encoded, round=2, packed=True), total)


def test_a_round_with_a_missing_upload_is_never_summed() -> None:
    """Single-masked rounds (dropout="abort"): the masks cancel only over every upload, and
    a pod masks each exchange once, so no round is re-run over the survivors."""
    names = ["a", "b", "c", "d", "e"]
    pods, server = make_federation(names, min_pods=3)
    codec = FixedPointCodec(clip=CLIP, max_weight=1000, n_pods=5)
    rng = np.random.default_rng(11)
    encoded = {n: encode(codec, random_update(rng, 50), 7) for n in names}
    uploads = {n: pods[n].mask(encoded[n], round=4, attempt=0, participants=names) for n in names}
    del uploads["c"]
    with pytest.raises(SecureAggregationError, match=r"pods \['c'\] did not upload"):
        server.sum_masked(uploads, names)
    partial = sum_vectors(list(uploads.values()))
    assert not np.array_equal(partial, sum_vectors([encoded[n] for n in uploads]))
    with pytest.raises(PolicyRefusal, match="no round is re-run") as excinfo:
        pods["a"].mask(encoded["a"], round=4, attempt=1, participants=["a", "b", "d", "e"])
    _refusal(excinfo, "replayed-round", ["a"])


def test_masks_differ_between_rounds_and_participant_sets() -> None:
    names = ["a", "b", "c", "d"]
    pods, _ = make_federation(names)
    zeros = np.zeros(500, dtype=np.uint64)
    pod = pods["b"]
    uploads = [
        pod.mask(zeros, round=1, attempt=0, participants=names),
        pod.mask(zeros, round=2, attempt=0, participants=["a", "b", "c"]),
        pod.mask(zeros, round=3, attempt=0, participants=["b", "c"]),
    ]
    # Across runs too: the same pods, keys agreed again, same exchange numbers.
    again, _ = make_federation(names)
    uploads.append(again["b"].mask(zeros, round=1, attempt=0, participants=names))
    for i in range(len(uploads)):
        assert np.count_nonzero(uploads[i] == 0) <= 1
        for j in range(i):
            assert np.count_nonzero(uploads[i] == uploads[j]) <= 1


def test_a_new_run_uses_new_keys_and_resets_rounds() -> None:
    names = ["a", "b"]
    pods, server = make_federation(names)
    zeros = np.zeros(100, dtype=np.uint64)
    first = pods["a"].mask(zeros, round=0, attempt=0, participants=names)
    # A new run is a new protocol object per pod (the pod's adapter makes one per run).
    pods, server = make_federation(names)
    second = pods["a"].mask(zeros, round=0, attempt=0, participants=names)
    assert np.count_nonzero(first == second) <= 1
    other = pods["b"].mask(zeros, round=0, attempt=0, participants=names)
    assert np.array_equal(sum_vectors([second, other]), zeros)


def test_the_session_id_mixes_a_fresh_nonce_from_every_pod() -> None:
    names = ["a", "b", "c"]
    one, _ = make_federation(names)
    two, _ = make_federation(names)
    assert one["a"].session == one["b"].session == one["c"].session
    assert one["a"].session != two["a"].session  # same setup id (RUN), other nonces
    # The masks are bound to it: pods of the same names and run id never share masks.
    zeros = np.zeros(50, dtype=np.uint64)
    a1 = one["a"].mask(zeros, round=0, attempt=0, participants=names)
    a2 = two["a"].mask(zeros, round=0, attempt=0, participants=names)
    assert np.count_nonzero(a1 == a2) <= 1


def test_pinned_keys_given_as_base64_are_accepted() -> None:
    identities = {n: IdentityKey.generate() for n in ["a", "b"]}
    pods = {
        "a": PodProtocol(
            "a",
            identities["a"],
            approved_pods=["b"],
            pinned_keys={"b": identities["b"].public_b64()},
            min_pods=2,
        ),
        "b": PodProtocol(
            "b",
            identities["b"],
            approved_pods=None,
            pinned_keys={"a": identities["a"].public_bytes()},
            min_pods=2,
        ),
    }
    roster = [pod.start_run(RUN) for pod in pods.values()]
    for pod in pods.values():
        pod.accept_roster(RUN, roster)
    assert pods["a"].roster_pods == ["a", "b"]


# -- refusals ------------------------------------------------------------------------------


def _refusal(excinfo: pytest.ExceptionInfo[PolicyRefusal], reason: str, pods: list[str]) -> None:
    refusal = excinfo.value
    assert refusal.reason == reason
    assert refusal.pods == pods
    message = str(refusal)
    assert reason in message
    for pod in pods:
        assert repr(pod) in message


def _setup(names: Sequence[str], **kwargs: object) -> tuple[dict[str, PodProtocol], list]:
    pods, _ = make_federation(names, setup=False, **kwargs)  # type: ignore[arg-type]
    return pods, [pod.start_run(RUN) for pod in pods.values()]


def test_refuses_unapproved_pods() -> None:
    pods, roster = _setup(["a", "b", "c", "d"], approved={"a": ["b"]})
    with pytest.raises(PolicyRefusal, match="add them to approved_pods") as excinfo:
        pods["a"].accept_roster(RUN, roster)
    _refusal(excinfo, "unapproved-pod", ["c", "d"])
    # Pods without a list accept everyone.
    pods["b"].accept_roster(RUN, roster)


def test_refuses_a_roster_smaller_than_min_pods() -> None:
    pods, roster = _setup(["a", "b", "c"], min_pods=4)
    with pytest.raises(PolicyRefusal, match="lower policy.min_pods") as excinfo:
        pods["a"].accept_roster(RUN, roster)
    _refusal(excinfo, "too-few-pods", ["a", "b", "c"])


def test_refuses_bad_signatures() -> None:
    pods, roster = _setup(["a", "b", "c"])
    forged = dataclasses.replace(
        roster[1], exchange_public=exchange_public_bytes(new_exchange_key())
    )
    with pytest.raises(PolicyRefusal, match="not validly signed") as excinfo:
        pods["a"].accept_roster(RUN, [roster[0], forged, roster[2]])
    _refusal(excinfo, "bad-signature", ["b"])
    # A bundle signed for another run is refused the same way.
    stale = make_federation(["c"], setup=False)[0]["c"].start_run("run-6")
    with pytest.raises(PolicyRefusal) as excinfo:
        pods["a"].accept_roster(RUN, [roster[0], roster[1], stale])
    _refusal(excinfo, "bad-signature", ["c"])


def test_refuses_an_identity_key_other_than_the_pinned_one() -> None:
    impostor = IdentityKey.generate()
    pods, roster = _setup(["a", "b", "c"], pinned={"a": {"b": impostor.public_bytes()}})
    with pytest.raises(PolicyRefusal, match=r"update identity.pinned_keys") as excinfo:
        pods["a"].accept_roster(RUN, roster)
    _refusal(excinfo, "pinned-key-mismatch", ["b"])
    # A server that replaces b's bundle with one signed by its own key is caught the same way.
    real_b = IdentityKey.generate()
    pods, roster = _setup(["a", "b"], pinned={"a": {"b": real_b.public_b64()}})
    server_key = IdentityKey.generate()
    fake_b = KeyBundle.create(
        server_key, "b", RUN, exchange_public_bytes(new_exchange_key()), bytes(16)
    )
    with pytest.raises(PolicyRefusal) as excinfo:
        pods["a"].accept_roster(RUN, [roster[0], fake_b])
    _refusal(excinfo, "pinned-key-mismatch", ["b"])


def test_refuses_duplicate_pods_and_copied_exchange_keys() -> None:
    pods, roster = _setup(["a", "b", "c"])
    with pytest.raises(PolicyRefusal, match="more than once") as excinfo:
        pods["a"].accept_roster(RUN, [*roster, roster[1]])
    _refusal(excinfo, "duplicate-pod", ["b"])
    # Pod "c" (or the server) republishes a's exchange key under c's valid signature.
    reflected = KeyBundle.create(
        pods["c"].identity, "c", RUN, roster[0].exchange_public, roster[2].nonce
    )
    with pytest.raises(PolicyRefusal, match="same exchange key") as excinfo:
        pods["a"].accept_roster(RUN, [roster[0], roster[1], reflected])
    _refusal(excinfo, "duplicate-pod", ["a", "c"])


def test_refuses_a_roster_without_its_own_bundle_or_with_it_altered() -> None:
    pods, roster = _setup(["a", "b", "c"])
    with pytest.raises(PolicyRefusal, match="lacks this pod's own key bundle") as excinfo:
        pods["a"].accept_roster(RUN, roster[1:])
    _refusal(excinfo, "own-key-missing", ["a"])
    swapped = KeyBundle.create(
        pods["a"].identity, "a", RUN, exchange_public_bytes(new_exchange_key()), roster[0].nonce
    )
    with pytest.raises(PolicyRefusal) as excinfo:
        pods["a"].accept_roster(RUN, [swapped, *roster[1:]])
    _refusal(excinfo, "own-key-missing", ["a"])


def test_a_refused_roster_leaves_the_pod_unable_to_mask() -> None:
    pods, roster = _setup(["a", "b"], approved={"a": []})
    with pytest.raises(PolicyRefusal):
        pods["a"].accept_roster(RUN, roster)
    with pytest.raises(SecureAggregationError, match="no accepted roster"):
        pods["a"].mask(np.zeros(3, np.uint64), round=0, attempt=0, participants=["a", "b"])


def test_refuses_to_mask_over_fewer_than_min_pods() -> None:
    pods, _ = make_federation(["a", "b", "c", "d"], min_pods=3)
    zeros = np.zeros(10, dtype=np.uint64)
    with pytest.raises(PolicyRefusal, match="wait for the missing pods") as excinfo:
        pods["a"].mask(zeros, round=0, attempt=0, participants=["a", "c"])
    _refusal(excinfo, "too-few-pods", ["b", "d"])
    # The refusal did not use up the round.
    pods["a"].mask(zeros, round=0, attempt=0, participants=["a", "b", "c"])


def test_refuses_replayed_rounds() -> None:
    pods, _ = make_federation(["a", "b"])
    zeros = np.zeros(10, dtype=np.uint64)
    pods["a"].mask(zeros, round=3, attempt=0, participants=["a", "b"])
    for round in (3, 2, 0):
        with pytest.raises(PolicyRefusal, match="reusing masks would reveal") as excinfo:
            pods["a"].mask(zeros, round=round, attempt=0, participants=["a", "b"])
        _refusal(excinfo, "replayed-round", ["a"])
    for round in (3, 4):
        with pytest.raises(PolicyRefusal, match="no round is re-run") as excinfo:
            pods["a"].mask(zeros, round=round, attempt=1, participants=["a", "b"])
        _refusal(excinfo, "replayed-round", ["a"])


def test_refuses_a_round_that_adds_participants_back() -> None:
    pods, _ = make_federation(["a", "b", "c", "d"])
    zeros = np.zeros(10, dtype=np.uint64)
    pods["a"].mask(zeros, round=0, attempt=0, participants=["a", "b", "c"])
    with pytest.raises(PolicyRefusal, match="only ever shrink") as excinfo:
        pods["a"].mask(zeros, round=1, attempt=0, participants=["a", "b", "d"])
    _refusal(excinfo, "participants-grew", ["d"])


# -- an active server (issue 10): each attack performed, each refused ----------------------


def test_attack_a_second_key_setup_cannot_reset_the_record_of_exchanges() -> None:
    """The server re-runs setup to re-use one exchange over other pod sets."""
    names = ["a", "b", "c"]
    pods, server = make_federation(names)
    zeros = np.zeros(10, dtype=np.uint64)
    pods["a"].mask(zeros, round=1, attempt=0, participants=names)
    pods["a"].mask(zeros, round=2, attempt=0, participants=["a", "b"])
    for run in (RUN, "run-8"):  # the same setup id, or one of the server's choosing
        with pytest.raises(PolicyRefusal, match="once per run") as excinfo:
            pods["a"].start_run(run)
        _refusal(excinfo, "setup-repeated", ["a"])
    roster = [b.to_dict() for b in server.roster()]  # the same roster, sent again
    with pytest.raises(PolicyRefusal, match="already accepted") as excinfo:
        pods["a"].accept_roster(RUN, roster)
    _refusal(excinfo, "roster-repeated", ["a"])
    # Nothing was reset: the same exchange over {a,c} or {a,b} stays refused.
    for other in (["a", "c"], ["a", "b"]):
        with pytest.raises(PolicyRefusal):
            pods["a"].mask(zeros, round=2, attempt=0, participants=other)


def test_attack_an_invented_peer_is_refused_by_a_pod_that_requires_pins() -> None:
    """Without pins a bundle proves only possession of its key: the server can pose as b."""
    identities = {n: IdentityKey.generate() for n in "abc"}
    server_key = IdentityKey.generate()

    def pod(name: str, pinned: dict[str, str], approved: list[str] | None) -> PodProtocol:
        return PodProtocol(
            name,
            identities[name],
            approved_pods=approved,
            pinned_keys=pinned,
            min_pods=2,
            require_pins=True,
        )

    def invented(name: str) -> KeyBundle:
        return KeyBundle.create(
            server_key, name, RUN, exchange_public_bytes(new_exchange_key()), bytes(16)
        )

    # No pins at all; pins without approved_pods (the server invents a new name); pins
    # for only some of the approved pods.
    cases = [
        (pod("a", {}, ["b"]), "b", ["b"]),
        (pod("a", {"b": identities["b"].public_b64()}, None), "x", ["x"]),
        (pod("a", {"c": identities["c"].public_b64()}, ["b", "c"]), "b", ["b"]),
    ]
    for victim, name, unpinned in cases:
        mine = victim.start_run(RUN)
        with pytest.raises(PolicyRefusal, match="pinned_keys") as excinfo:
            victim.accept_roster(RUN, [mine, invented(name)])
        _refusal(excinfo, "unpinned-pod", unpinned)
        with pytest.raises(SecureAggregationError, match="no accepted roster"):
            victim.mask(np.zeros(3, np.uint64), round=0, attempt=0, participants=["a", name])
    # With every approved peer pinned, the invented b is a pinned-key mismatch.
    victim = pod("a", {"b": identities["b"].public_b64()}, ["b"])
    with pytest.raises(PolicyRefusal) as excinfo:
        victim.accept_roster(RUN, [victim.start_run(RUN), invented("b")])
    _refusal(excinfo, "pinned-key-mismatch", ["b"])


def test_attack_a_roster_of_one_is_refused_whatever_min_pods_says() -> None:
    """A pod alone would upload its encoding unmasked: there is nobody to mask with."""
    alone = PodProtocol(
        "a", IdentityKey.generate(), approved_pods=None, pinned_keys=None, min_pods=1
    )
    assert alone.min_pods == 2
    with pytest.raises(PolicyRefusal, match="fewer than") as excinfo:
        alone.accept_roster(RUN, [alone.start_run(RUN)])
    _refusal(excinfo, "too-few-pods", ["a"])
    with pytest.raises(SecureAggregationError, match="no accepted roster"):
        alone.mask(np.arange(5, dtype=np.uint64), round=0, attempt=0, participants=["a"])
    pods, _ = make_federation(["a", "b"], min_pods=1)
    with pytest.raises(PolicyRefusal) as excinfo:
        pods["a"].mask(np.arange(5, dtype=np.uint64), round=0, attempt=0, participants=["a"])
    _refusal(excinfo, "too-few-pods", ["b"])
    assert ServerProtocol(RUN, min_pods=1).min_pods == 2


def test_attack_sums_over_different_pod_sets_are_refused() -> None:
    """Exchange 100 over {a,b,c}, then 101 over {a,b}: c's update is the difference.

    The shrink itself is a claimed dropout, which the pods cannot tell from a real one (the
    README's threat model says so); what they refuse is every set that is not a subset of
    the last one, so a server cannot take the sums of client sampling.
    """
    names = ["a", "b", "c"]
    pods, server = make_federation(names)
    zeros = np.zeros(10, dtype=np.uint64)
    simulate_round(pods, server, {n: zeros for n in names}, round=100)
    simulate_round(pods, server, {n: zeros for n in "ab"}, round=101, participants=["a", "b"])
    for victim, other in (("a", ["a", "c"]), ("b", ["b", "c"]), ("a", names)):
        with pytest.raises(PolicyRefusal, match="dropped out earlier") as excinfo:
            pods[victim].mask(zeros, round=102, attempt=0, participants=other)
        _refusal(excinfo, "participants-grew", ["c"])
    # c was told nothing of the shrink; a and b will never again sum with it.
    assert pods["a"].active_pods == ["a", "b"] and pods["c"].active_pods == names


def test_bad_mask_requests_are_errors() -> None:
    pods, _ = make_federation(["a", "b", "c"])
    zeros = np.zeros(10, dtype=np.uint64)
    with pytest.raises(SecureAggregationError, match=r"'a' .* not among its participants"):
        pods["a"].mask(zeros, round=0, attempt=0, participants=["b", "c"])
    with pytest.raises(PolicyRefusal, match="not in the accepted roster") as excinfo:
        pods["a"].mask(zeros, round=0, attempt=0, participants=["a", "b", "x"])
    _refusal(excinfo, "unknown-pod", ["x"])
    with pytest.raises(PolicyRefusal) as excinfo:
        pods["a"].mask(zeros, round=0, attempt=0, participants=["a", "b", "b"])
    _refusal(excinfo, "duplicate-pod", ["b"])
    with pytest.raises(
        SecureAggregationError, match="round must be a non-negative integer, got -1;"
    ):
        pods["a"].mask(zeros, round=-1, attempt=0, participants=["a", "b"])
    with pytest.raises(SecureAggregationError, match="dtype float64"):
        pods["a"].mask(np.zeros(3), round=0, attempt=0, participants=["a", "b"])
    with pytest.raises(SecureAggregationError, match="roster for run 'other'"):
        pods["a"].accept_roster("other", [])


# -- server side ---------------------------------------------------------------------------


def test_server_checks_bundles_and_roster_size() -> None:
    pods, _ = make_federation(["a", "b", "c"], min_pods=3, setup=False)
    server = ServerProtocol(RUN, min_pods=3)
    bundles = [pod.start_run(RUN) for pod in pods.values()]
    server.collect_bundles(bundles[:2])
    with pytest.raises(SecureAggregationError, match=r"only 2 pod\(s\) \['a', 'b'\]"):
        server.roster()
    with pytest.raises(SecureAggregationError, match=r"pods \['b'\] published more than one"):
        server.collect_bundles([bundles[1]])
    with pytest.raises(SecureAggregationError, match=r"pods \['c'\] are not validly signed"):
        server.collect_bundles([dataclasses.replace(bundles[2], signature=bytes(64))])
    server.collect_bundles([bundles[2].to_dict()])
    assert [b.pod for b in server.roster()] == ["a", "b", "c"]


def test_server_sum_checks_packed_uploads() -> None:
    _, server = make_federation(["a", "b"])
    ok = pack(np.arange(30, dtype=np.uint64))
    with pytest.raises(SecureAggregationError, match=r"upload of pod 'b'.*packed field"):
        server.sum_masked({"a": ok, "b": ok[:-1]}, ["a", "b"], packed_length=30)
    outside = ok.copy()
    outside[0] |= np.uint64(Q)  # low 61 bits all ones: the element q itself
    with pytest.raises(SecureAggregationError, match=r"upload of pod 'b'.*outside the field"):
        server.sum_masked({"a": ok, "b": outside}, ["a", "b"], packed_length=30)
    total = server.sum_masked({"a": ok, "b": ok}, ["a", "b"], packed_length=30)
    assert np.array_equal(total, 2 * np.arange(30, dtype=np.uint64))


def test_server_sum_checks_uploads() -> None:
    _, server = make_federation(["a", "b", "c"])
    ok = np.zeros(4, dtype=np.uint64)
    with pytest.raises(SecureAggregationError, match=r"participants \['x'\] are not in the roster"):
        server.sum_masked({"a": ok, "x": ok}, ["a", "x"])
    with pytest.raises(SecureAggregationError, match=r"pods \['c'\] that are not participants"):
        server.sum_masked({"a": ok, "b": ok, "c": ok}, ["a", "b"])
    with pytest.raises(SecureAggregationError, match=r"different shapes \{'a': \(4,\), 'b': \(5,"):
        server.sum_masked({"a": ok, "b": np.zeros(5, np.uint64)}, ["a", "b"])
    with pytest.raises(SecureAggregationError, match=r"fewer than min_pods=2"):
        server.sum_masked({"a": ok}, ["a"])
    with pytest.raises(SecureAggregationError, match=r"upload of pod 'b'.*outside the field"):
        server.sum_masked({"a": ok, "b": np.full(4, 2**63, np.uint64)}, ["a", "b"])


# -- state across processes (a Flower ClientApp may be rebuilt for every message) ----------


def test_exported_state_resumes_the_run_with_replay_protection() -> None:
    names = ["a", "b", "c"]
    pods, server = make_federation(names)
    zeros = np.zeros(20, dtype=np.uint64)
    first = {n: pods[n].mask(zeros, round=0, attempt=0, participants=names) for n in names}
    state = pods["a"].export_state()
    allowed = (str, int, bool, bytes, list)
    assert all(isinstance(v, allowed) for v in state.values())
    resumed = PodProtocol("a", pods["a"].identity, approved_pods=None, pinned_keys=None, min_pods=2)
    resumed.restore_state(state)
    with pytest.raises(PolicyRefusal) as excinfo:
        resumed.mask(zeros, round=0, attempt=0, participants=names)
    _refusal(excinfo, "replayed-round", ["a"])
    assert server.sum_masked(first, names).tolist() == [0] * 20
    uploads = {"a": resumed.mask(zeros, round=1, attempt=0, participants=names)}
    uploads.update({n: pods[n].mask(zeros, round=1, attempt=0, participants=names) for n in "bc"})
    assert server.sum_masked(uploads, names).tolist() == [0] * 20
    # The pods that dropped stay out, and no exchange is masked twice, across restores.
    state = resumed.export_state()
    resumed = PodProtocol("a", pods["a"].identity, approved_pods=None, pinned_keys=None, min_pods=2)
    resumed.restore_state(state)
    resumed.mask(zeros, round=2, attempt=0, participants=["a", "b"])
    resumed_again = PodProtocol(
        "a", pods["a"].identity, approved_pods=None, pinned_keys=None, min_pods=2
    )
    resumed_again.restore_state(resumed.export_state())
    with pytest.raises(PolicyRefusal) as excinfo:
        resumed_again.mask(zeros, round=2, attempt=0, participants=["a", "b"])
    _refusal(excinfo, "replayed-round", ["a"])
    with pytest.raises(PolicyRefusal) as excinfo:
        resumed_again.mask(zeros, round=3, attempt=0, participants=names)
    _refusal(excinfo, "participants-grew", ["c"])
    with pytest.raises(PolicyRefusal) as excinfo:
        resumed_again.start_run("run-9")
    _refusal(excinfo, "setup-repeated", ["a"])
    assert resumed_again.roster_pods == names and resumed_again.session == pods["b"].session


def test_state_before_the_roster_and_corrupt_state() -> None:
    pods, roster = _setup(["a", "b"])
    state = pods["a"].export_state()
    assert state["roster_accepted"] is False
    resumed = PodProtocol("a", pods["a"].identity, approved_pods=None, pinned_keys=None, min_pods=2)
    resumed.restore_state(state)
    resumed.accept_roster(RUN, roster)  # its own bundle is recognised after the restore
    with pytest.raises(SecureAggregationError, match="corrupt.*restart the run setup"):
        resumed.restore_state({**state, "exchange_private": b"short"})
    with pytest.raises(SecureAggregationError, match="no run to export"):
        PodProtocol(
            "z", IdentityKey.generate(), approved_pods=None, pinned_keys=None, min_pods=1
        ).export_state()


def test_masking_in_place_writes_the_callers_array_and_still_cancels() -> None:
    names = ["a", "b", "c"]
    pods, server = make_federation(names)
    encoded = {n: np.arange(40, dtype=np.uint64) * np.uint64(i + 1) for i, n in enumerate(names)}
    mine = encoded["a"].copy()
    masked = pods["a"].mask(mine, round=0, attempt=0, participants=names, in_place=True)
    assert masked is mine or np.shares_memory(masked, mine)
    assert not np.array_equal(mine, encoded["a"])
    uploads = {"a": masked}
    for n in ["b", "c"]:
        uploads[n] = pods[n].mask(encoded[n], round=0, attempt=0, participants=names)
        assert not np.shares_memory(uploads[n], encoded[n])  # the default copies
    total = server.sum_masked(uploads, names)
    assert np.array_equal(total, sum_vectors(list(encoded.values())))
