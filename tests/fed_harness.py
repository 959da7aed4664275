"""Running fedplug plans on the in-process LocalGrid, for the Flower-adapter tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from fedplug._api import TabularClassifier, build_strategy
from fedplug._flower import LocalGrid, RunPlan, RunResult, build_client_app, run_plan
from fedplug.data import Pod
from fedplug.learning import DataStructure, TabularNetSpec, get_weights


def make_grid(pod_files: Sequence[Path], deliver=None) -> LocalGrid:  # noqa: ANN001
    apps = {i + 1: build_client_app() for i in range(len(pod_files))}
    configs = {i + 1: {"pod": str(p)} for i, p in enumerate(pod_files)}
    return LocalGrid(apps, node_configs=configs, deliver=deliver)


def make_plan(
    pod_files: Sequence[Path],
    aggregator,  # noqa: ANN001
    strategy: str = "fedavg",
    strategy_params: dict | None = None,
    rounds: int = 2,
    seed: int = 0,
) -> RunPlan:
    from fedplug._api import combine_pod_schemas

    model = TabularClassifier(DataStructure(target="TARGET"), epochs=1, rounds=rounds, seed=seed)
    schema = combine_pod_schemas([str(p) for p in pod_files])
    task = model.training_task(schema)
    torch.manual_seed(seed)
    initial = get_weights(TabularNetSpec.from_dict(task.model).build())
    names = [Pod.from_yaml(p).name for p in pod_files]
    return RunPlan(
        pods=names,
        task=task,
        initial_weights=initial,
        rounds=rounds,
        aggregator=aggregator,
        strategy=build_strategy(strategy, len(names), strategy_params or {}),
        round_timeout=30.0,
    )


def run_local(
    pod_files: Sequence[Path], aggregator, deliver=None, **kwargs
) -> tuple[RunResult, LocalGrid]:  # noqa: ANN001, E501
    grid = make_grid(pod_files, deliver)
    return run_plan(grid, make_plan(pod_files, aggregator, **kwargs)), grid


def max_rel_diff(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    """Largest element difference, relative for |y| > 1 and absolute below.

    Model weights are float32: the plaintext mean is rounded to float32 too, so elements
    near zero can only agree to float32's absolute resolution.
    """
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        scale = np.maximum(np.abs(y), 1.0)
        worst = max(worst, float(np.max(np.abs(x - y) / scale)))
    return worst
