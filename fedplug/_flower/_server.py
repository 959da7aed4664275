"""The ServerApp's workflow: find the pods, agree on scaling, train, collect history."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg as FlowerFedAvg
from flwr.serverapp.strategy import Strategy

from fedplug._errors import PluginError, PodConfigError, PolicyRefusal, SchemaError, TrainingError
from fedplug.data import Schema, combine_pod_schemas
from fedplug.learning import Exchange, TrainingTask, moment_units, scaling_for

from . import _wire as wire
from ._aggregators import Aggregator
from ._pod_errors import FAILURES, REFUSALS
from ._pod_strategy import PodStrategy, RoundCallback
from ._session import PodSession, failure_text, refuse_by_policy
from ._wire import PodInfo

logger = logging.getLogger("fedplug.server")


@dataclass
class RunPlan:
    """A federated task, ready to run on a Grid."""

    pods: list[str]
    task: TrainingTask
    initial_weights: list[np.ndarray]
    rounds: int
    aggregator: Aggregator
    strategy: Strategy
    round_timeout: float = 300.0
    connect_timeout: float = 120.0
    on_round: RoundCallback | None = None
    #: The pods' SuperNodes and what they publish, when the caller has already found them
    #: (``flwr run`` does, to build the model from the pods' schemas): not asked again.
    found: tuple[dict[int, str], dict[str, PodInfo]] | None = None
    #: For a model trained by its own exchanges (not by rounds of a Flower strategy): it
    #: takes the federation's exchange and the scaled task, and returns the trained state
    #: and the history.
    driver: ModelDriver | None = None
    #: After the cross-pod scaling: the model's own preparation of the task from sums
    #: over pods (``Model.prepare``); ``None``: none.
    prepare: Callable[[Exchange, TrainingTask], TrainingTask] | None = None
    #: Set to score a trained model on the pods instead of training one.
    evaluation: Evaluation | None = None


@dataclass
class RunResult:
    weights: list[np.ndarray]
    task: TrainingTask
    history: list[dict]
    pods: list[str]
    seconds: float
    #: What a driver-trained model returned (``None`` for strategy-trained models).
    state: Any = None


ModelDriver = Callable[[Exchange, TrainingTask, RoundCallback | None], tuple[Any, list[dict]]]
#: How a model trained by its own exchanges is scored on pods: ``(exchange, task, state)``
#: -> metrics.
ModelEvaluator = Callable[[Exchange, TrainingTask, Any], dict[str, float]]


@dataclass
class Evaluation:
    """A trained model to score on the pods' validation rows."""

    state: Any  # the final weights, or what the model's driver returned
    evaluator: ModelEvaluator | None = None  # for models trained by their own exchanges


class AggregatorExchange:
    """A model's exchanges through the run's aggregator: the sum over pods of their answers.

    Each exchange is a train message (phase ``exchange``) whose reply is one vector per pod,
    weighted one: the aggregator's weighted mean times the number of pods is the sum, and
    under secure aggregation the server learns only that sum.
    """

    def __init__(
        self,
        grid: Grid,
        plan: RunPlan,
        session: PodSession,
        state: object,
        task: TrainingTask,
        kind: str = "train",
    ) -> None:
        self.grid, self.plan, self.session, self.state, self.task = grid, plan, session, state, task
        self.kind = kind  # the task kind the pods check against their policy
        self.count = 0

    def sum(self, request: dict[str, Any], size: int, bound: float | None) -> np.ndarray:
        inner = FlowerFedAvg(
            min_train_nodes=len(self.session.pods), min_available_nodes=len(self.session.pods)
        )
        strategy = _wrap(self.plan, inner, self.session, self.state)
        limit = float(bound) if bound is not None else float(self._count_bound())
        config = ConfigRecord(
            {
                wire.TASK_KEY: self.task.to_json(),
                wire.PHASE_KEY: wire.PHASE_EXCHANGE,
                wire.REQUEST_KEY: json.dumps(request),
                wire.BOUND_KEY: max(limit, 1.0),
                wire.KIND_KEY: self.kind,
            }
        )
        self.count += 1
        messages = list(
            strategy.configure_train(self.count, ArrayRecord([np.zeros(size)]), config, self.grid)
        )
        replies = list(self.grid.send_and_receive(messages, timeout=self.plan.round_timeout))
        arrays, _ = strategy.aggregate_train(self.count, replies)
        answered = [r for r in replies if not r.has_error()]
        if arrays is None or len(answered) < len(self.session.pods):
            raise TrainingError(
                f"exchange {self.count} of model plugin {self.task.model_plugin!r}: "
                f"{len(answered)} of {len(self.session.pods)} pods answered; this model needs "
                "every pod in every exchange (its statistics are sums over all rows). See the "
                "warnings above, fix the pod, and rerun."
            )
        return arrays.to_numpy_ndarrays()[0].astype(np.float64) * len(answered)

    def _count_bound(self) -> float:
        # Counts: at most one pod's example count, which a secure aggregator bounds.
        return float(getattr(self.plan.aggregator, "max_weight", 1_000_000))


def discover_pods(
    grid: Grid, wanted: Sequence[str], timeout: float, interval: float = 0.25
) -> tuple[dict[int, str], dict[str, PodInfo]]:
    """Which SuperNode serves each wanted pod, and what each pod publishes.

    Every connected SuperNode is asked once which pod it serves; the search ends as soon
    as every wanted pod has answered, so a SuperNode that died (the SuperLink notices
    only after its heartbeat timeout), hangs or serves another task delays nothing.
    """
    deadline = time.monotonic() + timeout
    asked: set[int] = set()
    pending: dict[str, int] = {}  # message id -> node id
    served: dict[str, list[int]] = {}
    infos: dict[str, PodInfo] = {}
    unanswered: list[str] = []  # what SuperNodes that named no pod said instead
    while True:
        new = [n for n in grid.get_node_ids() if n not in asked]
        if new:
            queries = [
                Message(RecordDict(), dst_node_id=n, message_type=wire.SCHEMA_QUERY) for n in new
            ]
            pending.update(zip(grid.push_messages(queries), new, strict=True))
            asked.update(new)
        for reply in grid.pull_messages(list(pending)) if pending else []:
            node = pending.pop(reply.metadata.reply_to_message_id, None)
            if node is None:
                continue
            if reply.has_error():
                text = failure_text(str(reply.error.reason))
                logger.warning("SuperNode %s did not say which pod it serves: %s", node, text)
                refusal = _refusal_of_wanted(reply, wanted)
                if refusal is not None:
                    raise refusal  # the pod's own word, at once, not a "not found" later
                broken = _failure_of_wanted(reply, wanted)
                if broken is not None:
                    raise broken  # a pod that cannot serve (bad data): why, at once
                unanswered.append(text)
                continue
            try:
                info = wire.read_schema_reply(reply)
            except wire.MalformedMessage as exc:
                logger.warning("SuperNode %s: %s", node, exc)
                unanswered.append(str(exc))
                continue
            served.setdefault(info.pod, []).append(node)
            infos[info.pod] = info
        if set(wanted) <= set(served):
            break
        if time.monotonic() > deadline:
            missing = sorted(set(wanted) - set(served))
            failures = "".join(f" A SuperNode answered: {t}" for t in unanswered)
            raise PodConfigError(
                f"pod(s) {missing} not found among the connected SuperNodes (found: "
                f"{sorted(served) or 'none'}) within {timeout:.0f}s. Check the pod names in "
                "pods.identifiers, or start a SuperNode for each pod "
                f"(`fedplug pod start POD.yaml --superlink HOST:PORT ...`).{failures}"
            )
        time.sleep(interval)
    twice = {name: nodes for name, nodes in served.items() if name in wanted and len(nodes) > 1}
    if twice:
        raise PodConfigError(
            f"pod name(s) served by several SuperNodes: {twice}; give each pod a unique name "
            "and stop the extra SuperNodes."
        )
    return {served[name][0]: name for name in wanted}, {name: infos[name] for name in wanted}


def _refusal_of_wanted(reply: Message, wanted: Sequence[str]) -> PolicyRefusal | None:
    """A pod's policy refusal of the schema query, if it names a pod the run wants."""
    if reply.error.code != wire.POLICY_REFUSAL:
        return None
    try:
        payload = json.loads(str(reply.error.reason))
        pods = [str(p) for p in payload.get("pods", [])]
    except (json.JSONDecodeError, AttributeError, TypeError):
        return None
    named = sorted(set(pods) & set(wanted))
    if not named:
        return None
    # Any registered SuperNode can answer under any pod's name: only fedplug's own fixed
    # explanation of a known reason is shown, never the answer's free text.
    reason = str(payload.get("reason", ""))
    why = REFUSALS.get(reason, "it refused the run for a reason fedplug does not know")
    return PolicyRefusal(
        f"the SuperNode serving pod(s) {named} refused the run ({reason or 'unknown'}): {why}. "
        "Its owner finds the details in the pod's log.",
        reason=reason,
        pods=named,
    )


def _failure_of_wanted(reply: Message, wanted: Sequence[str]) -> PodConfigError | None:
    """A wanted pod's failure to serve (its data fails its checks, ...), from its answer to
    the schema query: reported as the run's error rather than a "not found" later."""
    if reply.error.code != wire.POD_FAILURE:
        return None
    try:
        payload = json.loads(str(reply.error.reason))
        pods = [str(p) for p in payload.get("pods", [])]
        reason = str(payload.get("reason", ""))
    except (json.JSONDecodeError, AttributeError, TypeError):
        return None
    named = sorted(set(pods) & set(wanted))
    if not named or reason not in FAILURES:
        return None
    # As for refusals: only fedplug's fixed explanation, never the answer's free text.
    return PodConfigError(
        f"the SuperNode serving pod(s) {named} cannot serve it ({reason}): "
        f"{FAILURES[reason]}. Its owner finds the details in the pod's log."
    )


def check_task_against_pods(plan: RunPlan, infos: dict[str, PodInfo]) -> None:
    """Fail early, with the pods' own terms, before any pod is asked to compute."""
    refuse_by_policy(
        {p: i.require_secure for p, i in infos.items()},
        {p: i.accepted_models for p, i in infos.items()},
        plan.aggregator.secure,
        plan.task.model_plugin,
    )
    published = {p: Schema.from_dict(i.schema) for p, i in infos.items()}
    task_schema = Schema.from_dict(plan.task.schema)
    combined = combine_pod_schemas(published, columns=list(task_schema.columns))
    for column in task_schema.columns:
        mine, theirs = task_schema[column], combined[column]
        if mine.stype != theirs.stype or (mine.categories or ()) != (theirs.categories or ()):
            raise SchemaError(
                f"column {column!r}: the model's schema ({mine.stype}, {mine.categories}) does "
                f"not match the pods' combined schema ({theirs.stype}, {theirs.categories}). "
                "Rebuild the schema with combine_pod_schemas over the same pods."
            )


def _wrap(
    plan: RunPlan,
    inner: Strategy,
    session: PodSession,
    state: object,
    on_round: RoundCallback | None = None,
) -> PodStrategy:
    strategy = plan.aggregator.wrap(inner, session, state, on_round)
    if not isinstance(strategy, PodStrategy):
        raise PluginError(
            f"aggregator {type(plan.aggregator).__name__}.wrap() returned a "
            f"{type(strategy).__name__}, not a fedplug PodStrategy; return a "
            "fedplug.plugins.PlaintextStrategy (or a PodStrategy subclass) wrapping `inner`."
        )
    return strategy


def _stats_exchange(
    grid: Grid, plan: RunPlan, session: PodSession, state: object, task: TrainingTask, size: int
) -> np.ndarray:
    # Statistics need the plain weighted mean: Flower's FedAvg, whatever the run's strategy.
    inner = FlowerFedAvg(
        min_train_nodes=len(session.pods),
        min_available_nodes=len(session.pods),
    )
    strategy = _wrap(plan, inner, session, state)
    config = ConfigRecord({wire.TASK_KEY: task.to_json(), wire.PHASE_KEY: wire.PHASE_STATS})
    messages = strategy.configure_train(0, ArrayRecord([np.zeros(size)]), config, grid)
    replies = grid.send_and_receive(messages, timeout=plan.round_timeout)
    arrays, _ = strategy.aggregate_train(0, replies)
    if arrays is None:
        raise TrainingError("no pod returned feature statistics; see the warnings above.")
    return arrays.to_numpy_ndarrays()[0]


def cross_pod_scaling(
    grid: Grid, plan: RunPlan, session: PodSession, state: object, task: TrainingTask
) -> TrainingTask:
    """Scaling statistics across pods, through the run's aggregator (secure when it is).

    Two exchanges: the means, then moments of ``(x - mean) / unit``, which are of order
    one and so keep their precision through a fixed-point secure sum.
    """
    k = len(task.continuous())
    if k == 0:
        return task
    means = _stats_exchange(grid, plan, session, state, task, k)
    centred = task.with_stats_center(means, moment_units(means))
    return scaling_for(centred, _stats_exchange(grid, plan, session, state, centred, 2 * k))


def _evaluate(
    grid: Grid, plan: RunPlan, session: PodSession, state: object, evaluation: Evaluation
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """The aggregate metrics and, where the aggregation is plaintext, each pod's own."""
    if evaluation.evaluator is not None:
        exchange = AggregatorExchange(grid, plan, session, state, plan.task, kind="evaluate")
        return evaluation.evaluator(exchange, plan.task, evaluation.state), {}
    n = len(session.pods)
    inner = FlowerFedAvg(
        fraction_evaluate=1.0, min_evaluate_nodes=n, min_available_nodes=n, min_train_nodes=n
    )
    strategy = _wrap(plan, inner, session, state)
    config = ConfigRecord({wire.TASK_KEY: plan.task.to_json(), wire.PHASE_KEY: wire.PHASE_FIT})
    weights = ArrayRecord([np.asarray(w) for w in evaluation.state])
    messages = list(strategy.configure_evaluate(1, weights, config, grid))
    replies = list(grid.send_and_receive(messages, timeout=plan.round_timeout))
    metrics = strategy.aggregate_evaluate(1, replies)
    if metrics is None:
        raise TrainingError("no pod returned evaluation metrics; see the warnings above.")
    per_pod: dict[str, dict[str, float]] = {}
    if not plan.aggregator.secure:  # plaintext replies are each pod's own metrics
        for reply in replies:
            if reply.has_error() or reply.metadata.src_node_id not in session.pods:
                continue
            record = next(iter(reply.content.metric_records.values()), None)
            if record is not None:
                values = {k: wire.as_float(v) for k, v in record.items() if k != wire.NUM_EXAMPLES}
                per_pod[session.pods[reply.metadata.src_node_id]] = values
    return {k: wire.as_float(v) for k, v in metrics.items() if k != wire.NUM_EXAMPLES}, per_pod


def run_plan(grid: Grid, plan: RunPlan) -> RunResult:
    started = time.monotonic()
    plan.aggregator.validate()  # a config error fails before any pod is contacted
    nodes, infos = plan.found or discover_pods(grid, plan.pods, plan.connect_timeout)
    check_task_against_pods(plan, infos)
    if plan.aggregator.secure:
        from ._secure_strategy import refuse_client_sampling

        refuse_client_sampling(plan.strategy)  # before any pod is asked for anything
    session = PodSession(pods=nodes, round_timeout=plan.round_timeout)
    state = plan.aggregator.setup(grid, session)
    if plan.evaluation is not None:
        metrics, per_pod = _evaluate(grid, plan, session, state, plan.evaluation)
        return RunResult(
            weights=[],
            task=plan.task,
            history=[{"round": 0, "train": {}, "evaluate": metrics, "pods": per_pod}],
            pods=list(plan.pods),
            seconds=time.monotonic() - started,
        )
    task = cross_pod_scaling(grid, plan, session, state, plan.task)
    if plan.prepare is not None:
        task = plan.prepare(AggregatorExchange(grid, plan, session, state, task), task)
    if plan.driver is not None:
        exchange = AggregatorExchange(grid, plan, session, state, task)
        trained, history = plan.driver(exchange, task, plan.on_round)
        return RunResult(
            weights=[],
            task=task,
            history=history,
            pods=list(plan.pods),
            seconds=time.monotonic() - started,
            state=trained,
        )
    strategy = _wrap(plan, plan.strategy, session, state, plan.on_round)
    config = ConfigRecord({wire.TASK_KEY: task.to_json(), wire.PHASE_KEY: wire.PHASE_FIT})
    result = strategy.start(
        grid,
        ArrayRecord([np.asarray(w) for w in plan.initial_weights]),
        num_rounds=plan.rounds,
        timeout=plan.round_timeout,
        train_config=config,
        evaluate_config=ConfigRecord(dict(config)),
    )
    weights = result.arrays.to_numpy_ndarrays() if result.arrays is not None else []
    if not weights:
        raise TrainingError("training produced no model: every round failed; see the warnings.")
    return RunResult(
        weights=weights,
        task=task,
        history=list(strategy.history),
        pods=list(plan.pods),
        seconds=time.monotonic() - started,
    )
