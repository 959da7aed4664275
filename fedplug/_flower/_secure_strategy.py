"""The server side of secure aggregation, wrapping an inner weighted-mean strategy.

The inner strategy samples pods and applies its server-side step; this wrapper replaces
the plaintext weighted mean by the decoded secure sum: it hands the inner strategy one
synthetic reply carrying the mean, whose weighted mean is itself.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedplug._errors import ConfigError, SecureAggregationError
from fedplug._validation import int_at_least, positive_int, short_value
from fedplug.secagg import FixedPointCodec, KeyBundle, Q, ServerProtocol, Unmasking, majority
from fedplug.secagg._graph import GRAPHS, harary_degree

from . import _wire as wire
from ._pod_strategy import PodStrategy, RoundCallback, metrics_dict
from ._session import PodGrid, PodSession, missing_pods, split_replies
from ._wire import SecureParams

logger = logging.getLogger("fedplug.server")


@dataclass(frozen=True)
class SecureSettings:
    """A :class:`~fedplug.SecureAggregator`'s parameters, checked: what a run uses.

    Frozen, so nothing changes them mid-run (the pods would refuse a change anyway).
    """

    prime_q: int = Q
    clip: float = 8.0
    stats_clip: float = 1e4
    max_weight: int = 1_000_000
    min_pods: int = 2
    timeout: float = 120.0
    threshold: int | None = None
    dropout: str = "recover"
    neighbours: str | None = None

    def __post_init__(self) -> None:
        def where(name: str) -> str:
            return f"SecureAggregator: {name}"

        prime = int_at_least(
            self.prime_q,
            2**31 + 1,
            name=where("prime_q"),
            fix="use a prime between 2^31 and 2^62, e.g. 2305843009213693951 (2^61 - 1)",
        )
        if prime >= 2**62:
            raise ConfigError(
                f"{where('prime_q')}={prime} is too large; use a prime between 2^31 and 2^62, "
                "e.g. 2305843009213693951 (2^61 - 1)."
            )
        for name in ("clip", "stats_clip", "timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(
                    f"{where(name)} must be a positive number, got {short_value(value)}; fix "
                    f"aggregator.params.{name}."
                )
        positive_int(
            self.max_weight, name=where("max_weight"), fix="fix aggregator.params.max_weight"
        )
        int_at_least(
            self.min_pods, 2, name=where("min_pods"), fix="no sum is released over fewer pods"
        )
        if self.threshold is not None:
            int_at_least(
                self.threshold,
                2,
                name=where("threshold"),
                fix="leave it out for a majority of the pods, or give a larger number",
            )
        if self.dropout not in wire.DROPOUT_MODES:
            raise ConfigError(
                f"{where('dropout')}={self.dropout!r} is not one of {list(wire.DROPOUT_MODES)}: "
                "'recover' survives pods dropping out (one more small exchange per round), "
                "'abort' ends the run when one does."
            )

        if self.neighbours not in (None, *GRAPHS):
            raise ConfigError(
                f"{where('neighbours')}={self.neighbours!r} is not one of {list(GRAPHS)}: "
                "'all' (the default) masks every pair of pods, 'harary' each pod with its "
                "O(log K) neighbours."
            )

    def graph_for(self, roster: int) -> str:
        """The masking graph of a run over ``roster`` pods (``"all"`` unless chosen: see
        README, Secure aggregation, Neighbours, for what ``"harary"`` does not protect)."""
        return self.neighbours or "all"

    def threshold_for(self, roster: int) -> int:
        """The recovery threshold of a run over ``roster`` pods: by default a majority of
        the pods that hold one pod's shares (all of them, or a pod and its neighbours)."""
        holders = roster if self.graph_for(roster) == "all" else harary_degree(roster) + 1
        holders = min(holders, roster)
        t = majority(holders) if self.threshold is None else int(self.threshold)
        if not majority(holders) <= t <= holders:
            raise ConfigError(
                f"SecureAggregator: threshold={t} must be between a majority of the "
                f"{holders} pods that hold one pod's shares ({majority(holders)}) and "
                f"{holders}; pods refuse a lower one."
            )
        return t


@dataclass
class SecureKeys:
    """The outcome of key setup: the run id, the signed roster, the exchange counter, and
    the pods still taking part (the roster minus those that dropped out; it only shrinks,
    as the pods themselves insist)."""

    run: str
    roster: list[dict]
    server: ServerProtocol
    seq: int = 0
    active: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if not self.active:
            self.active = {str(b["pod"]) for b in self.roster}

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


def refuse_client_sampling(strategy: Strategy) -> None:
    """Secure sums are over every pod still in the run; a sampling strategy cannot run.

    Sums over different pod sets reveal the pods in their difference, so pods refuse any
    exchange over a set that is not a subset of the previous one. A fraction of 0 skips
    that phase (Flower sends nothing): no sum, nothing to refuse.
    """
    sampled = {
        name: getattr(strategy, name)
        for name in ("fraction_train", "fraction_evaluate")
        if isinstance(getattr(strategy, name, 1.0), float) and 0.0 < getattr(strategy, name) < 1.0
    }
    if sampled:
        settings = ", ".join(f"{k}={v}" for k, v in sampled.items())
        raise ConfigError(
            f"{type(strategy).__name__} samples pods ({settings}), which secure aggregation "
            "cannot do: the pods refuse sums over changing pod sets, since two sums over "
            "different sets reveal the pods in their difference. Set "
            + " and ".join(f"{k}=1.0" for k in sampled)
            + " (strategy.params in Hydra), or use aggregator=fedavg."
        )


@dataclass(frozen=True)
class SecureSetup:
    """What :meth:`SecureAggregator.setup` returns and :meth:`SecureAggregator.wrap` takes."""

    settings: SecureSettings
    keys: SecureKeys


def run_key_setup(grid: Grid, session: PodSession, settings: SecureSettings) -> SecureKeys:
    """One exchange per run: every pod publishes a signed, fresh exchange key."""
    run = secrets.token_hex(8)
    sent = [
        Message(
            wire.setup_request(run, settings.prime_q, session.pod_names),
            dst_node_id=n,
            message_type=wire.SECAGG_SETUP,
        )
        for n in session.node_ids
    ]
    replies = list(grid.send_and_receive(sent, timeout=settings.timeout))
    good, failed = split_replies(session, replies, "secure key setup", sent)
    missing = missing_pods(session, sent, replies)
    if failed or missing:
        problems = [f"pod {p!r}: {r}" for p, r in failed.items()]
        problems += [f"pod {p!r} did not answer within {settings.timeout}s" for p in missing]
        raise SecureAggregationError(
            "secure key setup failed: " + "; ".join(problems) + ". Every pod of the task must "
            "take part in key setup; check those pods or remove them from the task."
        )
    bundles = []
    for reply in good:
        expected = session.pods[reply.metadata.src_node_id]
        try:
            bundle = KeyBundle.from_dict(wire.read_bundle_reply(reply))
        except wire.MalformedMessage as exc:
            raise SecureAggregationError(f"pod {expected!r}: {exc}") from exc
        if bundle.pod != expected:
            raise SecureAggregationError(
                f"the SuperNode serving pod {expected!r} published a key for pod "
                f"{bundle.pod!r}; refusing the run. Check that SuperNode's pod file."
            )
        bundles.append(bundle)
    server = ServerProtocol(run, min_pods=settings.min_pods, q=settings.prime_q)
    server.collect_bundles(bundles)
    return SecureKeys(run=run, roster=[b.to_dict() for b in server.roster()], server=server)


def _upload(pod: str, reply: Message) -> wire.Upload:
    try:
        return wire.read_upload(reply)
    except wire.MalformedMessage as exc:
        raise SecureAggregationError(f"pod {pod!r}: {exc}") from exc


class SecureAggregationStrategy(PodStrategy):
    """Secure aggregation: the inner strategy's weighted mean, computed from a secure sum."""

    def __init__(
        self,
        inner: Strategy,
        session: PodSession,
        settings: SecureSettings,
        keys: SecureKeys,
        on_round: RoundCallback | None = None,
    ) -> None:
        super().__init__(inner, session, on_round)
        refuse_client_sampling(inner)
        self.settings = settings
        self.keys = keys
        self.clipped_total = 0
        self._grid: Grid | None = None
        self._global: list[np.ndarray] = []
        self._params: SecureParams | None = None
        self._stats = False
        self._exchange = False  # a model's exchange: every pod weighted one

    def summary(self) -> None:
        logger.info("secure aggregation over GF(%d), wrapping:", self.settings.prime_q)
        self.inner.summary()

    # -- configure --------------------------------------------------------------------
    def _stats_clip(self, config: ConfigRecord) -> float:
        """The clip of a statistics exchange.

        The first exchange sends raw column means, of unknown magnitude: it takes the
        widest clip that still leaves 2^10 steps per unit. The second sends moments of
        order one and uses the configured ``stats_clip``.
        """
        if wire.BOUND_KEY in config:  # a model's exchange states its own bound
            return float(wire.as_float(config[wire.BOUND_KEY]))
        # The task's own JSON, not a TrainingTask: loading the aggregator must not import
        # torch (a refusal by the pods' policies comes before it).
        if not self._stats or json.loads(str(config[wire.TASK_KEY])).get("stats_unit"):
            return float(self.settings.stats_clip)
        roster = len(self.keys.roster) * int(self.settings.max_weight)
        return max(1.0, (self.settings.prime_q - 1) / 2 / roster / 2**10)

    def _secure(
        self, messages: Iterable[Message], message_type: str, stats_clip: float | None = None
    ) -> list[Message]:
        messages = list(messages)
        if not messages:  # the inner strategy skips this phase (a fraction of 0)
            self.sent = []
            return self.sent
        # Pods that dropped out earlier in the run are not asked again (they, and the
        # others, would refuse a sum over a set that grew back).
        messages = [
            m for m in messages if self.session.pods.get(m.metadata.dst_node_id) in self.keys.active
        ]
        participants = self.session.names(m.metadata.dst_node_id for m in messages)
        if set(participants) != self.keys.active:
            raise SecureAggregationError(
                f"{type(self.inner).__name__} asked only pods {sorted(participants)} of the "
                f"run's pods {sorted(self.keys.active)}; secure aggregation sums over every pod "
                "still in the run (no client sampling): set fraction_train=1.0 and "
                "fraction_evaluate=1.0."
            )
        self._params = SecureParams(
            run=self.keys.run,
            seq=self.keys.next_seq(),
            participants=sorted(participants),
            roster=self.keys.roster,
            q=self.settings.prime_q,
            clip=float(self.settings.clip),
            stats_clip=float(stats_clip or self.settings.stats_clip),
            max_weight=int(self.settings.max_weight),
            n_pods=len(self.keys.roster),
            mode=self.settings.dropout,
            threshold=self.settings.threshold_for(len(self.keys.roster)),
            graph=self.settings.graph_for(len(self.keys.roster)),
        )
        self.sent = [wire.secure_message(m, self._params, message_type) for m in messages]
        return self.sent

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._grid = grid
        self._global = arrays.to_numpy_ndarrays()
        phase = str(config.get(wire.PHASE_KEY, ""))
        self._stats = phase in (wire.PHASE_STATS, wire.PHASE_EXCHANGE)
        self._exchange = phase == wire.PHASE_EXCHANGE
        inner = self.inner.configure_train(
            server_round, arrays, self.with_pods(config), PodGrid(grid, self.session)
        )
        return self._secure(inner, wire.SECURE_TRAIN, self._stats_clip(config))

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._grid = grid
        inner = self.inner.configure_evaluate(
            server_round, arrays, self.with_pods(config), PodGrid(grid, self.session)
        )
        return self._secure(inner, wire.SECURE_EVALUATE)

    # -- aggregate --------------------------------------------------------------------
    def _secure_sum(
        self, replies: Iterable[Message], what: str
    ) -> tuple[np.ndarray, int, list[str]] | None:
        """Decode the sum of the survivors' vectors; None when unmasking cannot complete
        (the round fails, nothing of it can be combined, the next one has fresh masks)."""
        assert self._params is not None and self._grid is not None
        params = self._params
        replies = list(replies)
        good, failed = split_replies(self.session, replies, what, self.sent)
        answered = {self.session.pods[r.metadata.src_node_id]: r for r in good}
        dropped = sorted(set(params.participants) - set(answered))
        reasons = {
            p: failed.get(p, f"no answer within {self.session.round_timeout}s") for p in dropped
        }
        detail = "; ".join(f"pod {p!r}: {r}" for p, r in reasons.items())
        if dropped and params.mode == "abort":
            raise SecureAggregationError(
                f"{what}: pod(s) {dropped} dropped out ({detail}); with dropout='abort' a "
                "dropout ends the run (no round is re-run over a subset). Use "
                "dropout='recover' to go on without them."
            )
        floor = self.settings.min_pods
        if params.mode == "recover":
            floor = max(floor, params.threshold)
        if len(answered) < floor:
            raise SecureAggregationError(
                f"{what}: pod(s) {dropped} dropped out ({detail}); {len(answered)} remain, "
                f"fewer than the threshold {floor}, so nothing is unmasked and no sum is "
                "released."
            )
        uploads = {pod: _upload(pod, reply) for pod, reply in answered.items()}
        lengths = {upload.length for upload in uploads.values()}
        if len(lengths) != 1:
            raise SecureAggregationError(
                f"{what}: pods uploaded vectors of different lengths {sorted(lengths)}; every "
                "pod must encode the same model arrays and metrics."
            )
        layouts = {tuple(upload.metric_keys) for upload in uploads.values()}
        if len(layouts) != 1:
            raise SecureAggregationError(
                f"{what}: pods reported different metrics {sorted(layouts)}."
            )
        keys = list(layouts.pop())
        length = lengths.pop()
        words = {pod: upload.words for pod, upload in uploads.items()}
        if params.mode == "abort":
            total = self.keys.server.sum_masked(words, sorted(answered), packed_length=length)
        else:
            if dropped:
                logger.warning(
                    "%s: pod(s) %s dropped out (%s); unmasking the survivors' sum, the run "
                    "goes on without them",
                    what,
                    dropped,
                    detail,
                )
            recovered = self._unmask(params, uploads, words, length, what)
            if recovered is None:
                return None
            total = recovered
        codec = FixedPointCodec(
            params.stats_clip if self._stats else params.clip,
            1 if self._exchange else params.max_weight,
            params.n_pods,
            params.q,
        )
        n_total = int(codec.decode_int(total[-2]))
        clipped = int(codec.decode_int(total[-1]))
        if clipped:
            self.clipped_total += clipped
            logger.warning(
                "%s: %d value(s) were clipped to [-%g, %g] before aggregation; raise "
                "the aggregator's clip setting if this recurs.",
                what,
                clipped,
                codec.clip,
                codec.clip,
            )
        if n_total <= 0:
            raise SecureAggregationError(f"{what}: the pods reported no examples.")
        mean = codec.decode_mean(total[:-2], n_total)
        return mean, n_total, keys

    def _unmask(
        self,
        params: SecureParams,
        uploads: dict[str, wire.Upload],
        words: dict[str, np.ndarray],
        length: int,
        what: str,
    ) -> np.ndarray | None:
        """The unmask exchange: every survivor gets the survivor set and the shares sealed
        for it, and answers its shares and its pair keys with the dropped pods. After a
        dropout, a consistency exchange comes first: every survivor signs the survivor set,
        and each unmask request carries all the signatures (the pods insist)."""
        assert self._grid is not None
        survivors = sorted(uploads)
        nodes = {name: node for node, name in self.session.pods.items()}
        receipts: dict[str, bytes] = {}
        if survivors != sorted(params.participants):
            confirmed = self._consistency(params, survivors, nodes, what)
            if confirmed is None:
                return None
            receipts = confirmed
        requests = []
        for pod in survivors:
            sealed = {s: uploads[s].sealed[pod] for s in survivors if pod in uploads[s].sealed}
            requests.append(
                wire.unmask_request(params.run, params.seq, survivors, sealed, nodes[pod], receipts)
            )
        replies = list(self._grid.send_and_receive(requests, timeout=self.settings.timeout))
        good, failed = split_replies(self.session, replies, what + " (unmask)", requests)
        answers: dict[str, Unmasking] = {}
        for reply in good:
            pod = self.session.pods[reply.metadata.src_node_id]
            try:
                shares, pair_keys = wire.read_unmask_reply(reply)
            except wire.MalformedMessage as exc:
                failed[pod] = str(exc)
                continue
            answers[pod] = Unmasking(shares=shares, pair_keys=pair_keys)
        # The pods that answered go on (each was told this survivor set); the others are
        # out of the run, as are the pods that dropped before them.
        self.keys.active = set(answers)
        try:
            return self.keys.server.recover_sum(
                words,
                params.participants,
                answers,
                round=params.seq,
                threshold=params.threshold,
                packed_length=length,
                survivors=survivors,
                graph=params.graph,
            )
        except SecureAggregationError as exc:
            silent = {p: failed.get(p, "no answer") for p in survivors if p not in answers}
            if len(answers) < max(params.threshold, self.settings.min_pods):
                raise SecureAggregationError(
                    f"{what}: {exc}. Silent in the unmask exchange: {silent}."
                ) from exc
            logger.warning(
                "%s: unmasking could not complete (%s; silent: %s); this round's update is "
                "dropped and the next round starts with fresh masks",
                what,
                exc,
                silent,
            )
            return None

    def _consistency(
        self, params: SecureParams, survivors: list[str], nodes: dict[str, int], what: str
    ) -> dict[str, bytes] | None:
        """Every survivor's signature of the survivor set, or None (the round is dropped:
        a survivor did not sign, and the others are committed to a set it is in)."""
        assert self._grid is not None
        requests = [
            wire.survivors_request(params.run, params.seq, survivors, nodes[pod])
            for pod in survivors
        ]
        replies = list(self._grid.send_and_receive(requests, timeout=self.settings.timeout))
        good, failed = split_replies(self.session, replies, what + " (survivors)", requests)
        receipts: dict[str, bytes] = {}
        for reply in good:
            pod = self.session.pods[reply.metadata.src_node_id]
            try:
                receipts[pod] = wire.read_receipt_reply(reply)
            except wire.MalformedMessage as exc:
                failed[pod] = str(exc)
        if set(receipts) == set(survivors):
            return receipts
        silent = {p: failed.get(p, "no answer") for p in survivors if p not in receipts}
        self.keys.active = set(receipts)
        if len(receipts) < max(params.threshold, self.settings.min_pods):
            raise SecureAggregationError(
                f"{what}: survivors {sorted(silent)} did not confirm the survivor set "
                f"({silent}); fewer than the threshold remain, nothing is released."
            )
        logger.warning(
            "%s: survivors %s did not confirm the survivor set (%s); this round's update is "
            "dropped and the next round starts with fresh masks",
            what,
            sorted(silent),
            silent,
        )
        return None

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        summed = self._secure_sum(replies, f"training round {server_round}")
        if summed is None:
            self.train_metrics = {}
            return None, None
        mean, n_total, keys = summed
        sizes = [a.size for a in self._global]
        cut = int(sum(sizes))
        deltas = np.split(mean[:cut], np.cumsum(sizes)[:-1]) if sizes else []
        arrays = [
            (g.astype(np.float64) + d.reshape(g.shape)).astype(g.dtype)
            for g, d in zip(self._global, deltas, strict=True)
        ]
        metrics = dict(zip(keys, (float(v) for v in mean[cut:]), strict=True))
        synthetic = self._synthetic(wire.train_content(arrays, metrics, n_total))
        agg_arrays, agg_metrics = self.inner.aggregate_train(server_round, [synthetic])
        self.train_metrics = metrics_dict(agg_metrics)
        return agg_arrays, agg_metrics

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        metrics = None
        if self.sent:
            summed = self._secure_sum(replies, f"evaluation round {server_round}")
            if summed is None:
                entry = self.record_round(server_round, {})
                entry["clipped"] = self.clipped_total
                return None
            mean, n_total, keys = summed
            values = dict(zip(keys, (float(v) for v in mean), strict=True))
            synthetic = self._synthetic(wire.evaluate_content(values, n_total))
            metrics = self.inner.aggregate_evaluate(server_round, [synthetic])
        entry = self.record_round(server_round, metrics_dict(metrics))
        # The run's count of clipped values so far (training and evaluation, this round
        # included): clipping is reported, not only logged.
        entry["clipped"] = self.clipped_total
        return metrics

    def _synthetic(self, content: RecordDict) -> Message:
        """One reply carrying the secure mean, for the inner strategy's own aggregation."""
        return Message(content, reply_to=self.sent[0])
