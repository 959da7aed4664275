"""The Python front end: combine pod schemas, fit a classifier across pods, predict."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fedplug._errors import (
    ConfigError,
    PodConfigError,
)
from fedplug._model_base import Model
from fedplug._network_model import NetworkModel
from fedplug._plugins import load_plugin
from fedplug.data import Pod, Schema, published_schemas, resolve_pod
from fedplug.data import combine_pod_schemas as _combine_schemas
from fedplug.learning import (
    DataStructure,
    Exchange,
    Optimizer,
    TabularEncoder,
    TabularNetSpec,
    TrainingTask,
    evaluate_local,
    get_weights,
    set_weights,
)

PodIdentifier = str | Path | Pod


def _pods(
    identifiers: Sequence[PodIdentifier], pod_dirs: Sequence[Path] | None
) -> list[tuple[Path | None, Pod]]:
    """Each pod with its file; a ``Pod`` object (held in memory) has none."""
    if isinstance(identifiers, (str, Path, Pod)) or not identifiers:
        raise PodConfigError(
            "pod_identifiers must be a non-empty list of pod names, pod files or "
            f"fedplug.Pod objects, got {identifiers!r}."
        )
    pods: list[tuple[Path | None, Pod]] = []
    for identifier in identifiers:
        if isinstance(identifier, Pod):
            pods.append((None, identifier))
            continue
        path = resolve_pod(identifier, pod_dirs)
        pods.append((path, Pod.from_yaml(path)))
    names = [p.name for _, p in pods]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PodConfigError(f"pod(s) {duplicates} listed more than once; list each pod once.")
    return pods


def combine_pod_schemas(
    pods: Sequence[PodIdentifier] | Mapping[str, Schema],
    columns: Sequence[str] | None = None,
    *,
    pod_dirs: Sequence[Path] | None = None,
    vocabularies: str = "exact",
) -> Schema:
    """The schema every pod agrees on, from the pods' published schemas (metadata only).

    ``pods``: pod names, pod YAML files, published schema files or ``fedplug.Pod``
    objects (in memory), or a mapping of pod name -> Schema. ``vocabularies="exact"``
    requires equal categorical vocabularies; ``"union"`` combines them, giving the schema
    every pod can adopt (``schema.to_yaml(...)``, then ``schema: {file: ...}`` in each pod).
    """
    if isinstance(pods, Mapping):
        return _combine_schemas(pods, columns, vocabularies=vocabularies)
    schemas = published_schemas(pods, pod_dirs)
    return _combine_schemas(schemas, columns, vocabularies=vocabularies)


class TabularClassifier(NetworkModel):
    """A classifier over a tabular datastructure, trained across pods.

    ``__init__`` only stores its parameters; they are checked when ``fit`` is called.
    """

    plugin_name = "tabular-classifier"

    # Set once trained (fit() or deserialize()): the trained task and weights.
    _fitted: tuple[TrainingTask, list[np.ndarray]]

    def __init__(
        self,
        datastructure: DataStructure,
        schema: Schema | None = None,
        epochs: int | None = 1,
        steps: int | None = None,
        batch_size: int = 64,
        rounds: int = 5,
        optimizer: Optimizer | None = None,
        hidden: Sequence[int] = (64, 32),
        dropout: float = 0.1,
        seed: int = 42,
        class_weight: str | None = None,
    ) -> None:
        self.datastructure = datastructure
        self.schema = schema
        self.epochs = epochs
        self.steps = steps
        self.batch_size = batch_size
        self.rounds = rounds
        self.optimizer = optimizer
        self.hidden = hidden
        self.dropout = dropout
        self.seed = seed
        self.class_weight = class_weight

    # -- checks -------------------------------------------------------------------------
    def check_params(self) -> None:
        self.check_training_params()
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError(f"dropout={self.dropout!r} is invalid: use a number in [0, 1).")
        if self.class_weight not in (None, "balanced"):
            raise ConfigError(
                f"class_weight={self.class_weight!r} is invalid: use None (every example "
                "counts the same) or 'balanced' (classes weighted inversely to their "
                "cross-pod frequency)."
            )

    def prepare(self, exchange: Exchange, task: TrainingTask) -> TrainingTask:
        """With ``class_weight="balanced"``: weights ``n / (classes * n_c)`` from the
        classes' counts summed across pods (through the aggregator: secure when it is)."""
        if self.class_weight != "balanced":
            return task
        spec = TabularNetSpec.from_dict(task.model)
        counts = np.rint(exchange.sum({"op": "class_counts"}, spec.n_classes, None))
        weights = counts.sum() / (spec.n_classes * np.maximum(counts, 1.0))
        model = {**task.model, "class_weights": [float(w) for w in weights]}
        return TrainingTask(**{**asdict(task), "model": model})

    def training_task(self, schema: Schema) -> TrainingTask:
        resolved = self.datastructure.resolve(schema)
        used = [resolved.target, *resolved.categorical, *resolved.continuous]
        spec = TabularNetSpec.for_columns(schema, resolved, tuple(self.hidden), float(self.dropout))
        return self.network_task(schema, used, spec.to_dict())

    def initial_weights(self, task: TrainingTask) -> list[np.ndarray]:
        """The round-0 model: the task's network built under the task's seed."""
        torch.manual_seed(task.seed)
        return get_weights(TabularNetSpec.from_dict(task.model).build())

    def set_trained(self, task: TrainingTask, state: Any, history: list[dict]) -> None:
        weights = [np.asarray(w) for w in state]
        super().set_trained(task, weights, history)
        self._fitted = (task, weights)

    # -- inference ----------------------------------------------------------------------
    def _fitted_state(self) -> tuple[TrainingTask, list[np.ndarray]]:
        self._require_trained()
        return self._fitted

    def _encode(self, frame: pd.DataFrame, require_target: bool):
        task, weights = self._fitted_state()
        schema = Schema.from_dict(task.schema)
        resolved = self.datastructure.resolve(schema)
        if not isinstance(frame, pd.DataFrame):
            raise ConfigError(f"predict() takes a pandas DataFrame, got {type(frame).__name__}.")
        check = (
            schema
            if (require_target or resolved.target in frame)
            else schema.select([c for c in schema.columns if c != resolved.target])
        )
        caller = "evaluate()" if require_target else "predict() / predict_proba()"
        check.validate(
            frame,
            where=f"the frame passed to {caller}",
            fix="Fix the frame: give it the columns the model was trained on, with values its "
            "schema allows (extra columns are ignored).",
        )
        encoder = TabularEncoder(schema, resolved, np.asarray(task.mean), np.asarray(task.std))
        net = TabularNetSpec.from_dict(task.model).build()
        set_weights(net, weights)
        net.eval()
        return net, encoder.encode(frame), resolved

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        net, data, _ = self._encode(frame, require_target=False)
        with torch.no_grad():
            return torch.softmax(net(data.x_cat, data.x_cont), dim=1).numpy()

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Predicted class labels (values of the target column), after validating ``frame``."""
        net, data, resolved = self._encode(frame, require_target=False)
        with torch.no_grad():
            labels = net(data.x_cat, data.x_cont).argmax(dim=1).numpy()
        return np.asarray(resolved.classes, dtype=object)[labels]

    def evaluate_frame(self, frame: pd.DataFrame) -> dict[str, float]:
        """Metrics on a labelled frame (accuracy, AUC, F1, ...)."""
        net, data, _ = self._encode(frame, require_target=True)
        return evaluate_local(net, data)

    # -- persistence --------------------------------------------------------------------
    def to_payload(self) -> dict[str, Any]:
        """Weights, architecture, schema and datastructure (what ``serialize`` writes)."""
        task, weights = self._fitted_state()
        return {
            "task": task.to_json(),
            "weights": [torch.from_numpy(np.asarray(w).copy()) for w in weights],
            "history": json.dumps(getattr(self, "history_", [])),
            "params": json.dumps(
                {
                    "rounds": self.rounds,
                    "hidden": list(self.hidden),
                    "dropout": self.dropout,
                    "class_weight": self.class_weight,
                }
            ),
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> TabularClassifier:
        task = TrainingTask.from_json(payload["task"])
        params = json.loads(payload["params"])
        model = cls(
            DataStructure.from_dict(task.datastructure),
            schema=Schema.from_dict(task.schema),
            epochs=task.epochs,
            steps=task.steps,
            batch_size=task.batch_size,
            rounds=params["rounds"],
            optimizer=Optimizer.from_dict(task.optimizer),
            hidden=tuple(params["hidden"]),
            dropout=params["dropout"],
            seed=task.seed,
            class_weight=params.get("class_weight"),
        )
        model.set_trained(
            task, [w.numpy() for w in payload["weights"]], json.loads(payload["history"])
        )
        return model


def build_strategy(strategy: Any, n_pods: int, params: Mapping[str, Any], aggregator: Any = None):
    """A Flower strategy from a plugin name, a factory, or a ready Strategy instance."""
    from flwr.serverapp.strategy import Strategy

    if isinstance(strategy, Strategy):
        return strategy
    factory = load_plugin("strategies", strategy) if isinstance(strategy, str) else strategy
    if (
        getattr(aggregator, "secure", False)
        and getattr(factory, "secure_compatible", True) is False
    ):
        raise ConfigError(
            f"strategy {strategy!r} declares secure_compatible=False: its aggregation is not a "
            "weighted mean, so secure aggregation cannot replace it. Use aggregator=fedavg, "
            "or a strategy whose aggregation is a weighted mean."
        )
    if not callable(factory):
        raise ConfigError(f"strategy {strategy!r} is neither a plugin name nor a strategy factory.")
    return factory(n_pods, **dict(params))


def _refuse_by_local_policies(model: Model, pods: Sequence[Pod], aggregator: Any) -> None:
    """In a local simulation the pods' files are here: their policies refuse at once,
    before any data is read (the pods refuse again themselves during the run)."""
    from fedplug._flower._session import refuse_by_policy
    from fedplug._task_builder import check_aggregator

    secure = bool(check_aggregator(aggregator).secure) if aggregator is not None else False
    refuse_by_policy(
        {pod.name: bool(pod.policy.require_secure_aggregation) for pod in pods},
        {pod.name: tuple(pod.policy.accepted_models) for pod in pods},
        secure,
        type(model).plugin_name,
    )


def _used_schemas(model: Model, pods: Sequence[Pod]) -> tuple[dict[str, Schema], list[str]]:
    """The pods' schemas and the columns the model uses: pods need agree only on those."""
    schemas = {pod.name: pod.load().schema for pod in pods}
    first = next(iter(schemas.values()))
    # Resolved on one pod's schema to name the columns; combining checks them on every pod.
    resolved = model.datastructure.resolve(first, task="auto")
    return schemas, [resolved.target, *resolved.categorical, *resolved.continuous]


def fit_model(
    model: Any,
    pod_identifiers: Sequence[PodIdentifier],
    aggregator: Any = None,
    strategy: Any = "fedavg",
    *,
    strategy_params: Mapping[str, Any] | None = None,
    pod_dirs: Sequence[Path] | None = None,
    round_timeout: float = 300.0,
    cpus_per_pod: float = 1.0,
    backend: str = "auto",
    verbose: bool | int = True,
    on_round: Callable[[int, dict, dict], None] | None = None,
    federation: str | Mapping[str, Any] | None = None,
) -> list[dict]:
    """Train ``model`` (any model plugin's server half) across the pods in a local
    simulation, or on the SuperLink ``federation`` names, make it the trained model, and
    return its history."""
    if federation is not None:
        from fedplug._federation import fit_on_superlink

        return fit_on_superlink(
            model,
            federation,
            pod_identifiers,
            aggregator,
            strategy,
            strategy_params=strategy_params,
            pod_dirs=pod_dirs,
            round_timeout=round_timeout,
            cpus_per_pod=cpus_per_pod,
            backend=backend,
            verbose=verbose,
            on_round=on_round,
        )
    from fedplug._flower._progress import with_progress
    from fedplug._flower._simulation import check_backend, run_locally, verbosity
    from fedplug._task_builder import attach_result, build_plan

    model.check_params()  # fail fast, before any pod data is read
    check_backend(backend)
    verbosity(verbose)
    pods = _pods(pod_identifiers, pod_dirs)
    _refuse_by_local_policies(model, [pod for _, pod in pods], aggregator)
    model.datastructure.check_pods([pod for _, pod in pods])
    schema = model.schema
    if schema is None:
        schema = _combine_schemas(*_used_schemas(model, [pod for _, pod in pods]))
    plan = build_plan(
        model,
        [pod.name for _, pod in pods],
        schema,
        aggregator,
        strategy,
        strategy_params,
        round_timeout=round_timeout,
        on_round=with_progress(on_round, model.progress_total(), bool(verbose)),
    )
    result = run_locally(
        plan,
        [pod if path is None else path for path, pod in pods],
        backend=backend,
        cpus_per_pod=cpus_per_pod,
        verbose=verbose,
    )
    attach_result(model, result)
    return result.history


def evaluate_model(
    model: Model,
    pod_identifiers: Sequence[PodIdentifier],
    aggregator: Any = None,
    *,
    pod_dirs: Sequence[Path] | None = None,
    round_timeout: float = 300.0,
    backend: str = "auto",
    verbose: bool | int = False,
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Score a trained model on the pods' validation rows, in a local simulation: the
    aggregate metrics and (plaintext aggregation only) each pod's own."""
    from fedplug._flower._simulation import check_backend, run_locally, verbosity
    from fedplug._task_builder import build_evaluation_plan

    check_backend(backend)
    verbosity(verbose)
    pods = _pods(pod_identifiers, pod_dirs)
    model.datastructure.check_pods([pod for _, pod in pods])
    plan = build_evaluation_plan(
        model, [pod.name for _, pod in pods], aggregator, round_timeout=round_timeout
    )
    result = run_locally(
        plan,
        [pod if path is None else path for path, pod in pods],
        backend=backend,
        verbose=verbose,
    )
    entry = result.history[-1]
    return dict(entry["evaluate"]), dict(entry.get("pods", {}))
