"""The ``gradient-boosted-trees`` model plugin's server half: fit, predict, persist.

Every statistic the algorithm uses is a sum over pods through the run's aggregator (see
:mod:`fedplug.learning._boosting`), so it runs unchanged under ``aggregator=fedavg`` and
``aggregator=secure``; the trained ensemble needs no pod to predict.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from fedplug._errors import ConfigError
from fedplug._model_base import Model
from fedplug.data import Schema
from fedplug.learning import (
    BoostingParams,
    BoostingSetup,
    DataStructure,
    Ensemble,
    Exchange,
    TrainingTask,
    fit_ensemble,
)
from fedplug.learning._boosting_pod import MAX_ROW_LOSS, row_caps

PLUGIN_NAME = "gradient-boosted-trees"
_PARAMS = tuple(BoostingParams.__dataclass_fields__)


def setup_for(task: TrainingTask) -> BoostingSetup:
    """What the server knows before the first tree, from the (scaled) task."""
    schema = Schema.from_dict(task.schema)
    resolved = DataStructure.from_dict(task.datastructure).resolve(schema, task="auto")
    k = len(resolved.continuous)
    regression = resolved.task == "regression"
    return BoostingSetup(
        categorical={c: tuple(schema[c].categories or ()) for c in resolved.categorical},
        continuous=list(resolved.continuous),
        mean=list(task.mean[:k]),
        std=list(task.std[:k]),
        n_classes=0 if regression else len(resolved.classes),
        # A regression's target is the last column the cross-pod statistics scale.
        target_mean=float(task.mean[k]) if regression else 0.0,
        target_std=float(task.std[k]) if regression else 1.0,
    )


def _metrics(
    vector: np.ndarray, n_classes: int, target_std: float = 1.0
) -> tuple[dict[str, float], dict[str, float]]:
    """Train and validation metrics from an ``eval`` exchange's sums: loss and accuracy,
    or for a regression RMSE, MAE (target units) and R^2 (against the cross-pod variance)."""
    first, second = row_caps(n_classes)
    out: list[dict[str, float]] = []
    for rows, a, b in (vector[0:3], vector[3:6]):
        n = float(np.rint(rows))
        if n <= 0:
            out.append({})
        elif n_classes == 0:
            mse = float(a * first / n)  # of the standardized target
            out.append(
                {
                    "rmse": float(np.sqrt(mse)) * target_std,
                    "mae": float(b * second / n) * target_std,
                    "r2": 1.0 - mse,
                }
            )
        else:
            out.append({"loss": float(a * first / n), "accuracy": float(b * second / n)})
    train, validation = out
    return {f"train_{k}": v for k, v in train.items()}, validation


def boosting_driver(
    params: BoostingParams, eval_every: int
) -> Callable[[Exchange, TrainingTask, Any], tuple[dict[str, Any], list[dict]]]:
    """The server half's training loop, as the federation's runner calls it."""

    def drive(
        exchange: Exchange, task: TrainingTask, on_round: Any
    ) -> tuple[dict[str, Any], list[dict]]:
        history: list[dict] = []

        def on_tree(trees: int, ensemble: Ensemble) -> None:
            if trees % eval_every and trees != params.n_trees:
                return
            # Per-row figures are capped and scaled to at most one: sums of at most n rows.
            encoded = json.dumps(ensemble.to_dict())  # as the next level's request has it
            vector = exchange.sum({"op": "eval", "ensemble": encoded}, 6, None)
            train, evaluate = _metrics(vector, ensemble.n_classes, ensemble.target_std)
            history.append({"round": trees, "train": train, "evaluate": evaluate})
            if on_round is not None:
                on_round(trees, train, evaluate)

        ensemble = fit_ensemble(exchange, setup_for(task), params, on_tree=on_tree)
        return ensemble.to_dict(), history

    return drive


class GradientBoostedTrees(Model):
    """Histogram gradient-boosted trees across pods: binary and multiclass classification
    (log loss) and regression (squared error on the target standardized across pods).

    Each tree level is one exchange: every pod sends per-feature gradient and hessian
    histograms of the open nodes, the aggregator sums them (securely under
    ``aggregator=secure``), and the server picks the splits. Bin edges come from cross-pod
    statistics, never from one pod's values. ``__init__`` only stores its parameters.
    """

    plugin_name = PLUGIN_NAME

    _fitted: tuple[TrainingTask, Ensemble]

    def __init__(
        self,
        datastructure: DataStructure,
        schema: Schema | None = None,
        n_trees: int = 100,
        max_depth: int = 6,
        learning_rate: float = 0.1,
        reg_lambda: float = 1.0,
        min_child_weight: float = 1.0,
        gamma: float = 0.0,
        max_bins: int = 256,
        eval_every: int = 10,
        seed: int = 42,
    ) -> None:
        self.datastructure = datastructure
        self.schema = schema
        self.n_trees = n_trees
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.reg_lambda = reg_lambda
        self.min_child_weight = min_child_weight
        self.gamma = gamma
        self.max_bins = max_bins
        self.eval_every = eval_every
        self.seed = seed

    # -- the model-plugin contract ----------------------------------------------------
    def progress_total(self) -> int:
        return int(self.n_trees)  # progress is counted in trees

    def params(self) -> BoostingParams:
        return BoostingParams(**{name: getattr(self, name) for name in _PARAMS})

    def check_params(self) -> None:
        if not isinstance(self.datastructure, DataStructure):
            raise ConfigError(
                "datastructure must be a fedplug.DataStructure, "
                f"got {type(self.datastructure).__name__}."
            )
        self.params()
        if isinstance(self.eval_every, bool) or not isinstance(self.eval_every, int):
            raise ConfigError(f"eval_every={self.eval_every!r} must be a positive integer.")
        if self.eval_every < 1:
            raise ConfigError(f"eval_every={self.eval_every!r} must be a positive integer.")

    def training_task(self, schema: Schema) -> TrainingTask:
        resolved = self.datastructure.resolve(schema, task="auto")
        used = [resolved.target, *resolved.categorical, *resolved.continuous]
        return TrainingTask(
            schema=schema.select(used).to_dict(),
            datastructure=self.datastructure.to_dict(),
            model=self.params().to_dict(),
            optimizer={},
            epochs=None,
            seed=int(self.seed),
            model_plugin=self.plugin_name,
        )

    def driver(self) -> Callable[[Exchange, TrainingTask, Any], tuple[Any, list[dict]]]:
        return boosting_driver(self.params(), int(self.eval_every))

    def set_trained(self, task: TrainingTask, state: Any, history: list[dict]) -> None:
        super().set_trained(task, state, history)
        self._fitted = (task, Ensemble.from_dict(state))

    def evaluator(self) -> Callable[[Exchange, TrainingTask, Any], dict[str, float]]:
        def score(exchange: Exchange, task: TrainingTask, state: Any) -> dict[str, float]:
            # The pods' validation rows (their training rows' figures come as train_*).
            ensemble = Ensemble.from_dict(state)
            vector = exchange.sum({"op": "eval", "ensemble": json.dumps(state)}, 6, None)
            train, validation = _metrics(vector, ensemble.n_classes, ensemble.target_std)
            return {**validation, **train}

        return score

    def to_payload(self) -> dict[str, Any]:
        task, ensemble = self._fitted_state()
        return {
            "task": task.to_json(),
            "ensemble": json.dumps(ensemble.to_dict()),
            "history": json.dumps(getattr(self, "history_", [])),
            "eval_every": int(self.eval_every),
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> GradientBoostedTrees:
        task = TrainingTask.from_json(payload["task"])
        params = BoostingParams.from_dict(task.model)
        model = cls(
            DataStructure.from_dict(task.datastructure),
            schema=Schema.from_dict(task.schema),
            seed=task.seed,
            eval_every=int(payload["eval_every"]),
            **params.to_dict(),
        )
        model.set_trained(task, json.loads(payload["ensemble"]), json.loads(payload["history"]))
        return model

    # -- inference ----------------------------------------------------------------------
    def _fitted_state(self) -> tuple[TrainingTask, Ensemble]:
        self._require_trained()
        return self._fitted

    def _bins(self, frame: pd.DataFrame, require_target: bool) -> np.ndarray:
        task, ensemble = self._fitted_state()
        if not isinstance(frame, pd.DataFrame):
            raise ConfigError(f"predict() takes a pandas DataFrame, got {type(frame).__name__}.")
        schema = Schema.from_dict(task.schema)
        target = self.datastructure.target
        keep = [c for c in schema.columns if require_target or c != target or c in frame]
        caller = "evaluate()" if require_target else "predict() / predict_proba()"
        schema.select(keep).validate(
            frame,
            where=f"the frame passed to {caller}",
            fix="Fix the frame: give it the columns the model was trained on, with values its "
            "schema allows (extra columns are ignored).",
        )
        return ensemble.binning.transform(frame)

    @property
    def regression(self) -> bool:
        _, ensemble = self._fitted_state()
        return ensemble.n_classes == 0

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Class probabilities ``[rows, classes]``, in the order of :attr:`classes_`."""
        _, ensemble = self._fitted_state()
        if self.regression:
            raise ConfigError(
                "predict_proba(): this model is a regression (its target is continuous); "
                "call predict() for its values."
            )
        return ensemble.predict_proba(self._bins(frame, require_target=False))

    @property
    def classes_(self) -> list[Any]:
        task, _ = self._fitted_state()
        schema = Schema.from_dict(task.schema)
        return list(self.datastructure.resolve(schema, task="auto").classes)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Predicted class labels (values of the target column), or a regression's values."""
        _, ensemble = self._fitted_state()
        if self.regression:
            return ensemble.predict_values(self._bins(frame, require_target=False))
        labels = self.predict_proba(frame).argmax(axis=1)
        return np.asarray(self.classes_, dtype=object)[labels]

    def evaluate_frame(self, frame: pd.DataFrame) -> dict[str, float]:
        """Loss, accuracy, AUC, F1, precision and recall on a labelled frame; for a
        regression RMSE, MAE and R^2 (against the frame's own variance)."""
        from fedplug.learning import classification_metrics

        _, ensemble = self._fitted_state()
        bins = self._bins(frame, require_target=True)
        target = self.datastructure.target
        if self.regression:
            truth = pd.to_numeric(frame[target], errors="coerce").to_numpy(dtype=np.float64)
            error = ensemble.predict_values(bins) - truth
            variance = float(np.var(truth)) or 1.0
            return {
                "rmse": float(np.sqrt(np.mean(error**2))),
                "mae": float(np.mean(np.abs(error))),
                "r2": 1.0 - float(np.mean(error**2)) / variance,
            }
        proba = ensemble.predict_proba(bins)
        labels = pd.Index(self.classes_).get_indexer(frame[target])
        if (labels < 0).any():
            raise ConfigError(
                f"evaluate(): the target column {target!r} holds values "
                f"outside the model's classes {self.classes_}; fix the frame"
            )
        picked = proba[np.arange(len(labels)), labels]
        loss = float(np.minimum(-np.log(np.maximum(picked, 1e-300)), MAX_ROW_LOSS).mean())
        return {"loss": loss, **classification_metrics(labels, proba)}
