"""The strategy fedplug runs: an inner weighted-mean strategy wrapped by an aggregation.

Like Flower's DP wrappers, this composes rather than subclasses: the inner strategy
(FedAvg, FedAdam, ...) keeps sampling and its server-side step; the wrapper adds pod
policy information, refusal handling, progress reporting, and (in the secure subclass)
replaces the plaintext mean with a secure sum.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from ._session import PodGrid, PodSession, missing_pods, raise_if_all_failed, split_replies

logger = logging.getLogger("fedplug.server")

RoundCallback = Callable[[int, dict[str, float], dict[str, float]], None]


def metrics_dict(record: MetricRecord | None) -> dict[str, float]:
    if record is None:
        return {}
    return {k: float(v) for k, v in record.items() if not isinstance(v, list)}


class AggregationStrategy(Strategy):
    """Plaintext aggregation: replies go to the inner strategy's weighted mean."""

    def __init__(
        self, inner: Strategy, session: PodSession, on_round: RoundCallback | None = None
    ) -> None:
        self.inner = inner
        self.session = session
        self.on_round = on_round
        self.history: list[dict] = []
        self._sent: list[Message] = []
        self._train_metrics: dict[str, float] = {}

    # -- helpers shared with the secure subclass --------------------------------------
    def _config(self, config: ConfigRecord) -> ConfigRecord:
        config["fedplug-pods"] = json.dumps(self.session.pod_names)
        return config

    def _checked(self, replies: Iterable[Message], what: str) -> list[Message]:
        replies = list(replies)
        good, failed = split_replies(self.session, replies, what, self._sent)
        missing = missing_pods(self.session, self._sent, replies)
        for pod, reason in failed.items():
            logger.warning("%s: pod %r failed: %s", what, pod, reason)
        for pod in missing:
            logger.warning(
                "%s: pod %r did not answer within %ss", what, pod, self.session.round_timeout
            )
        raise_if_all_failed(what, failed, missing, len(good))
        return good

    # -- Strategy API ---------------------------------------------------------------------
    def summary(self) -> None:
        self.inner.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._sent = list(
            self.inner.configure_train(
                server_round, arrays, self._config(config), PodGrid(grid, self.session)
            )
        )
        return self._sent

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        good = self._checked(replies, f"training round {server_round}")
        arrays, metrics = self.inner.aggregate_train(server_round, good)
        self._train_metrics = metrics_dict(metrics)
        return arrays, metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._sent = list(
            self.inner.configure_evaluate(
                server_round, arrays, self._config(config), PodGrid(grid, self.session)
            )
        )
        return self._sent

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        replies = list(replies)
        metrics = None
        if self._sent:
            good = self._checked(replies, f"evaluation round {server_round}")
            metrics = self.inner.aggregate_evaluate(server_round, good)
        self._record(server_round, metrics_dict(metrics))
        return metrics

    def _record(self, server_round: int, evaluate: dict[str, float]) -> None:
        entry = {"round": server_round, "train": self._train_metrics, "evaluate": evaluate}
        self.history.append(entry)
        if self.on_round is not None:
            self.on_round(server_round, self._train_metrics, evaluate)
