"""The conformance check for model plugins: the contract of ``fedplug.plugins.Model``.

A plugin author runs it in their own CI, as scikit-learn's ``check_estimator``:

    from fedplug.testing import check_model
    check_model(MyModel(DataStructure(target="label"), rounds=2))

It trains the model on tiny temporary pods in this process (columns ``x1``, ``x2``
continuous, ``color`` categorical, ``label`` with two classes; no Ray; their policy accepts
the model under test by its plugin name), under plain and secure aggregation, and checks
what every model promises: its declarations and pod half,
that ``__init__`` only stores parameters, that training leaves a usable model, that a
saved model predicts the same after loading, that secure aggregation trains the same
model as plain, and that a second fit gives the same model (no state kept between fits).
"""

from __future__ import annotations

import copy
import inspect
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from fedplug._model_base import Model, load_model
from fedplug._plugins import API_ATTRIBUTE, SUPPORTED_PLUGIN_APIS, load_plugin
from fedplug.learning import PodModel

from ._secure import write_tiny_pods

#: Columns of the kit's pods, for the datastructure of the model under test.
KIT_COLUMNS = {"x1": "continuous", "x2": "continuous", "color": "categorical", "label": "binary"}


def _fail(check: str, model: object, problem: str, fix: str = "") -> AssertionError:
    return AssertionError(
        f"{check}: model {type(model).__name__}: {problem}" + (f" {fix}" if fix else "")
    )


def _declarations(model: object) -> None:
    check = "check_model_declarations"
    if not isinstance(model, Model):
        raise _fail(
            check,
            model,
            f"is a {type(model).__name__}, not a fedplug.plugins.Model.",
            "Subclass fedplug.plugins.Model (see docs/writing-a-plugin.md).",
        )
    api = getattr(model, API_ATTRIBUTE, None)
    if api not in SUPPORTED_PLUGIN_APIS["models"]:
        raise _fail(check, model, f"declares {API_ATTRIBUTE}={api!r}.", "Set it to 2.")
    name = type(model).plugin_name
    if not name or ":" in name or "." in name:
        raise _fail(
            check,
            model,
            f"has plugin_name={name!r}.",
            "Set plugin_name to the model's entry-point name (in fedplug.models and "
            "fedplug.pod_models).",
        )
    hooks = [
        "check_params",
        "training_task",
        "to_payload",
        "from_payload",
        "predict",
        "evaluate_frame",
    ]
    missing = [h for h in hooks if getattr(type(model), h) is getattr(Model, h)]
    if missing:
        raise _fail(
            check,
            model,
            f"does not implement {missing}.",
            "Every model's server half implements them (see docs/writing-a-plugin.md).",
        )
    strategy_rounds = type(model).initial_weights is not Model.initial_weights
    if strategy_rounds == (type(model).driver is not Model.driver):
        raise _fail(
            check,
            model,
            "must train one way: implement initial_weights() (rounds of the Flower "
            "strategy) or driver() (its own exchanges), not both and not neither.",
        )
    try:
        pod_half = load_plugin("pod_models", name)
    except Exception as exc:  # noqa: BLE001 - any failure to load is the finding
        raise _fail(
            check,
            model,
            f"its pod half {name!r} does not load from fedplug.pod_models: {exc}",
            "Register the PodModel subclass under the same name in "
            '[project.entry-points."fedplug.pod_models"] and reinstall the package.',
        ) from exc
    if not (isinstance(pod_half, type) and issubclass(pod_half, PodModel)):
        raise _fail(check, model, f"its pod half {pod_half!r} is not a fedplug.plugins.PodModel.")


def _init_stores_parameters(model: Model) -> None:
    check = "check_model_init"
    params = [
        p
        for p in inspect.signature(type(model).__init__).parameters.values()
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    missing = [p.name for p in params if p.name not in vars(model)]
    if missing:
        raise _fail(
            check,
            model,
            f"does not store the __init__ parameter(s) {missing} under the same name.",
            "__init__ only stores its parameters (self.x = x); checks go in check_params().",
        )


def _kit_pods(tmp: Path, model: Model) -> list[Path]:
    """The kit's tiny pods, whose policy accepts the model under test.

    A pod runs only the model plugins its ``policy.accepted_models`` names (default: the
    built-ins), so a third party's model needs pods whose owner accepts it, as its own
    pods' owners would.
    """
    paths = write_tiny_pods(tmp, 3, seed=7, rows=60)
    for path in paths:
        config = yaml.safe_load(path.read_text())
        config["policy"] = {"accepted_models": [type(model).plugin_name]}
        path.write_text(yaml.safe_dump(config, sort_keys=False))
    return paths


def _frame(paths: list[Path]) -> pd.DataFrame:
    return pd.concat([pd.read_csv(p.with_suffix(".csv")) for p in paths], ignore_index=True).head(
        40
    )


def _outputs(model: Model, frame: pd.DataFrame) -> np.ndarray:
    proba = getattr(model, "predict_proba", None)
    if callable(proba):
        return np.asarray(proba(frame), dtype=np.float64)
    return np.asarray(model.predict(frame))


def _fit(model: Model, paths: list[Path], aggregator: Any) -> list[dict]:
    return model.fit([str(p) for p in paths], aggregator, backend="inprocess", verbose=False)


def _trained_model(model: Model, history: Any, paths: list[Path]) -> None:
    check = "check_model_fit"
    if not isinstance(history, list) or not history:
        raise _fail(check, model, f"fit() returned {history!r}, not a non-empty history list.")
    for entry in history:
        if not (isinstance(entry, dict) and {"round", "train", "evaluate"} <= set(entry)):
            raise _fail(
                check,
                model,
                f"a history entry {entry!r} lacks round/train/evaluate.",
                "Return entries like {'round': 1, 'train': {...}, 'evaluate': {...}}.",
            )
    frame = _frame(paths)
    labels = model.predict(frame)
    if len(labels) != len(frame):
        raise _fail(check, model, f"predict() returned {len(labels)} values for {len(frame)} rows.")
    metrics = model.evaluate(frame)
    if not isinstance(metrics, dict) or not all(
        isinstance(v, (int, float)) for v in metrics.values()
    ):
        raise _fail(check, model, f"evaluate() returned {metrics!r}, not a dict of numbers.")


def _round_trip(model: Model, tmp: Path, paths: list[Path]) -> None:
    check = "check_model_serialize"
    frame = _frame(paths)
    before = _outputs(model, frame)
    path = model.serialize(tmp / "model.pt")
    for loaded in (load_model(path), type(model).deserialize(path)):
        if type(loaded) is not type(model):
            raise _fail(check, model, f"loading its file gave a {type(loaded).__name__}.")
        after = _outputs(loaded, frame)
        if before.shape != after.shape or not np.array_equal(before, after):
            raise _fail(
                check,
                model,
                "predicts differently after serialize() and loading the file.",
                "to_payload() must hold everything predict() uses; from_payload() must "
                "restore it exactly.",
            )


def check_model(model: Model, *, atol: float = 1e-4) -> None:
    """Raise AssertionError naming the first broken promise of a model plugin.

    ``model`` is an unfitted instance set up for the kit's pods (target ``label``; see
    :data:`KIT_COLUMNS`) and small enough to train in seconds.
    """
    from fedplug._flower import FedAvg, SecureAggregator

    _declarations(model)
    _init_stores_parameters(model)
    model.check_params()
    pristine = copy.deepcopy(model)
    with tempfile.TemporaryDirectory(prefix="fedplug-check-model-") as tmp_dir:
        tmp = Path(tmp_dir)
        paths = _kit_pods(tmp, model)
        history = _fit(model, paths, FedAvg())
        _trained_model(model, history, paths)
        frame = _frame(paths)
        plain = _outputs(model, frame)

        changed = [
            name
            for name, value in vars(pristine).items()
            if not name.startswith("_") and repr(getattr(model, name, None)) != repr(value)
        ]
        if changed:
            raise _fail(
                "check_model_keeps_parameters",
                model,
                f"fit() changed the parameter(s) {changed}.",
                "Keep what training learns in attributes ending in _ or starting with _.",
            )
        # The same instance, fitted again: nothing of the first fit may leak into it.
        _fit(model, paths, FedAvg())
        if not np.allclose(_outputs(model, frame), plain, atol=atol, rtol=0):
            raise _fail(
                "check_model_repeatable",
                model,
                "two fits with the same parameters and pods give different models.",
                "Seed every random choice from the model's parameters, and keep no state "
                "on the model between fits.",
            )
        secure = copy.deepcopy(pristine)
        _fit(secure, paths, SecureAggregator())
        if not np.allclose(_outputs(secure, frame), plain, atol=atol, rtol=0):
            diff = float(np.max(np.abs(_outputs(secure, frame) - plain)))
            raise _fail(
                "check_model_secure_equals_plain",
                model,
                f"trains a different model under SecureAggregator() than under FedAvg() "
                f"(outputs differ by up to {diff:.3g}).",
                "Every exchange must be a weighted mean or a sum that the aggregator "
                "computes (see docs/writing-a-plugin.md); values must fit the bounds the "
                "exchange declares.",
            )
        _round_trip(model, tmp, paths)
