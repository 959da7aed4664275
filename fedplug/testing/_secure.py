"""End to end: a strategy gives the same model under plain and secure aggregation.

The secure path needs real pods (key agreement and masking happen in the pod ClientApp),
so the kit writes a few tiny pods to a temporary directory and runs a short task on an
in-process LocalGrid twice, once per aggregator, with the same seed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from fedplug._flower import (
    FedAvg,
    LocalGrid,
    RunPlan,
    RunResult,
    SecureAggregator,
    build_client_app,
    run_plan,
)
from fedplug.data import Pod, combine_pod_schemas
from fedplug.learning import DataStructure, Optimizer, TabularNetSpec, TrainingTask, get_weights

from ._checks import StrategyFactory, _Check, _max_diff, build
from ._fixed import quiet_flower

COLORS = ("blue", "green", "red")
LABELS = ("no", "yes")


def write_tiny_pods(directory: Path, n_pods: int, seed: int, rows: int = 40) -> list[Path]:
    """``n_pods`` small pods (CSV + YAML) that agree on one schema; returns the YAML paths."""
    rng = np.random.default_rng(seed)
    names = [f"kit-pod-{i}" for i in range(n_pods)]
    paths = []
    for i, name in enumerate(names):
        x1 = rng.normal(i * 0.5, 1.0, rows)
        x2 = rng.uniform(0.0, 10.0, rows)
        color = rng.choice(COLORS, rows)
        color[: len(COLORS)] = COLORS  # every pod sees every category: equal vocabularies
        label = np.where(x1 + 0.1 * x2 + rng.normal(0, 0.5, rows) > 1.0, LABELS[1], LABELS[0])
        label[:2] = LABELS
        frame = pd.DataFrame({"x1": x1, "x2": x2, "color": color, "label": label})
        frame.to_csv(directory / f"{name}.csv", index=False)
        config = {
            "name": name,
            "datasource": {"type": "csv", "path": f"{name}.csv"},
            "split": {"type": "percentage", "validation": 0.25, "seed": seed},
            "approved_pods": [n for n in names if n != name],
        }
        path = directory / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        paths.append(path)
    return paths


def _task(pods: list[Pod], seed: int) -> tuple[TrainingTask, list[np.ndarray]]:
    schema = combine_pod_schemas({pod.name: pod.load().schema for pod in pods})
    datastructure = DataStructure(target="label")
    resolved = datastructure.resolve(schema)
    spec = TabularNetSpec.for_columns(schema, resolved, hidden=(8,), dropout=0.0)
    used = [resolved.target, *resolved.categorical, *resolved.continuous]
    task = TrainingTask(
        schema=schema.select(used).to_dict(),
        datastructure=datastructure.to_dict(),
        model=spec.to_dict(),
        optimizer=Optimizer("SGD", {"lr": 0.05}).to_dict(),
        epochs=1,
        batch_size=8,
        seed=seed,
    )
    torch.manual_seed(seed)
    return task, get_weights(spec.build())


def _run(
    paths: list[Path],
    pods: list[Pod],
    task: TrainingTask,
    initial: list[np.ndarray],
    strategy: Any,
    aggregator: Any,
    rounds: int,
) -> RunResult:
    apps = {i + 1: build_client_app([str(p)]) for i, p in enumerate(paths)}
    grid = LocalGrid(apps, node_configs={i + 1: {"pod": str(p)} for i, p in enumerate(paths)})
    plan = RunPlan(
        pods=[pod.name for pod in pods],
        task=task,
        initial_weights=initial,
        rounds=rounds,
        aggregator=aggregator,
        strategy=strategy,
        round_timeout=30.0,
        connect_timeout=10.0,
    )
    with quiet_flower():
        return run_plan(grid, plan)


def check_secure_aggregation(
    factory: StrategyFactory,
    *,
    n_pods: int = 3,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    rounds: int = 2,
    atol: float = 1e-4,
) -> None:
    """A secure-compatible strategy trains the same model under FedAvg and SecureAggregator.

    Runs ``rounds`` rounds on tiny pods with each aggregator (same seed, same inner strategy
    parameters) and compares the final weights and validation metrics within ``atol``
    (secure aggregation rounds each value to fixed point).
    """
    c = _Check("check_secure_aggregation", factory)
    if getattr(factory, "secure_compatible", None) is not True:
        raise c.fail(
            "declares secure_compatible=False, so fedplug will not run it under secure "
            "aggregation; there is nothing to compare.",
            "Declare secure_compatible = True if its aggregation is a weighted mean.",
        )
    n_pods = max(n_pods, 2)  # secure aggregation needs at least two pods
    with tempfile.TemporaryDirectory(prefix="fedplug-kit-") as tmp:
        paths = write_tiny_pods(Path(tmp), n_pods, seed)
        pods = [Pod.from_yaml(p) for p in paths]
        task, initial = _task(pods, seed)
        results = {}
        for name, aggregator in (("fedavg", FedAvg()), ("secure", SecureAggregator(timeout=30.0))):
            strategy = build(factory, n_pods, params, seed, c)
            try:
                results[name] = _run(paths, pods, task, initial, strategy, aggregator, rounds)
            except Exception as exc:  # noqa: BLE001 - reported with the aggregator named
                raise c.fail(
                    f"a {rounds}-round run on {n_pods} tiny pods with aggregator {name!r} "
                    f"failed: {type(exc).__name__}: {exc}"
                ) from exc
    plain, secure = results["fedavg"], results["secure"]
    if len(plain.weights) != len(secure.weights) or any(
        a.shape != b.shape for a, b in zip(plain.weights, secure.weights, strict=False)
    ):
        raise c.fail("plain and secure runs returned models of different shapes.")
    diff, worst = _max_diff(plain.weights, secure.weights)
    if not diff <= atol:
        raise c.fail(
            f"after {rounds} rounds on {n_pods} tiny pods, the model trained under secure "
            f"aggregation differs from the one under plain FedAvg aggregation by up to "
            f"{diff:.3g} (array {worst}; tolerance {atol:g}).",
            "The strategy's result must depend on the pods' replies only through their "
            "weighted mean; otherwise declare secure_compatible = False.",
        )
    for key in ("loss", "accuracy"):
        a = plain.history[-1]["evaluate"].get(key) if plain.history else None
        b = secure.history[-1]["evaluate"].get(key) if secure.history else None
        if a is None or b is None or abs(a - b) > max(atol, 1e-3):
            raise c.fail(
                f"final validation {key} differs: {a} under plain aggregation, {b} under "
                "secure aggregation.",
                "Aggregate evaluation metrics as weighted means of the pods' metrics.",
            )
