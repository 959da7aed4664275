"""What a pod computes for a task message, before it is sent plain or masked.

Shared by the plaintext handlers (``_pod_app``) and the secure ones (``_secure_pod``).
"""

from __future__ import annotations

import json

import numpy as np
from flwr.app import ConfigRecord, Message

from fedplug._errors import ModelMismatchError
from fedplug.learning import TrainingTask

from . import _wire as wire
from ._pod_runtime import PodRuntime


def _task(message: Message) -> tuple[TrainingTask, ConfigRecord]:
    config = wire.task_config(message)
    return TrainingTask.from_json(str(config[wire.TASK_KEY])), config


def is_stats_exchange(message: Message) -> bool:
    """Whether the message asks for a vector of statistics (not model weights)."""
    config = wire.task_config(message)
    phase = str(config.get(wire.PHASE_KEY, wire.PHASE_FIT))
    return phase in (wire.PHASE_STATS, wire.PHASE_EXCHANGE)


def is_model_exchange(message: Message) -> bool:
    """Whether the message is a model's own exchange (every pod weighted one)."""
    config = wire.task_config(message)
    return str(config.get(wire.PHASE_KEY, wire.PHASE_FIT)) == wire.PHASE_EXCHANGE


def task_kind(message: Message, default: str) -> str:
    """The task kind a message serves: a model's exchange says it (an evaluation's
    exchanges are train messages that serve "evaluate"); otherwise ``default``."""
    if not is_model_exchange(message):
        return default
    kind = str(wire.task_config(message).get(wire.KIND_KEY, "train"))
    return kind if kind in ("train", "evaluate") else "train"


def plaintext_update(
    runtime: PodRuntime, message: Message
) -> tuple[list[np.ndarray], dict[str, float], int]:
    """What a pod computes for a train message: arrays, metrics and its example count."""
    runtime.require_task_kind(task_kind(message, "train"))
    task, config = _task(message)
    runtime.require_peers_allowed(wire.task_pods(config, runtime.name))
    trainer = runtime.trainer(task)
    phase = str(config.get(wire.PHASE_KEY, wire.PHASE_FIT))
    if phase == wire.PHASE_STATS:
        vector, n = trainer.moments()
        return [vector], {}, n
    if phase == wire.PHASE_EXCHANGE:
        request = json.loads(str(config[wire.REQUEST_KEY]))
        answer = np.asarray(trainer.answer(request), dtype=np.float64).reshape(-1)
        size = sum(int(np.size(a)) for a in wire.global_arrays(message))
        if answer.size != size:
            raise ModelMismatchError(
                f"model plugin {task.model_plugin!r} answered {answer.size} values where the "
                f"server asked for {size}; the pod and server run different plugin versions"
            )
        # Weight one per pod: the server multiplies the mean back into the sum.
        return [answer], {}, 1
    weights = wire.global_arrays(message)
    # FedProx sends its proximal coefficient in the train config.
    mu = wire.as_float(config.get("proximal-mu", 0.0))
    new_weights, metrics = trainer.fit(weights, wire.as_int(config.get("server-round", 0)), mu)
    n = int(metrics.pop(wire.NUM_EXAMPLES))
    return new_weights, metrics, n


def plaintext_metrics(runtime: PodRuntime, message: Message) -> tuple[dict[str, float], int]:
    """What a pod computes for an evaluate message: metrics and its example count."""
    runtime.require_task_kind("evaluate")
    task, config = _task(message)
    runtime.require_peers_allowed(wire.task_pods(config, runtime.name))
    metrics = runtime.trainer(task).evaluate(wire.global_arrays(message))
    n = int(metrics.pop(wire.NUM_EXAMPLES))
    return metrics, n
