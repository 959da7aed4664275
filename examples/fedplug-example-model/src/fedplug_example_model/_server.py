"""The server half of ``ridge-classifier``: parameters, the one-exchange fit, prediction.

Training is one exchange of sufficient statistics, summed over pods by the run's
aggregator (securely under ``aggregator=secure``), then a closed-form solve on the server;
a second exchange only reports train and validation loss and accuracy. The trained model
is a weight matrix and needs no pod to predict.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from numbers import Real
from typing import Any

import numpy as np
import pandas as pd
from fedplug import ConfigError, DataStructure, Schema, TrainingError
from fedplug.learning import TrainingTask, classification_metrics
from fedplug.plugins import Exchange, Model, ModelDriver

from ._design import (
    Design,
    metrics_from_sums,
    row_losses,
    softmax,
    solve,
    statistics_size,
    unpack_statistics,
)

PLUGIN_NAME = "ridge-classifier"


def _evaluation_exchange(exchange: Exchange, weights: list[list[float]]) -> np.ndarray:
    """``[rows, loss sum / MAX_ROW_LOSS, correct]`` of the training then the validation
    rows, summed over pods. Each element is at most a pod's row count (bound=None)."""
    return exchange.sum({"op": "evaluate", "weights": weights}, 6, None)


def ridge_driver(alpha: float) -> ModelDriver:
    """The training loop fedplug runs once the task carries the cross-pod scaling."""

    def drive(
        exchange: Exchange, task: TrainingTask, on_round: Any
    ) -> tuple[dict[str, Any], list[dict]]:
        design = Design.from_task(task)
        p, k = design.n_features, design.n_classes
        # bound=None: every element of one pod's answer is at most its row count (the
        # statistics are divided by CLIP^2 and CLIP for that; see _design.statistics).
        summed = exchange.sum({"op": "statistics"}, statistics_size(p, k), None)
        xtx, xty, n = unpack_statistics(summed, p, k)
        if np.rint(n) < 1:
            raise TrainingError("ridge-classifier: the pods hold no training rows")
        weights = solve(xtx, xty, alpha)
        train, evaluate = metrics_from_sums(_evaluation_exchange(exchange, weights.tolist()))
        if on_round is not None:
            on_round(1, train, evaluate)
        return {"weights": weights.tolist()}, [{"round": 1, "train": train, "evaluate": evaluate}]

    return drive


class RidgeClassifier(Model):
    """A federated ridge (L2-regularised least-squares) classifier, trained in one exchange.

    Each pod sends ``X^T X``, ``X^T Y`` and its row count, where ``X`` is the one-hot
    categoricals, the continuous columns standardized with the cross-pod mean and std
    (clipped to ``[-10, 10]``) and an intercept, and ``Y`` the one-hot classes; the server
    solves ``(X^T X + alpha I) W = X^T Y`` (the intercept is penalised too). ``predict``
    is the argmax of ``X W``; ``predict_proba`` is a softmax of those scores, a ranking,
    **not** calibrated probabilities. ``__init__`` only stores its parameters.
    """

    plugin_name = PLUGIN_NAME

    _fitted: tuple[TrainingTask, np.ndarray]

    def __init__(
        self,
        datastructure: DataStructure,
        schema: Schema | None = None,
        alpha: float = 1.0,
        seed: int = 42,
    ) -> None:
        self.datastructure = datastructure
        self.schema = schema
        self.alpha = alpha
        self.seed = seed

    # -- the model-plugin contract ----------------------------------------------------
    def check_params(self) -> None:
        if not isinstance(self.datastructure, DataStructure):
            raise ConfigError(
                "ridge-classifier: datastructure must be a fedplug.DataStructure, got "
                f"{type(self.datastructure).__name__}."
            )
        alpha = self.alpha
        if (
            isinstance(alpha, bool)
            or not isinstance(alpha, Real)
            or not math.isfinite(alpha)
            or alpha <= 0
        ):
            raise ConfigError(
                f"ridge-classifier: alpha={alpha!r} must be a positive finite number (the L2 "
                "penalty; it makes the solve well-posed), e.g. model.alpha=1.0."
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"ridge-classifier: seed={self.seed!r} must be an integer.")

    def progress_total(self) -> int:
        return 1  # one training exchange

    def training_task(self, schema: Schema) -> TrainingTask:
        resolved = self.datastructure.resolve(schema)
        used = [resolved.target, *resolved.categorical, *resolved.continuous]
        return TrainingTask(
            schema=schema.select(used).to_dict(),
            datastructure=self.datastructure.to_dict(),
            model={"alpha": float(self.alpha)},
            optimizer={},
            epochs=None,
            seed=int(self.seed),
            model_plugin=self.plugin_name,
        )

    def driver(self) -> ModelDriver:
        return ridge_driver(float(self.alpha))

    def set_trained(self, task: TrainingTask, state: Any, history: list[dict]) -> None:
        super().set_trained(task, state, history)
        self._fitted = (task, np.asarray(state["weights"], dtype=np.float64))

    def evaluator(self) -> Callable[[Exchange, TrainingTask, Any], dict[str, float]]:
        """``model.evaluate(pod_identifiers=...)``: the pods' validation rows, scored by the
        same summed exchange as after training (train_* for their training rows)."""

        def score(exchange: Exchange, task: TrainingTask, state: Any) -> dict[str, float]:
            train, validation = metrics_from_sums(_evaluation_exchange(exchange, state["weights"]))
            return {**validation, **train}

        return score

    def to_payload(self) -> dict[str, Any]:
        task, weights = self._fitted_state()
        return {
            "task": task.to_json(),
            # Python floats: the weights come back bit for bit.
            "weights": weights.tolist(),
            "history": json.dumps(getattr(self, "history_", [])),
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> RidgeClassifier:
        task = TrainingTask.from_json(payload["task"])
        model = cls(
            DataStructure.from_dict(task.datastructure),
            schema=Schema.from_dict(task.schema),
            alpha=float(task.model["alpha"]),
            seed=task.seed,
        )
        model.set_trained(task, {"weights": payload["weights"]}, json.loads(payload["history"]))
        return model

    # -- what training learned --------------------------------------------------------
    def _fitted_state(self) -> tuple[TrainingTask, np.ndarray]:
        self._require_trained()
        return self._fitted

    @property
    def coef_(self) -> np.ndarray:
        """The weights ``W``: one row per entry of :attr:`feature_names_`, a column per class."""
        return self._fitted_state()[1].copy()

    @property
    def feature_names_(self) -> list[str]:
        return Design.from_task(self._fitted_state()[0]).feature_names

    @property
    def classes_(self) -> list[Any]:
        return list(Design.from_task(self._fitted_state()[0]).classes)

    # -- inference ----------------------------------------------------------------------
    def _design(self, frame: pd.DataFrame, require_target: bool) -> tuple[Design, np.ndarray]:
        task, _ = self._fitted_state()
        caller = "evaluate()" if require_target else "predict() / predict_proba()"
        if not isinstance(frame, pd.DataFrame):
            raise ConfigError(f"{caller} takes a pandas DataFrame, got {type(frame).__name__}.")
        schema = Schema.from_dict(task.schema)
        target = self.datastructure.target
        keep = [c for c in schema.columns if require_target or c != target or c in frame]
        schema.select(keep).validate(
            frame,
            where=f"the frame passed to {caller}",
            fix="Fix the frame: give it the columns the model was trained on, with values its "
            "schema allows (extra columns are ignored).",
        )
        design = Design.from_task(task)
        return design, design.features(frame)

    def decision_function(self, frame: pd.DataFrame) -> np.ndarray:
        """The scores ``X W`` ``[rows, classes]``."""
        _, weights = self._fitted_state()
        return self._design(frame, require_target=False)[1] @ weights

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """A softmax of the scores, in the order of :attr:`classes_`. Not calibrated: the
        scores are least-squares fits of one-hot labels, not log-odds."""
        return softmax(self.decision_function(frame))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Predicted class labels (values of the target column): the argmax of the scores."""
        labels = self.decision_function(frame).argmax(axis=1)
        return np.asarray(self.classes_, dtype=object)[labels]

    def evaluate_frame(self, frame: pd.DataFrame) -> dict[str, float]:
        """``model.evaluate(frame)``: loss (log loss of :meth:`predict_proba`), accuracy, precision, recall, F1 and,
        for two classes, AUC on a labelled frame."""
        _, weights = self._fitted_state()
        design, x = self._design(frame, require_target=True)
        labels = design.labels(frame, "the frame passed to evaluate()")
        proba = softmax(x @ weights)
        loss = float(row_losses(proba, labels).mean())
        return {"loss": loss, **classification_metrics(labels, proba)}
