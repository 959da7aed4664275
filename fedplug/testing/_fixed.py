"""Fake pods that answer with fixed updates, and one-call rounds over a LocalGrid.

A fake pod adds its fixed delta to the arrays it receives and reports a fixed number of
examples and fixed metrics, so every expected aggregate is known in closed form.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp.strategy import Strategy

from fedplug._flower import LocalGrid

T = TypeVar("T")

#: Seconds a strategy call may take before the kit gives up on it (Flower strategies
#: wait without a timeout for more nodes than exist).
CALL_TIMEOUT = 10.0


@dataclass(frozen=True)
class FixedUpdates:
    """One round's worth of pod answers, known in advance."""

    global_arrays: list[np.ndarray]
    deltas: list[list[np.ndarray]]  # per pod, per array (float64)
    weights: list[int]  # num-examples per pod
    train_loss: list[float]
    eval_loss: list[float]
    eval_accuracy: list[float]

    @property
    def n_pods(self) -> int:
        return len(self.weights)

    def pod_arrays(self, pod: int, received: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [
            (np.asarray(r, np.float64) + d).astype(np.asarray(r).dtype)
            for r, d in zip(received, self.deltas[pod], strict=True)
        ]

    def weighted(self, values: Sequence[float] | Sequence[np.ndarray]) -> Any:
        w = np.asarray(self.weights, np.float64)
        return (
            sum(wi * np.asarray(v, np.float64) for wi, v in zip(w, values, strict=True)) / w.sum()
        )

    def mean_delta(self) -> list[np.ndarray]:
        return [self.weighted([d[i] for d in self.deltas]) for i in range(len(self.global_arrays))]

    def expected_arrays(self) -> list[np.ndarray]:
        """The weighted mean of the pods' arrays after one round from the global arrays."""
        per_pod = [self.pod_arrays(p, self.global_arrays) for p in range(self.n_pods)]
        return [
            self.weighted([arrays[i] for arrays in per_pod]) for i in range(len(self.global_arrays))
        ]


def make_updates(n_pods: int, seed: int) -> FixedUpdates:
    """Unequal weights and generic deltas, so any weighting mistake shows."""
    rng = np.random.default_rng(seed)
    global_arrays = [
        rng.normal(0.0, 1.0, (3, 4)).astype(np.float32),
        rng.normal(0.0, 1.0, (4,)).astype(np.float32),
    ]
    deltas = [[rng.normal(0.0, 0.1, a.shape) for a in global_arrays] for _ in range(n_pods)]
    return FixedUpdates(
        global_arrays=global_arrays,
        deltas=deltas,
        weights=[10 * (i + 1) ** 2 for i in range(n_pods)],
        train_loss=[float(v) for v in rng.uniform(0.2, 1.0, n_pods)],
        eval_loss=[float(v) for v in rng.uniform(0.2, 1.0, n_pods)],
        eval_accuracy=[float(v) for v in rng.uniform(0.5, 1.0, n_pods)],
    )


def same_mean(updates: FixedUpdates, seed: int) -> FixedUpdates:
    """Other per-pod deltas (and metrics) with the same weighted means and weights."""
    rng = np.random.default_rng(seed + 1)
    noise = [[rng.normal(0.0, 0.2, d.shape) for d in deltas] for deltas in updates.deltas]
    shift = [updates.weighted([n[i] for n in noise]) for i in range(len(updates.global_arrays))]
    deltas = [
        [d + n - s for d, n, s in zip(deltas, pod_noise, shift, strict=True)]
        for deltas, pod_noise in zip(updates.deltas, noise, strict=True)
    ]

    def rebalance(values: list[float]) -> list[float]:
        # Swap mass between the first two pods so the weighted mean stays put.
        w = updates.weights
        if len(values) < 2:
            return values
        eps = 0.05
        out = list(values)
        out[0] += eps / w[0]
        out[1] -= eps / w[1]
        return out

    return replace(
        updates,
        deltas=deltas,
        train_loss=rebalance(updates.train_loss),
        eval_loss=rebalance(updates.eval_loss),
        eval_accuracy=rebalance(updates.eval_accuracy),
    )


def negated(updates: FixedUpdates) -> FixedUpdates:
    """The same pods moving the other way: a different weighted mean."""
    return replace(updates, deltas=[[-d for d in deltas] for deltas in updates.deltas])


def _first(records: Mapping[str, Any], what: str, message: Message) -> Any:
    for value in records.values():
        return value
    raise AssertionError(
        f"the strategy sent a {message.metadata.message_type!r} message without {what}"
    )


def fake_pod_app(updates: FixedUpdates, pod: int) -> ClientApp:
    """A ClientApp answering train/evaluate with pod ``pod``'s fixed answers."""
    app = ClientApp()

    @app.train()
    def train(message: Message, context: Any) -> Message:
        received = _first(message.content.array_records, "an ArrayRecord", message)
        arrays = updates.pod_arrays(pod, received.to_numpy_ndarrays())
        metrics = MetricRecord(
            {"train_loss": updates.train_loss[pod], "num-examples": updates.weights[pod]}
        )
        return Message(
            RecordDict({"arrays": ArrayRecord(arrays), "metrics": metrics}), reply_to=message
        )

    @app.evaluate()
    def evaluate(message: Message, context: Any) -> Message:
        metrics = MetricRecord(
            {
                "loss": updates.eval_loss[pod],
                "accuracy": updates.eval_accuracy[pod],
                "num-examples": updates.weights[pod],
            }
        )
        return Message(RecordDict({"metrics": metrics}), reply_to=message)

    return app


def fake_grid(updates: FixedUpdates) -> LocalGrid:
    """Node ids 1..n, node i answering as pod i-1."""
    return LocalGrid({p + 1: fake_pod_app(updates, p) for p in range(updates.n_pods)})


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)


def call(what: str, fn: Callable[[], T], timeout: float | None = None) -> T:
    """Call ``fn`` with a time limit; its exceptions become AssertionErrors naming ``what``."""
    timeout = CALL_TIMEOUT if timeout is None else timeout
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - reported to the plugin author below
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name=f"fedplug-check:{what}")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise AssertionError(
            f"{what} did not return within {timeout:.0f}s; does it wait for more nodes than "
            "the n_pods it was built for (min_available_nodes / min_train_nodes)?"
        )
    if "error" in outcome:
        exc = outcome["error"]
        raise AssertionError(f"{what} raised {type(exc).__name__}: {exc}") from exc
    return outcome["value"]


@contextmanager
def quiet_flower() -> Iterator[None]:
    """Flower strategies log every call at INFO; the kit's output is its assertions."""
    logger = logging.getLogger("flwr")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


@dataclass
class RoundResult:
    train_messages: list[Message]
    arrays: ArrayRecord | None
    train_metrics: MetricRecord | None
    evaluate_messages: list[Message]
    evaluate_metrics: MetricRecord | None
    train_replies: list[Message]


def run_round(
    strategy: Strategy,
    grid: LocalGrid,
    arrays: Sequence[np.ndarray],
    server_round: int = 1,
    mean_of: FixedUpdates | None = None,
) -> RoundResult:
    """One train + evaluate round of ``strategy`` on ``grid``, every call time-limited.

    With ``mean_of``, the strategy aggregates what the secure path hands it instead of
    the pods' replies: one synthetic reply carrying the weighted mean.
    """
    record = ArrayRecord([np.asarray(a) for a in arrays])
    sent = list(
        call(
            "configure_train",
            lambda: strategy.configure_train(server_round, record, ConfigRecord(), grid),
        )
    )
    replies = list(grid.send_and_receive(sent))
    if mean_of is not None and sent:
        replies = [Message(mean_reply(mean_of, arrays), reply_to=sent[0])]
    outcome = call("aggregate_train", lambda: strategy.aggregate_train(server_round, replies))
    if not (isinstance(outcome, tuple) and len(outcome) == 2):
        raise AssertionError(
            f"aggregate_train returned {type(outcome).__name__}; expected a tuple "
            "(ArrayRecord | None, MetricRecord | None)"
        )
    new_arrays, train_metrics = outcome
    if not (new_arrays is None or isinstance(new_arrays, ArrayRecord)):
        raise AssertionError(
            f"aggregate_train returned arrays of type {type(new_arrays).__name__}; expected "
            "an ArrayRecord (or None when every reply failed)"
        )
    next_arrays = new_arrays if isinstance(new_arrays, ArrayRecord) else record
    eval_sent = list(
        call(
            "configure_evaluate",
            lambda: strategy.configure_evaluate(server_round, next_arrays, ConfigRecord(), grid),
        )
    )
    eval_replies = list(grid.send_and_receive(eval_sent))
    if mean_of is not None and eval_sent:
        eval_replies = [Message(mean_eval_reply(mean_of), reply_to=eval_sent[0])]
    eval_metrics = call(
        "aggregate_evaluate", lambda: strategy.aggregate_evaluate(server_round, eval_replies)
    )
    return RoundResult(sent, new_arrays, train_metrics, eval_sent, eval_metrics, replies)


def mean_reply(updates: FixedUpdates, received: Sequence[np.ndarray]) -> RecordDict:
    """What the secure path hands the inner strategy: one reply carrying the weighted mean.

    (As ``SecureAggregationStrategy.aggregate_train`` builds it: global arrays plus the
    decoded mean delta, the weighted-mean metrics and the total number of examples.)
    """
    arrays = [
        (np.asarray(r, np.float64) + d).astype(np.asarray(r).dtype)
        for r, d in zip(received, updates.mean_delta(), strict=True)
    ]
    metrics = MetricRecord(
        {
            "train_loss": float(updates.weighted(updates.train_loss)),
            "num-examples": int(sum(updates.weights)),
        }
    )
    return RecordDict({"arrays": ArrayRecord(arrays), "metrics": metrics})


def mean_eval_reply(updates: FixedUpdates) -> RecordDict:
    """The secure path's evaluation reply: weighted-mean metrics and the total count."""
    metrics = MetricRecord(
        {
            "accuracy": float(updates.weighted(updates.eval_accuracy)),
            "loss": float(updates.weighted(updates.eval_loss)),
            "num-examples": int(sum(updates.weights)),
        }
    )
    return RecordDict({"metrics": metrics})
