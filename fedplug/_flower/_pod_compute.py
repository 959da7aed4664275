"""What a pod computes for a task message, before it is sent plain or masked.

Shared by the plaintext handlers (``_pod_app``) and the secure ones (``_secure_pod``).
"""

from __future__ import annotations

import numpy as np
from flwr.app import ConfigRecord, Message

from fedplug.learning import TrainingTask

from . import _wire as wire
from ._pod_runtime import PodRuntime


def _task(message: Message) -> tuple[TrainingTask, ConfigRecord]:
    config = wire.task_config(message)
    return TrainingTask.from_json(str(config[wire.TASK_KEY])), config


def is_stats_exchange(message: Message) -> bool:
    config = wire.task_config(message)
    return str(config.get(wire.PHASE_KEY, wire.PHASE_FIT)) == wire.PHASE_STATS


def plaintext_update(
    runtime: PodRuntime, message: Message
) -> tuple[list[np.ndarray], dict[str, float], int]:
    """What a pod computes for a train message: arrays, metrics and its example count."""
    runtime.require_task_kind("train")
    task, config = _task(message)
    runtime.require_peers_allowed(wire.task_pods(config, runtime.name))
    trainer = runtime.trainer(task)
    if is_stats_exchange(message):
        vector, n = trainer.moments()
        return [vector], {}, n
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
