"""The server half of a model plugin: one small base class, and loading any saved model.

A model plugin is two classes registered under one name: this half (entry-point group
``fedplug.models``), which the modeller builds, fits, saves and predicts with, and a pod
half (group ``fedplug.pod_models``, a :class:`fedplug.learning.PodModel`) that pods load
from what their owners installed. What travels to pods is data: the plugin's name and its
parameters in a :class:`~fedplug.learning.TrainingTask`, never code.

A subclass implements the hooks below; :meth:`Model.fit`, :meth:`Model.serialize` and
:func:`load_model` work for every model, so ``fit`` (simulation), ``fedplug run``,
``flwr run``, ``fedplug evaluate`` and the conformance kit treat all models alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from fedplug._errors import ConfigError, ModelFileError, NotFittedError, PluginError

if TYPE_CHECKING:
    from fedplug.data import Schema
    from fedplug.learning import DataStructure, Exchange, TrainingTask

#: Every model file is a ``torch.save`` of a dict with this format, the model plugin's
#: name and the plugin's own payload (plain data: loadable with ``weights_only=True``).
FILE_FORMAT = "fedplug.model/2"
#: Files written before model plugins named themselves, by their format.
LEGACY_FORMATS = {"fedplug.tabular-classifier/1": "tabular-classifier"}

#: How an exchange-driven model trains: ``driver(exchange, task, on_round)`` returns the
#: trained state (plain data) and the history.
ModelDriver = Callable[["Exchange", "TrainingTask", Any], tuple[Any, list[dict]]]
#: How an exchange-driven model is scored on pods: ``(exchange, task, state) -> metrics``.
ModelEvaluator = Callable[["Exchange", "TrainingTask", Any], dict[str, float]]


def _missing(cls: type, hook: str) -> NotImplementedError:
    return NotImplementedError(
        f"model plugin {cls.__name__} does not implement {hook}(), which every model's "
        "server half must (see docs/writing-a-plugin.md#models; fedplug.testing.check_model "
        "checks a model plugin)"
    )


class Model:
    """Base class of a model plugin's server half.

    ``__init__`` only stores its parameters (as in scikit-learn); they are checked by
    :meth:`check_params` when the model is fitted. A subclass sets :attr:`plugin_name`
    and implements :meth:`check_params`, :meth:`training_task`, :meth:`set_trained`,
    :meth:`to_payload`, :meth:`from_payload`, :meth:`predict` and :meth:`evaluate`, plus
    one way of training:

    - by rounds of the Flower strategy (weights averaged by the aggregator): a ``rounds``
      parameter and :meth:`initial_weights`;
    - by its own exchanges (vectors summed by the aggregator): :meth:`driver`.
    """

    #: The fedplug plugin API this model is written for.
    fedplug_plugin_api = 2
    #: The model's entry-point name in ``fedplug.models``; also the name of its pod half
    #: in ``fedplug.pod_models``, which pods load.
    plugin_name: ClassVar[str] = ""

    datastructure: DataStructure
    schema: Schema | None
    # Set by set_trained: the task trained on (with its scaling), the final weights or
    # driver state, and the history.
    task_: TrainingTask
    state_: Any
    history_: list[dict[str, Any]]
    #: Each pod's own metrics from the last evaluate(pod_identifiers=...), if plaintext.
    pod_metrics_: dict[str, dict[str, float]]

    # -- hooks a model implements ---------------------------------------------------------

    def check_params(self) -> None:
        """Raise ``ConfigError`` naming a bad parameter and its fix."""
        raise _missing(type(self), "check_params")

    def training_task(self, schema: Schema) -> TrainingTask:
        """The task pods get: the schema's used columns, the datastructure, the model's
        parameters as data, and ``model_plugin=self.plugin_name``."""
        raise _missing(type(self), "training_task")

    def progress_total(self) -> int:
        """How many steps training reports progress in: rounds (the default reads
        ``self.rounds``), trees, ..."""
        rounds = getattr(self, "rounds", None)
        if rounds is None:
            raise NotImplementedError(
                f"{type(self).__name__} has no `rounds` parameter: a model trained by its own "
                "exchanges overrides progress_total()"
            )
        return int(rounds)

    def prepare(self, exchange: Exchange, task: TrainingTask) -> TrainingTask:
        """The task to train, once the cross-pod scaling is in it: a model may add what
        more it needs from sums over pods (e.g. class counts). Default: ``task`` as is."""
        return task

    def initial_weights(self, task: TrainingTask) -> list[np.ndarray]:
        """The round-0 weights of a model trained by strategy rounds (``[]`` otherwise)."""
        return []

    def driver(self) -> ModelDriver | None:
        """The training loop of a model trained by its own exchanges (``None`` otherwise)."""
        return None

    def set_trained(self, task: TrainingTask, state: Any, history: list[dict]) -> None:
        """Become the model trained on ``task``: ``state`` is the final weights (strategy
        rounds) or what the driver returned. Overrides call ``super().set_trained(...)``,
        which keeps ``task_``, ``state_`` and ``history_``."""
        self.task_ = task
        self.state_ = state
        self.history_ = list(history)
        self._trained = True

    def evaluator(self) -> ModelEvaluator | None:
        """How a model trained by its own exchanges is scored on pods:
        ``evaluator(exchange, task, state) -> metrics`` (``None``: by an evaluate round)."""
        return None

    def to_payload(self) -> dict[str, Any]:
        """The trained model as plain data (str, numbers, lists, dicts, tensors)."""
        raise _missing(type(self), "to_payload")

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Model:
        """Inverse of :meth:`to_payload`: a trained model, ready to predict."""
        raise _missing(cls, "from_payload")

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        raise _missing(type(self), "predict")

    def evaluate_frame(self, frame: pd.DataFrame) -> dict[str, float]:
        """Metrics on a labelled frame held here."""
        raise _missing(type(self), "evaluate_frame")

    # -- what every model gets ----------------------------------------------------------
    @property
    def trained(self) -> bool:
        return getattr(self, "_trained", False)

    def _require_trained(self) -> None:
        if not self.trained:
            raise NotFittedError("this model is not trained: call fit() or deserialize() first.")

    def fit(
        self,
        pod_identifiers: Sequence[Any],
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
        """Train across the pods in a local simulation, or on a SuperLink; return the history.

        ``pod_identifiers``: pod names, pod files or in-memory ``fedplug.Pod`` objects.
        ``aggregator``: ``FedAvg()`` (default) or ``SecureAggregator(...)``. ``backend``:
        "inprocess", "ray" (Flower's Simulation Engine) or "auto". ``verbose``: a line per
        round (True), silent (False), or 2 to add Flower's log. ``on_round(round, train,
        evaluate)`` is called after each round.

        ``federation``: the name of a SuperLink connection in Flower's configuration file
        ($FLWR_HOME/config.toml): the task runs there, on the pods of those names, through
        ``flwr run``. Only plain data travels (installed plugins' names and parameters), so
        a class defined here, a strategy object or ``on_round`` is refused. The model
        becomes the trained one when the SuperLink's output directory is readable here;
        otherwise its file stays on the SuperLink's machine (a warning names it).
        """
        from fedplug._api import fit_model

        return fit_model(
            self,
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
            federation=federation,
        )

    def evaluate(
        self,
        frame: pd.DataFrame | None = None,
        *,
        pod_identifiers: Sequence[Any] | None = None,
        aggregator: Any = None,
        pod_dirs: Sequence[Path] | None = None,
        round_timeout: float = 300.0,
        backend: str = "auto",
        verbose: bool | int = False,
    ) -> dict[str, float]:
        """Score the trained model on a labelled ``frame``, or on the pods' own validation
        rows with ``pod_identifiers`` (their policy must accept ``evaluate`` tasks).

        On pods the metrics are the pods' weighted means, through ``aggregator`` (secure
        when it is); with plaintext aggregation each pod's own metrics are also kept in
        :attr:`pod_metrics_` (``{}`` under secure aggregation).
        """
        self._require_trained()
        if pod_identifiers is None:
            if frame is None:
                raise ConfigError(
                    "evaluate() needs a labelled frame, or pod_identifiers=[...] to score the "
                    "model on the pods' own data."
                )
            return self.evaluate_frame(frame)
        if frame is not None:
            raise ConfigError("evaluate() takes a frame or pod_identifiers, not both.")
        from fedplug._api import evaluate_model

        metrics, self.pod_metrics_ = evaluate_model(
            self,
            pod_identifiers,
            aggregator,
            pod_dirs=pod_dirs,
            round_timeout=round_timeout,
            backend=backend,
            verbose=verbose,
        )
        return metrics

    def serialize(self, path: str | Path) -> Path:
        """Write the trained model to one file (``torch.save`` of plain data)."""
        import torch

        self._require_trained()
        payload = {
            "format": FILE_FORMAT,
            "plugin": type(self).plugin_name,
            "model": self.to_payload(),
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(payload, path)
        return path

    @classmethod
    def deserialize(cls, path: str | Path) -> Model:
        """Read a model file written by :meth:`serialize` (of this model class)."""
        plugin, payload = read_model_file(path)
        if cls.plugin_name and plugin != cls.plugin_name:
            raise ModelFileError(
                f"{str(path)!r} holds a {plugin!r} model, not a {cls.plugin_name!r} one; load "
                "it with fedplug.load_model(path), which reads any model file."
            )
        return _from_payload(cls, path, payload)


def read_model_file(path: str | Path) -> tuple[str, Mapping[str, Any]]:
    """``(model plugin name, payload)`` of a model file, or a ModelFileError saying why not."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(
            f"model file {str(path)!r} does not exist; pass the path serialize() wrote "
            "(fedplug run writes outputs/<date>/<time>/model.pt)."
        )
    try:
        payload = torch.load(path, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise ModelFileError(f"{str(path)!r} is not a fedplug model file: {exc}") from exc
    if not isinstance(payload, Mapping):
        raise ModelFileError(f"{str(path)!r} is not a fedplug model file.")
    fmt = payload.get("format")
    if fmt in LEGACY_FORMATS:
        return LEGACY_FORMATS[str(fmt)], payload
    if fmt != FILE_FORMAT or not isinstance(payload.get("plugin"), str):
        raise ModelFileError(
            f"{str(path)!r} is not a fedplug model file (expected format {FILE_FORMAT!r} "
            f"naming its model plugin, got {fmt!r})."
        )
    return str(payload["plugin"]), payload.get("model") or {}


def _from_payload(cls: type[Model], path: str | Path, payload: Mapping[str, Any]) -> Model:
    try:
        return cls.from_payload(payload)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        # A file in the right format with parts missing or of the wrong kind.
        raise ModelFileError(
            f"{str(path)!r} is not a usable {cls.plugin_name!r} model file: its content is "
            f"incomplete or malformed ({type(exc).__name__}: {exc}); serialize() the model "
            "again."
        ) from exc


def load_model(path: str | Path) -> Model:
    """Read any model file: the model plugin it names is loaded by its entry-point name."""
    from fedplug._plugins import load_plugin

    plugin, payload = read_model_file(path)
    # By installed name only: a model file never makes fedplug import a path it names.
    if ":" in plugin or "." in plugin:
        raise ModelFileError(f"{str(path)!r} names model plugin {plugin!r}, not a plugin name.")
    try:
        cls = load_plugin("models", plugin)
    except PluginError as exc:
        raise ModelFileError(
            f"{str(path)!r} holds a {plugin!r} model, but that model plugin cannot be loaded: {exc}"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Model)):
        raise ModelFileError(
            f"{str(path)!r} holds a {plugin!r} model, whose plugin {cls!r} is not a "
            "fedplug.plugins.Model; install a release of it built for plugin API 2."
        )
    return _from_payload(cls, path, payload)
