"""The secure-aggregation protocol as pure state machines (no transport, no Flower).

Per run, once: every pod publishes a signed :class:`KeyBundle` with a fresh exchange key and
nonce (``PodProtocol.start_run``), the server collects them into a roster and sends it back,
and every pod checks the roster against its own policy and derives a pair secret with every
other pod (``accept_roster``); masks are bound to a session id that mixes every pod's nonce.
Per exchange: each pod masks its encoded update over the exchange's participants (``mask``)
and the server adds the uploads (``ServerProtocol.sum_masked``); pairwise masks cancel, only
the sum remains. If pods drop, the round is redone once (attempt 1) over the survivors with
fresh masks.

What an active server cannot make a pod do (each a refusal here, whatever it sends): set up
keys twice in a run, accept a peer it cannot authenticate (with ``require_pins``), mask over
fewer than two pods, re-run an exchange, or take part in a sum over a pod set that grows back
after shrinking (participants only ever shrink: the roster minus the pods that dropped out).
"""

from __future__ import annotations

import secrets as _secrets
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedplug._errors import PolicyRefusal, SecureAggregationError
from fedplug._validation import int_at_least, positive_int
from fedplug.secagg._field import Q, as_field, check_prime, sum_packed, sum_vectors
from fedplug.secagg._graph import GRAPHS, harary_degree, neighbours
from fedplug.secagg._keys import (
    IdentityKey,
    KeyBundle,
    b64decode_key,
    bundle_is_valid,
    exchange_public_bytes,
    new_exchange_key,
    new_nonce,
    session_id,
)
from fedplug.secagg._masks import apply_masks, pair_secret, participants_digest
from fedplug.secagg._recovery import (
    exchange_pair_key,
    open_sealed,
    receipt_is_valid,
    receipt_payload,
    seal,
)
from fedplug.secagg._shamir import SEED_BYTES, combine, share_from_bytes, share_to_bytes, split

MAX_ATTEMPT = 0
"""Every exchange is masked once (attempt 0): no round is ever re-run over a subset of its
pods (a dropout is recovered by :meth:`PodProtocol.unmask`, or ends the run)."""

SECURE_MIN_PODS = 2
"""No secure sum is ever taken over fewer pods, whatever a pod's or the server's config says:
a "sum" over one pod is its update."""


def majority(roster_size: int) -> int:
    """The default recovery threshold: a majority of the run's roster."""
    return roster_size // 2 + 1


@dataclass(frozen=True)
class Unmasking:
    """A survivor's answer to the unmask request of one exchange.

    ``shares``: its share of the self-mask seed of every survivor (itself included);
    ``pair_keys``: its exchange pair key with every participant that dropped out. Never
    both for one pod.
    """

    shares: dict[str, bytes]
    pair_keys: dict[str, bytes]


def _as_bundle(item: KeyBundle | Mapping[str, object]) -> KeyBundle:
    return item if isinstance(item, KeyBundle) else KeyBundle.from_dict(item)


def _min_pods(value: object) -> int:
    return positive_int(
        value, name="min_pods", error=SecureAggregationError, fix="fix min_pods in the pod policy"
    )


def _names(pods: Iterable[str]) -> list[str]:
    return sorted(set(pods))


class PodProtocol:
    """A pod's side: key setup, roster policy checks, and masking of encoded updates."""

    def __init__(
        self,
        pod: str,
        identity: IdentityKey,
        *,
        approved_pods: Collection[str] | None,
        pinned_keys: Mapping[str, bytes | str] | None,
        min_pods: int,
        q: int = Q,
        require_pins: bool = False,
        min_threshold: int = 0,
    ) -> None:
        if not isinstance(pod, str) or not pod:
            raise SecureAggregationError(f"pod name {pod!r} must be a non-empty string")
        self.pod = pod
        self.identity = identity
        self.approved_pods = None if approved_pods is None else frozenset(approved_pods)
        self.pinned_keys = {
            name: b64decode_key(key, what=f"pod {pod!r}: pinned key of pod {name!r}")
            for name, key in (pinned_keys or {}).items()
        }
        self.min_pods = max(SECURE_MIN_PODS, _min_pods(min_pods))
        self.q = check_prime(q)
        # A key bundle proves only possession of the key it carries: without a pin, anyone
        # (the server included) can present a bundle under any pod's name.
        self.require_pins = bool(require_pins)
        # The least recovery threshold this pod accepts, beyond a majority of the roster.
        self.min_threshold = int_at_least(
            min_threshold,
            0,
            name=f"pod {pod!r}: min_threshold",
            error=SecureAggregationError,
            fix="fix policy.min_threshold",
        )
        self._run_id: str | None = None
        self._session: str | None = None
        self._nonce: bytes | None = None
        self._bundle: KeyBundle | None = None
        self._exchange: X25519PrivateKey | None = None
        self._secrets: dict[str, bytes] | None = None
        self._peer_keys: dict[str, bytes] = {}
        self._active: frozenset[str] = frozenset()
        self._admitted: tuple[int, int, frozenset[str]] | None = None
        self._round = -1
        self._attempt = -1
        self._identities: dict[str, bytes] = {}
        # Dropout recovery: the exchange uploaded and not yet unmasked (its participants,
        # threshold, self-mask seed and this pod's own share of it), and the one survivor
        # set this pod committed to for it (by signing it, or by unmasking with no dropout).
        self._pending: tuple[int, frozenset[str], int, bytes, bytes] | None = None
        self._receipt: tuple[int, frozenset[str]] | None = None
        # "mask" (single masks, dropout=abort) or "upload" (double masks): fixed per run.
        self._masking: str | None = None
        self._admitted_upload: tuple[int, frozenset[str], int] | None = None
        self._graph: str | None = None  # fixed by the first double-masked exchange

    # -- run setup ---------------------------------------------------------------------------

    def start_run(self, run_id: str) -> KeyBundle:
        """Make a fresh exchange key for ``run_id`` and return the signed bundle to publish."""
        if not isinstance(run_id, str) or not run_id:
            raise SecureAggregationError(f"run_id={run_id!r} must be a non-empty string")
        if self._run_id is not None:
            # Restarting would reset the record of exchanges and attempts of this run.
            raise self._refuse(
                "setup-repeated",
                [self.pod],
                f"key setup already happened (run {self._run_id!r}); a second setup "
                f"(run {run_id!r}) would reset which exchanges were used; pod:",
                "key setup happens once per run: start a new run",
            )
        self._exchange = new_exchange_key()
        self._nonce = new_nonce()
        self._run_id = run_id
        self._bundle = KeyBundle.create(
            self.identity, self.pod, run_id, exchange_public_bytes(self._exchange), self._nonce
        )
        return self._bundle

    @property
    def run_id(self) -> str | None:
        """The run this pod started (None before start_run)."""
        return self._run_id

    @property
    def session(self) -> str | None:
        """The session id the masks are bound to (None before accept_roster)."""
        return self._session

    @property
    def active_pods(self) -> list[str]:
        """Pods this pod may still be aggregated with: the roster minus those that dropped."""
        return sorted(self._active)

    @property
    def roster_pods(self) -> list[str]:
        """Pods of the accepted roster, this one included (empty before accept_roster)."""
        return sorted([self.pod, *self._secrets]) if self._secrets is not None else []

    def export_state(self) -> dict[str, str | int | bool | bytes | list[str] | list[bytes]]:
        """This run's state as flat str/int/bool/bytes/list values (fits a Flower ConfigRecord).

        For a ClientApp rebuilt per message: keep it in ``context.state``. It holds the
        exchange PRIVATE key, so it must stay on the pod and never be sent.
        """
        if self._exchange is None or self._run_id is None or self._nonce is None:
            raise SecureAggregationError(
                f"pod {self.pod!r} has no run to export; call start_run() first"
            )
        peers = sorted(self._peer_keys)
        return {
            "run_id": self._run_id,
            "exchange_private": self._exchange.private_bytes_raw(),
            "nonce": self._nonce,
            "roster_accepted": self._secrets is not None,
            "session": self._session or "",
            "peer_pods": peers,
            "peer_keys": [self._peer_keys[p] for p in peers],
            "active": sorted(self._active),
            "round": self._round,
            "attempt": self._attempt,
            "peer_identities": [self._identities.get(p, b"") for p in peers],
            "pending": (
                []
                if self._pending is None
                else [str(self._pending[0]), *sorted(self._pending[1]), str(self._pending[2])]
            ),
            "pending_secrets": [] if self._pending is None else list(self._pending[3:]),
            "receipt": (
                [] if self._receipt is None else [str(self._receipt[0]), *sorted(self._receipt[1])]
            ),
            "graph": self._graph or "",
            "masking": self._masking or "",
        }

    def restore_state(self, state: Mapping[str, Any]) -> None:
        """Resume a run from ``export_state()`` output (same pod name and identity key)."""
        # The values are unchecked (the state is read back from outside the pod's memory):
        # the conversions below are the check, and any failure means a corrupt state.
        try:
            run_id = str(state["run_id"])
            exchange = X25519PrivateKey.from_private_bytes(bytes(state["exchange_private"]))
            nonce = bytes(state["nonce"])
            session = str(state["session"])
            peers = [str(p) for p in state["peer_pods"]]
            keys = [bytes(k) for k in state["peer_keys"]]
            accepted = bool(state["roster_accepted"])
            active = [str(p) for p in state["active"]]
            round_, attempt = int(state["round"]), int(state["attempt"])
            identities = [bytes(k) for k in state.get("peer_identities", [])]
            pending_fields = [str(v) for v in state.get("pending", [])]
            pending_secrets = [bytes(v) for v in state.get("pending_secrets", [])]
            receipt_fields = [str(v) for v in state.get("receipt", [])]
            pending = (
                (
                    int(pending_fields[0]),
                    frozenset(pending_fields[1:-1]),
                    int(pending_fields[-1]),
                    pending_secrets[0],
                    pending_secrets[1],
                )
                if pending_fields
                else None
            )
            receipt = (
                (int(receipt_fields[0]), frozenset(receipt_fields[1:])) if receipt_fields else None
            )
            graph = str(state.get("graph", "")) or None
            masking = str(state.get("masking", "")) or None
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise SecureAggregationError(
                f"pod {self.pod!r}: saved secure-aggregation state is incomplete or corrupt "
                f"({exc!r}); restart the run setup"
            ) from exc
        if len(peers) != len(keys):
            raise SecureAggregationError(
                f"pod {self.pod!r}: saved state lists {len(peers)} peers but {len(keys)} keys; "
                "restart the run setup"
            )
        self._exchange, self._run_id, self._nonce = exchange, run_id, nonce
        # Ed25519 signatures are deterministic, so this is the bundle published at start_run.
        self._bundle = KeyBundle.create(
            self.identity, self.pod, run_id, exchange_public_bytes(exchange), nonce
        )
        self._peer_keys = dict(zip(peers, keys, strict=True))
        self._secrets = (
            {p: pair_secret(exchange, k) for p, k in self._peer_keys.items()} if accepted else None
        )
        self._session = session or None
        self._active = frozenset(active)
        self._round, self._attempt = round_, attempt
        self._identities = {p: k for p, k in zip(peers, identities, strict=False) if k}
        self._pending, self._receipt, self._graph = pending, receipt, graph
        self._masking = masking

    def _refuse(self, reason: str, pods: Iterable[str], problem: str, fix: str) -> PolicyRefusal:
        pods = _names(pods)
        return PolicyRefusal(
            f"pod {self.pod!r} refuses secure aggregation ({reason}) in run {self._run_id!r}: "
            f"{problem} {pods}; {fix}",
            reason=reason,
            pods=pods,
        )

    def accept_roster(
        self, run_id: str, roster: Sequence[KeyBundle | Mapping[str, object]]
    ) -> None:
        """Check the roster against this pod's policy, then derive the pair secrets."""
        # start_run and restore_state set the bundle and the exchange key together.
        if self._bundle is None or self._exchange is None or run_id != self._run_id:
            raise SecureAggregationError(
                f"pod {self.pod!r} got a roster for run {run_id!r} but started run "
                f"{self._run_id!r}; call start_run({run_id!r}) and publish its bundle first"
            )
        if self._secrets is not None:
            raise self._refuse(
                "roster-repeated",
                [self.pod],
                "the roster of this run was already accepted; a second one would change the "
                "pair secrets mid-run; pod:",
                "a roster is sent once per run: start a new run",
            )
        bundles = [_as_bundle(b) for b in roster]
        counts = Counter(b.pod for b in bundles)
        duplicated = [name for name, n in counts.items() if n > 1]
        if duplicated:
            raise self._refuse(
                "duplicate-pod",
                duplicated,
                "the roster lists these pods more than once:",
                "each pod must publish exactly one key bundle per run; restart the run setup",
            )
        exchange_counts = Counter(b.exchange_public for b in bundles)
        shared = [b.pod for b in bundles if exchange_counts[b.exchange_public] > 1]
        if shared:
            raise self._refuse(
                "duplicate-pod",
                shared,
                "these pods present the same exchange key (a copied or reflected key):",
                "every pod must generate its own exchange key; restart the run setup",
            )
        by_pod = {b.pod: b for b in bundles}
        if by_pod.get(self.pod) != self._bundle:
            raise self._refuse(
                "own-key-missing",
                [self.pod],
                "the roster lacks this pod's own key bundle, or altered it:",
                "the server must return every bundle unchanged; restart the run setup",
            )
        others = [b for b in bundles if b.pod != self.pod]
        bad = [b.pod for b in others if not bundle_is_valid(b, run_id)]
        if bad:
            raise self._refuse(
                "bad-signature",
                bad,
                "the key bundles of these pods are not validly signed for this run:",
                "they were altered in transit or are from another run; restart the run setup",
            )
        mismatched = [
            b.pod
            for b in others
            if b.pod in self.pinned_keys and self.pinned_keys[b.pod] != b.identity_public
        ]
        if mismatched:
            raise self._refuse(
                "pinned-key-mismatch",
                mismatched,
                "these pods present an identity key other than the one pinned for them:",
                "if a pod's key really changed, update identity.pinned_keys in this pod's YAML "
                "with its new public key; otherwise someone is impersonating it",
            )
        if self.require_pins:
            unpinned = [b.pod for b in others if b.pod not in self.pinned_keys]
            if unpinned or self.approved_pods is None:
                raise self._refuse(
                    "unpinned-pod",
                    unpinned,
                    "this pod requires secure aggregation and accepts only peers it can "
                    "authenticate, but it has no pinned identity key (or no approved_pods) for:",
                    "pin each approved peer's public key under identity.pinned_keys in this "
                    "pod's YAML (`fedplug pod keys` prints the lines to paste)",
                )
        if self.approved_pods is not None:
            unapproved = [b.pod for b in others if b.pod not in self.approved_pods]
            if unapproved:
                raise self._refuse(
                    "unapproved-pod",
                    unapproved,
                    f"these pods are not in this pod's approved_pods {sorted(self.approved_pods)}:",
                    "add them to approved_pods in this pod's YAML, or run without them",
                )
        if len(bundles) < self.min_pods:
            raise self._refuse(
                "too-few-pods",
                by_pod,
                f"the roster has {len(bundles)} pod(s), fewer than this pod's "
                f"min_pods={self.min_pods}:",
                "run with more pods or lower policy.min_pods in this pod's YAML",
            )
        secrets: dict[str, bytes] = {}
        for b in others:
            try:
                secrets[b.pod] = pair_secret(self._exchange, b.exchange_public)
            except SecureAggregationError as exc:
                raise SecureAggregationError(
                    f"pod {self.pod!r}, run {run_id!r}: the exchange key of pod {b.pod!r} is "
                    f"unusable ({exc}); that pod must restart its run setup"
                ) from exc
        self._secrets = secrets
        self._peer_keys = {b.pod: b.exchange_public for b in others}
        self._identities = {b.pod: b.identity_public for b in others}
        self._session = session_id(run_id, bundles)
        self._active = frozenset(by_pod)

    # -- rounds ------------------------------------------------------------------------------

    def _index(self, name: str, value: object) -> int:
        return int_at_least(
            value,
            0,
            name=f"pod {self.pod!r}: {name}",
            error=SecureAggregationError,
            fix="the server sent a malformed request",
        )

    def _check_round(self, round_: object, attempt_: object) -> tuple[int, int]:
        round, attempt = self._index("round", round_), self._index("attempt", attempt_)
        if attempt > MAX_ATTEMPT:
            raise self._refuse(
                "replayed-round",
                [self.pod],
                f"round {round} asks for attempt {attempt}, but a pod masks each exchange "
                "once: no round is re-run over a subset of its pods; pod:",
                "a dropout is recovered by the unmask exchange, or ends the run (dropout=abort)",
            )
        if round < self._round or (round == self._round and attempt <= self._attempt):
            raise self._refuse(
                "replayed-round",
                [self.pod],
                f"(round {round}, attempt {attempt}) is not after the last one masked "
                f"(round {self._round}, attempt {self._attempt}); reusing masks would reveal "
                "update differences; pod:",
                "number rounds increasingly and redo a round at most once",
            )
        return round, attempt

    def admit(
        self, *, round: int, attempt: int, participants: Sequence[str]
    ) -> tuple[int, int, frozenset[str]]:
        """Check an exchange against this pod's policy and record it as used.

        Every check of :meth:`mask` happens here, so a caller can run them before it
        computes or keeps anything for the exchange. Once admitted, the exchange (and
        every earlier one) can never be masked again, and the pods of the run shrink to
        ``participants``.
        """
        round, attempt, members = self._check_exchange(round, attempt, participants)
        self._fix_masking("mask")
        # Recorded before anything is computed, so no failure can leave it reusable.
        self._round, self._attempt, self._active = round, attempt, members
        self._admitted = (round, attempt, members)
        return round, attempt, members

    def _check_exchange(
        self, round: int, attempt: int, participants: Sequence[str]
    ) -> tuple[int, int, frozenset[str]]:
        if self._secrets is None:
            raise SecureAggregationError(
                f"pod {self.pod!r} has no accepted roster; call start_run() and accept_roster() "
                "before masking"
            )
        round, attempt = self._check_round(round, attempt)
        names = list(participants)
        dupes = [n for n, c in Counter(names).items() if c > 1]
        if dupes:
            raise self._refuse(
                "duplicate-pod",
                dupes,
                f"round {round} lists these participants more than once:",
                "list each participant once",
            )
        members = frozenset(names)
        if self.pod not in members:
            raise SecureAggregationError(
                f"pod {self.pod!r} was asked to mask round {round} but is not among its "
                f"participants {sorted(members)}; the server must include every pod it asks"
            )
        unknown = members - set(self.roster_pods)
        if unknown:
            raise self._refuse(
                "unknown-pod",
                unknown,
                f"exchange {round} lists participants that are not in the accepted roster "
                f"{self.roster_pods}:",
                "pods join at key setup only: start a new run with them",
            )
        grown = members - self._active
        if grown:
            # A sum over a set and over that set minus one pod reveals the pod's vector.
            raise self._refuse(
                "participants-grew",
                grown,
                f"exchange {round} (attempt {attempt}) includes pods that dropped out earlier "
                "in this run; sums over different pod sets would reveal their difference; pods:",
                "the pods of a run only ever shrink (no client sampling under secure "
                "aggregation): start a new run to include them again",
            )
        if len(members) < self.min_pods:
            raise self._refuse(
                "too-few-pods",
                self._active - members,
                f"exchange {round} (attempt {attempt}) has {len(members)} participant(s), fewer "
                f"than this pod's minimum of {self.min_pods}; missing pods:",
                "wait for the missing pods, or raise policy.min_pods only as far as the "
                "federation can meet (secure aggregation never sums fewer than 2)",
            )
        return round, attempt, members

    def mask(
        self,
        values: np.ndarray,
        *,
        round: int,
        attempt: int,
        participants: Sequence[str],
        in_place: bool = False,
    ) -> np.ndarray:
        """Return ``values`` (field elements) plus this pod's pairwise masks for the round.

        For every other participant p, the mask shared with p is added if ``self.pod < p``
        and subtracted otherwise, so all masks cancel in the sum over ``participants``.
        With ``in_place`` a uint64 ``values`` is masked in its own memory (no copy). Runs
        :meth:`admit` first unless the exchange was already admitted.
        """
        if self._admitted != (round, attempt, frozenset(participants)):
            self.admit(round=round, attempt=attempt, participants=participants)
        self._admitted = None
        assert self._secrets is not None and self._session is not None
        members = frozenset(participants)
        out = as_field(values, self.q, name=f"pod {self.pod!r} encoded update")
        if not (in_place and np.may_share_memory(out, values)):
            out = out.copy()
        digest = participants_digest(members)
        apply_masks(
            out,
            [(self._secrets[p], self.pod < p) for p in sorted(members - {self.pod})],
            run_id=self._session,
            round=round,
            attempt=attempt,
            participants_digest=digest,
            q=self.q,
        )
        return out

    # -- dropout recovery: double masking, one unmask exchange ------------------------------

    def _fix_masking(self, kind: str) -> None:
        """Single masks (dropout=abort) or double masks: one kind per run."""
        if self._masking is not None and self._masking != kind:
            raise self._refuse(
                "settings-changed",
                [self.pod],
                f"the run switched from {self._masking!r} to {kind!r} masking; pod:",
                "the dropout mode is fixed for a run: start a new run",
            )
        self._masking = kind

    def _x(self, pod: str) -> int:
        """A pod's share point: its 1-based place in the roster."""
        return self.roster_pods.index(pod) + 1

    def _peers(self, graph: str, members: frozenset[str]) -> frozenset[str]:
        """The participants this pod masks with and deals shares to (its neighbours)."""
        assert self._session is not None
        return neighbours(graph, self.roster_pods, self._session)[self.pod] & members

    def _check_graph(self, graph: object) -> str:
        if graph not in GRAPHS:
            raise SecureAggregationError(
                f"pod {self.pod!r}: masking graph {graph!r} is not one of {list(GRAPHS)}"
            )
        if self._graph is not None and graph != self._graph:
            raise self._refuse(
                "settings-changed",
                [self.pod],
                f"the masking graph changed from {self._graph!r} to {graph!r} mid-run; pod:",
                "the graph is fixed for a run: start a new run",
            )
        return str(graph)

    def _check_threshold(self, threshold: object, members: frozenset[str], graph: str) -> int:
        roster = len(self.roster_pods)
        holders = roster if graph == "all" else min(roster, harary_degree(roster) + 1)
        floor = max(majority(holders), self.min_threshold)
        t = self._index("threshold", threshold)
        if t < floor:
            raise self._refuse(
                "threshold-too-low",
                [self.pod],
                f"the recovery threshold {t} is below this pod's minimum {floor} (a majority "
                "of the pods holding its shares, or policy.min_threshold); pod:",
                f"use SecureAggregator(threshold={floor}) or more",
            )
        dealt = len(self._peers(graph, members)) + 1
        if t > dealt:
            raise SecureAggregationError(
                f"pod {self.pod!r}: the recovery threshold {t} exceeds the {dealt} pods its "
                "shares go to: no self-mask could ever be recovered; lower the threshold"
            )
        return t

    def admit_upload(
        self,
        *,
        round: int,
        participants: Sequence[str],
        threshold: int,
        graph: str = "all",
    ) -> None:
        """Every check of :meth:`upload`, then the exchange recorded as used: a pod calls it
        before computing the update, so a refused exchange costs nothing."""
        round, _, members = self._check_exchange(round, 0, participants)
        graph = self._check_graph(graph)
        t = self._check_threshold(threshold, members, graph)
        self._fix_masking("upload")
        self._graph = graph
        self._round, self._attempt, self._active = round, 0, members
        self._receipt = None
        self._pending = None  # an exchange never unmasked is gone for good
        self._admitted_upload = (round, members, t)

    def upload(
        self,
        values: np.ndarray,
        *,
        round: int,
        participants: Sequence[str],
        threshold: int,
        graph: str = "all",
        in_place: bool = False,
    ) -> tuple[np.ndarray, dict[str, bytes]]:
        """Double-mask ``values`` for exchange ``round``: ``values + PRG(b) + pair masks``.

        ``b`` is a fresh self-mask seed; the result's second part is a share of ``b`` for
        every peer, sealed for it alone (the server relays them). The pair masks come from
        per-exchange pair keys. With ``graph="harary"`` the masks and shares go to this
        pod's neighbours only (see ``_graph``). Runs :meth:`admit_upload` first unless the
        exchange was already admitted.
        """
        members = frozenset(participants)
        if self._admitted_upload is None or self._admitted_upload[:2] != (round, members):
            self.admit_upload(
                round=round, participants=participants, threshold=threshold, graph=graph
            )
        assert self._admitted_upload is not None and self._graph is not None
        t = self._admitted_upload[2]
        self._admitted_upload = None
        assert self._secrets is not None and self._session is not None
        peers = self._peers(self._graph, members)
        seed = _secrets.token_bytes(SEED_BYTES)
        shares = split(seed, t, [self._x(p) for p in sorted(peers | {self.pod})])
        sealed = {
            p: seal(
                self._secrets[p],
                self._session,
                round,
                self.pod,
                p,
                share_to_bytes(shares[self._x(p)]),
            )
            for p in sorted(peers)
        }
        self._pending = (round, members, t, seed, share_to_bytes(shares[self._x(self.pod)]))
        out = as_field(values, self.q, name=f"pod {self.pod!r} encoded update")
        if not (in_place and np.may_share_memory(out, values)):
            out = out.copy()
        digest = participants_digest(members)
        masks = [(seed, True)] + [
            (exchange_pair_key(self._secrets[p], self._session, round, digest), self.pod < p)
            for p in sorted(peers)
        ]
        apply_masks(
            out,
            masks,
            run_id=self._session,
            round=round,
            attempt=0,
            participants_digest=digest,
            q=self.q,
        )
        return out, sealed

    def _check_survivors(
        self, round: object, survivors: Sequence[str]
    ) -> tuple[int, frozenset[str]]:
        """Check a survivor set of the pending exchange: a subset of its participants with
        this pod in it, no smaller than the threshold, and the one set this pod committed
        to, if it did (by signing a set, or by unmasking)."""
        round = self._index("round", round)
        if self._pending is None or self._pending[0] != round:
            raise self._refuse(
                "unmask-repeated",
                [self.pod],
                f"exchange {round} is not the exchange this pod uploaded and has not yet "
                "unmasked (an unmask is answered once per exchange); pod:",
                "the server asks each survivor once, right after the uploads",
            )
        _, members, t, _, _ = self._pending
        names = list(survivors)
        alive = frozenset(names)
        if len(alive) != len(names) or not alive <= members:
            raise self._refuse(
                "participants-grew",
                sorted(alive - members) or sorted(n for n, c in Counter(names).items() if c > 1),
                f"the survivors of exchange {round} must be distinct participants of it "
                f"{sorted(members)}; not:",
                "survivors are the participants that uploaded",
            )
        if self.pod not in alive:
            raise SecureAggregationError(
                f"pod {self.pod!r} was asked to unmask exchange {round} but is not among its "
                f"survivors {sorted(alive)}"
            )
        floor = max(t, self.min_pods)
        if len(alive) < floor:
            raise self._refuse(
                "too-few-pods",
                members - alive,
                f"exchange {round} has {len(alive)} survivor(s), fewer than the threshold "
                f"{floor}; nothing is released; missing pods:",
                "wait for the missing pods, or start a new run without them",
            )
        if self._receipt is not None and self._receipt != (round, alive):
            raise self._refuse(
                "survivors-inconsistent",
                sorted(alive ^ self._receipt[1]),
                f"this pod already took {sorted(self._receipt[1])} as the survivors of "
                f"exchange {round}; now it is told {sorted(alive)}; the pods in only one:",
                "the server must tell every pod one survivor set: start a new run",
            )
        return round, alive

    def sign_survivors(self, *, round: int, survivors: Sequence[str]) -> bytes:
        """The consistency step before an unmask with dropouts: commit to ``survivors``
        (this pod will unmask exchange ``round`` with no other set) and sign it."""
        round, alive = self._check_survivors(round, survivors)
        assert self._session is not None
        self._receipt = (round, alive)  # committed: this pod unmasks with no other set
        return self.identity.sign(receipt_payload(self._session, round, alive))

    def unmask(
        self,
        *,
        round: int,
        survivors: Sequence[str],
        sealed: Mapping[str, bytes],
        receipts: Mapping[str, bytes] | None = None,
    ) -> Unmasking:
        """Release what removes the masks of exchange ``round`` over ``survivors``, once.

        ``sealed`` holds the shares this pod's surviving peers sealed for it. For each
        survivor among its peers (and itself) this pod returns its share of that survivor's
        seed; for each peer that dropped out, its exchange pair key with it: never both for
        one pod. When anyone dropped out, ``receipts`` must hold every survivor's signature
        of this very survivor set (:meth:`sign_survivors`), so no survivor was told
        another one: otherwise a server could learn one pod's pair keys from some peers and
        its seed from others. Refuses a survivor set that is not a subset of the
        participants, lacks this pod, is smaller than the threshold or differs from the one
        this pod signed; a share relayed from a pod said to have dropped out; and a second
        unmask request.
        """
        round, alive = self._check_survivors(round, survivors)
        assert self._pending is not None and self._graph is not None
        _, members, t, seed, own_share = self._pending
        assert self._secrets is not None and self._session is not None
        if alive != members:
            receipts = receipts or {}
            unsigned = [
                p
                for p in sorted(alive - {self.pod})
                if p not in receipts
                or not receipt_is_valid(
                    self._identities.get(p, b""), receipts[p], self._session, round, alive
                )
            ]
            if unsigned:
                raise self._refuse(
                    "survivors-inconsistent",
                    unsigned,
                    f"exchange {round} lost pods {sorted(members - alive)}, and these "
                    f"survivors did not sign the survivor set {sorted(alive)}:",
                    "after a dropout, every survivor signs the survivor set first (the "
                    "server's consistency step)",
                )
        peers = self._peers(self._graph, members)
        relayed = set(sealed)
        dropped_but_relayed = sorted(relayed - alive)
        if dropped_but_relayed:
            raise self._refuse(
                "survivors-inconsistent",
                dropped_but_relayed,
                f"the server relays shares from pods it says dropped out of exchange {round}:",
                "a pod that uploaded is a survivor; the server must tell every pod the same set",
            )
        strangers = sorted(relayed - peers)
        if strangers:
            raise SecureAggregationError(
                f"pod {self.pod!r}: the unmask request of exchange {round} relays shares from "
                f"{strangers}, which deal none to this pod"
            )
        missing = sorted((alive & peers) - relayed)
        if missing:
            raise SecureAggregationError(
                f"pod {self.pod!r}: the unmask request of exchange {round} lacks the shares of "
                f"survivors {missing}; the server must relay every survivor's sealed share"
            )
        # Spent and committed before anything is released: a second request for this
        # exchange is refused, and this pod signs no other survivor set for it.
        self._pending = None
        self._receipt = (round, alive)
        shares = {self.pod: own_share}
        for p in sorted(alive & peers):
            data = open_sealed(self._secrets[p], self._session, round, p, self.pod, sealed[p])
            share_from_bytes(data)  # a field element, or an error naming nothing secret
            shares[p] = data
        digest = participants_digest(members)
        pair_keys = {
            d: exchange_pair_key(self._secrets[d], self._session, round, digest)
            for d in sorted(peers - alive)
        }
        del seed  # this pod's own seed is released only through the survivors' shares
        self._active = alive
        return Unmasking(shares=shares, pair_keys=pair_keys)


class ServerProtocol:
    """The aggregator's side: builds the roster, sums masked uploads, decides redos."""

    def __init__(self, run_id: str, *, min_pods: int, q: int = Q) -> None:
        if not isinstance(run_id, str) or not run_id:
            raise SecureAggregationError(f"run_id={run_id!r} must be a non-empty string")
        self.run_id = run_id
        self.min_pods = max(SECURE_MIN_PODS, _min_pods(min_pods))
        self.q = check_prime(q)
        self._bundles: dict[str, KeyBundle] = {}

    def collect_bundles(self, bundles: Iterable[KeyBundle | Mapping[str, object]]) -> None:
        """Add the pods' published bundles, checking signatures (pods check them again)."""
        new = [_as_bundle(b) for b in bundles]
        counts = Counter([*self._bundles, *(b.pod for b in new)])
        duplicated = sorted(name for name, n in counts.items() if n > 1)
        if duplicated:
            raise SecureAggregationError(
                f"run {self.run_id!r}: pods {duplicated} published more than one key bundle; "
                "each pod publishes exactly one per run (check for two pods with the same name)"
            )
        bad = sorted(b.pod for b in new if not bundle_is_valid(b, self.run_id))
        if bad:
            raise SecureAggregationError(
                f"run {self.run_id!r}: key bundles of pods {bad} are not validly signed for this "
                "run; restart those pods' run setup"
            )
        self._bundles.update({b.pod: b for b in new})

    @property
    def pods(self) -> list[str]:
        return sorted(self._bundles)

    def roster(self) -> list[KeyBundle]:
        """All collected bundles, sorted by pod; at least ``min_pods`` of them."""
        if len(self._bundles) < self.min_pods:
            raise SecureAggregationError(
                f"run {self.run_id!r}: only {len(self._bundles)} pod(s) {self.pods} published "
                f"key bundles, fewer than min_pods={self.min_pods}; start more pods"
            )
        return [self._bundles[name] for name in self.pods]

    def _check_known(self, participants: Iterable[str]) -> list[str]:
        names = list(participants)
        if len(set(names)) != len(names):
            dupes = sorted(n for n, c in Counter(names).items() if c > 1)
            raise SecureAggregationError(
                f"run {self.run_id!r}: participants {dupes} are listed more than once"
            )
        unknown = sorted(set(names) - set(self._bundles))
        if unknown:
            raise SecureAggregationError(
                f"run {self.run_id!r}: participants {unknown} are not in the roster "
                f"{self.pods}; pods must publish a key bundle at run setup"
            )
        return sorted(names)

    def sum_masked(
        self,
        uploads: Mapping[str, np.ndarray],
        participants: Iterable[str],
        *,
        packed_length: int | None = None,
    ) -> np.ndarray:
        """Sum of the participants' masked uploads: the sum of their encoded updates.

        With ``packed_length`` the uploads are :func:`~fedplug.secagg._field.pack`-ed words
        of that many elements: each is unpacked into one reused buffer and added, so the
        server holds two vectors however many pods upload.
        """
        names = self._check_known(participants)
        if len(names) < self.min_pods:
            raise SecureAggregationError(
                f"run {self.run_id!r}: {len(names)} participant(s) {names}, fewer than "
                f"min_pods={self.min_pods}; no sum is released over so few pods"
            )
        missing = [n for n in names if n not in uploads]
        if missing:
            raise SecureAggregationError(
                f"run {self.run_id!r}: pods {missing} did not upload; masks only cancel when "
                "every participant uploads: redo the round over survivors()"
            )
        extra = sorted(set(uploads) - set(names))
        if extra:
            raise SecureAggregationError(
                f"run {self.run_id!r}: uploads from pods {extra} that are not participants of "
                f"this round {names}; drop them (their masks do not cancel)"
            )
        if packed_length is not None:
            return self._sum_packed(uploads, names, packed_length)
        arrays = {n: as_field(uploads[n], self.q, name=f"upload of pod {n!r}") for n in names}
        shapes = {n: a.shape for n, a in arrays.items()}
        if len(set(shapes.values())) > 1:
            raise SecureAggregationError(
                f"run {self.run_id!r}: uploads have different shapes {shapes}; every pod must "
                "encode the same model arrays in the same order"
            )
        return sum_vectors([arrays[n] for n in names], self.q)

    def _sum_packed(
        self, uploads: Mapping[str, np.ndarray], names: list[str], length: int
    ) -> np.ndarray:
        return sum_packed([(f"upload of pod {n!r}", uploads[n]) for n in names], length, self.q)

    @property
    def session(self) -> str:
        """The session id the pods bound their masks to (as each pod computes it)."""
        return session_id(self.run_id, self.roster())

    def recover_sum(
        self,
        uploads: Mapping[str, np.ndarray],
        participants: Iterable[str],
        answers: Mapping[str, Unmasking],
        *,
        round: int,
        threshold: int,
        packed_length: int,
        survivors: Iterable[str] | None = None,
        graph: str = "all",
    ) -> np.ndarray:
        """The sum of the survivors' encoded updates in exchange ``round``.

        ``survivors`` are the pods told they survived (default: those in ``answers``, the
        :class:`Unmasking` replies); ``uploads`` their packed masked vectors (anything else,
        a late upload included, is left out). Each survivor's self-mask is rebuilt from
        ``threshold`` answers' shares and removed, and each dropped pod's pair masks from
        every survivor's exchange pair key with it (so with a dropout, every survivor must
        answer).
        """
        names = self._check_known(participants)
        alive = sorted(answers if survivors is None else set(survivors))
        strangers = sorted((set(alive) | set(answers)) - set(names))
        if strangers or not set(answers) <= set(alive):
            raise SecureAggregationError(
                f"run {self.run_id!r}, exchange {round}: unmask answers from pods "
                f"{sorted(answers)} for survivors {alive}, not all participants {names}"
            )
        floor = max(int(threshold), self.min_pods)
        if len(answers) < floor:
            raise SecureAggregationError(
                f"run {self.run_id!r}, exchange {round}: {len(answers)} survivor(s) "
                f"{sorted(answers)} answered, fewer than the threshold {floor}; the round "
                "cannot be unmasked"
            )
        missing = [n for n in alive if n not in uploads]
        if missing:
            raise SecureAggregationError(
                f"run {self.run_id!r}, exchange {round}: survivors {missing} have no upload"
            )
        dropped = sorted(set(names) - set(alive))
        graph_of = neighbours(graph, self.pods, self.session)
        members = set(names)
        near = {p: (graph_of[p] & members) for p in names}  # each one's masking peers
        needed = sorted({i for d in dropped for i in near[d] & set(alive)} - set(answers))
        if needed:
            raise SecureAggregationError(
                f"run {self.run_id!r}, exchange {round}: pods {dropped} dropped out and "
                f"survivors {needed} did not answer the unmask request; only they hold their "
                "pair keys with the dropped pods, so the round cannot be unmasked"
            )
        for pod, answer in answers.items():
            holds = (near[pod] | {pod}) & set(alive)
            if set(answer.shares) != holds or set(answer.pair_keys) != near[pod] - set(alive):
                raise SecureAggregationError(
                    f"run {self.run_id!r}, exchange {round}: pod {pod!r} answered shares for "
                    f"{sorted(answer.shares)} and pair keys for {sorted(answer.pair_keys)}; "
                    f"expected shares for {sorted(holds)} and pair keys for "
                    f"{sorted(near[pod] - set(alive))}"
                )
        total = sum_packed(
            [(f"upload of pod {n!r}", uploads[n]) for n in alive], packed_length, self.q
        )
        x = {name: i + 1 for i, name in enumerate(self.pods)}
        masks: list[tuple[bytes, bool]] = []
        for j in alive:
            shares = {
                x[i]: share_from_bytes(a.shares[j]) for i, a in answers.items() if j in a.shares
            }
            if len(shares) < int(threshold):
                raise SecureAggregationError(
                    f"run {self.run_id!r}, exchange {round}: {len(shares)} share(s) of pod "
                    f"{j!r}'s self-mask arrived, fewer than the threshold {threshold}"
                )
            masks.append((combine(shares, int(threshold)), False))
        for d in dropped:
            # Pod i added the mask it shares with d when i < d and subtracted it otherwise.
            masks += [(answers[i].pair_keys[d], not i < d) for i in sorted(near[d] & set(alive))]
        apply_masks(
            total,
            masks,
            run_id=self.session,
            round=round,
            attempt=0,
            participants_digest=participants_digest(names),
            q=self.q,
        )
        return total
