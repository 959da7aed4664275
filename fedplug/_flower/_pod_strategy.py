"""The strategy an aggregator runs: an inner weighted-mean strategy, over a run's pods.

Like Flower's DP wrappers, this composes rather than subclasses: the inner strategy
(FedAvg, FedAdam, ...) keeps sampling and its server-side step; :class:`PodStrategy` adds
what every fedplug run needs (the task's pods named in each message, replies checked,
refusals surfaced, progress reported, a history); :class:`PlaintextStrategy` hands the
replies to the inner strategy's weighted mean, and the secure strategy replaces that
mean by a secure sum.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from . import _wire as wire
from ._session import PodGrid, PodSession, missing_pods, raise_if_all_failed, split_replies

logger = logging.getLogger("fedplug.server")

#: ``on_round(server_round, train_metrics, evaluate_metrics)``, after each round.
RoundCallback = Callable[[int, dict[str, float], dict[str, float]], None]


def metrics_dict(record: MetricRecord | None) -> dict[str, float]:
    if record is None:
        return {}
    return {k: float(v) for k, v in record.items() if not isinstance(v, list)}


class PodStrategy(Strategy):
    """The base of what :meth:`fedplug.Aggregator.wrap` returns.

    It sends what ``inner`` configures to the run's pods only, naming them in each
    message (every pod checks the task's pods against its policy), and keeps
    :attr:`history`: one entry per round, ``{"round", "train", "evaluate"}`` (subclasses
    may add keys). Subclasses implement ``aggregate_train`` and ``aggregate_evaluate``,
    using :meth:`checked_replies` and ending each round with :meth:`record_round`.
    """

    def __init__(
        self, inner: Strategy, session: PodSession, on_round: RoundCallback | None = None
    ) -> None:
        self.inner = inner
        self.session = session
        self.on_round = on_round
        self.history: list[dict[str, Any]] = []
        self.sent: list[Message] = []
        self.train_metrics: dict[str, float] = {}

    def with_pods(self, config: ConfigRecord) -> ConfigRecord:
        return wire.with_pods(config, self.session.pod_names)

    def checked_replies(self, replies: Iterable[Message], what: str, train: bool) -> list[Message]:
        """The good replies to the messages last sent; raises on a policy refusal or when
        no pod answered well. A reply of the wrong layout counts as that pod's failure."""
        replies = list(replies)
        good, failed = split_replies(self.session, replies, what, self.sent)
        checked = []
        for reply in good:
            try:
                wire.check_plain_reply(reply, train)
            except wire.MalformedMessage as exc:
                failed[self.session.names([reply.metadata.src_node_id])[0]] = str(exc)
                continue
            checked.append(reply)
        missing = missing_pods(self.session, self.sent, replies)
        for pod, reason in failed.items():
            logger.warning("%s: pod %r failed: %s", what, pod, reason)
        for pod in missing:
            logger.warning(
                "%s: pod %r did not answer within %ss", what, pod, self.session.round_timeout
            )
        raise_if_all_failed(what, failed, missing, len(checked))
        return checked

    def record_round(self, server_round: int, evaluate: dict[str, float]) -> dict[str, Any]:
        """Append the round to :attr:`history`, report it, and return the entry."""
        entry: dict[str, Any] = {
            "round": server_round,
            "train": self.train_metrics,
            "evaluate": evaluate,
        }
        self.history.append(entry)
        if self.on_round is not None:
            self.on_round(server_round, self.train_metrics, evaluate)
        return entry

    # -- Strategy API ---------------------------------------------------------------------
    def summary(self) -> None:
        self.inner.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self.sent = list(
            self.inner.configure_train(
                server_round, arrays, self.with_pods(config), PodGrid(grid, self.session)
            )
        )
        return self.sent

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self.sent = list(
            self.inner.configure_evaluate(
                server_round, arrays, self.with_pods(config), PodGrid(grid, self.session)
            )
        )
        return self.sent


class PlaintextStrategy(PodStrategy):
    """Plaintext aggregation: the pods' replies go to the inner strategy's weighted mean."""

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        good = self.checked_replies(replies, f"training round {server_round}", train=True)
        arrays, metrics = self.inner.aggregate_train(server_round, good)
        self.train_metrics = metrics_dict(metrics)
        return arrays, metrics

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        replies = list(replies)
        metrics = None
        if self.sent:
            good = self.checked_replies(replies, f"evaluation round {server_round}", train=False)
            metrics = self.inner.aggregate_evaluate(server_round, good)
        self.record_round(server_round, metrics_dict(metrics))
        return metrics
