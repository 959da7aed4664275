"""The conformance check for aggregator plugins: the contract of ``fedplug.Aggregator``.

The check trains a tiny task on tiny temporary pods (an in-process LocalGrid, no Ray)
and compares it with fedplug's plain FedAvg aggregation, so it checks what an
aggregator promises end to end: it computes the pods' weighted mean.
"""

from __future__ import annotations

import copy
import inspect
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from flwr.serverapp.strategy import FedAvg as FlowerFedAvg

from fedplug._flower import Aggregator, FedAvg, RunResult
from fedplug._plugins import API_ATTRIBUTE, PLUGIN_API_VERSION, SUPPORTED_PLUGIN_APIS
from fedplug.data import Pod

from ._checks import _max_diff
from ._pods import pin_each_other
from ._secure import _run, _task, write_tiny_pods


def _fail(check: str, aggregator: object, problem: str, fix: str = "") -> AssertionError:
    return AssertionError(
        f"{check}: aggregator {type(aggregator).__name__}: {problem}" + (f" {fix}" if fix else "")
    )


def _declarations(aggregator: object) -> None:
    check = "check_aggregator_declarations"
    if not isinstance(aggregator, Aggregator):
        raise _fail(
            check,
            aggregator,
            f"is a {type(aggregator).__name__}, not a fedplug.Aggregator.",
            "Subclass fedplug.plugins.Aggregator and implement wrap().",
        )
    api = getattr(aggregator, API_ATTRIBUTE, None)
    if api not in SUPPORTED_PLUGIN_APIS["aggregators"]:
        raise _fail(
            check,
            aggregator,
            f"declares {API_ATTRIBUTE}={api!r}; aggregators must be written for plugin API "
            f"{sorted(SUPPORTED_PLUGIN_APIS['aggregators'])}.",
            f"Port it to plugin API {PLUGIN_API_VERSION} (see docs/writing-a-plugin.md).",
        )
    if not isinstance(type(aggregator).secure, bool):
        raise _fail(check, aggregator, "declares secure as a non-bool.", "Set secure = True/False.")


def _init_stores_parameters(aggregator: Aggregator) -> None:
    """As in scikit-learn: every ``__init__`` parameter is stored under its own name, so
    the aggregator can be rebuilt from its parameters (and shown, and put in a config)."""
    check = "check_aggregator_init"
    params = [
        p
        for p in inspect.signature(type(aggregator).__init__).parameters.values()
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    missing = [p.name for p in params if p.name not in vars(aggregator)]
    if missing:
        raise _fail(
            check,
            aggregator,
            f"does not store the __init__ parameter(s) {missing} under the same name.",
            "__init__ only stores its parameters (self.x = x); checks go in validate().",
        )
    if all(p.default is not p.empty for p in params):
        # As scikit-learn's check: built with its defaults, it holds exactly those.
        fresh = type(aggregator)()
        changed = [p.name for p in params if not _same(getattr(fresh, p.name, None), p.default)]
        if changed:
            raise _fail(
                check,
                aggregator,
                f"built with its defaults, it holds other values for {changed}.",
                "__init__ only stores its parameters (self.x = x); checks go in validate().",
            )
    try:
        rebuilt = type(aggregator)(**{p.name: getattr(aggregator, p.name) for p in params})
    except Exception as exc:  # noqa: BLE001 - reported to the plugin author
        raise _fail(check, aggregator, f"cannot be rebuilt from its parameters: {exc}") from exc
    if repr(rebuilt) != repr(aggregator):
        raise _fail(
            check,
            aggregator,
            f"rebuilt from its parameters it is {rebuilt!r}, not {aggregator!r}.",
            "__init__ must store its parameters unchanged.",
        )
    try:
        aggregator.validate()
    except Exception as exc:  # noqa: BLE001 - reported to the plugin author
        raise _fail(check, aggregator, f"validate() rejects its own parameters: {exc}") from exc


def _train(aggregator: Aggregator, tmp: Path, seed: int, n_pods: int, rounds: int) -> RunResult:
    paths = write_tiny_pods(tmp, n_pods, seed)
    if aggregator.secure:
        # Pods that require secure aggregation: a "secure" aggregator that sends anything
        # in plaintext is refused by them.
        for path in paths:
            config = yaml.safe_load(path.read_text())
            config["policy"] = {"require_secure_aggregation": True}
            path.write_text(yaml.safe_dump(config, sort_keys=False))
        pin_each_other(paths)
    pods = [Pod.from_yaml(p) for p in paths]
    task, initial = _task(pods, seed)
    strategy = FlowerFedAvg(
        min_train_nodes=n_pods, min_evaluate_nodes=n_pods, min_available_nodes=n_pods
    )
    return _run(paths, pods, task, initial, strategy, aggregator, rounds)


def check_aggregator(
    aggregator: Aggregator, *, n_pods: int = 3, seed: int = 0, rounds: int = 2, atol: float = 1e-4
) -> None:
    """Run every aggregator check on ``aggregator`` (an instance, with its parameters).

    - it subclasses ``fedplug.Aggregator`` and declares plugin API 2 and ``secure``;
    - ``__init__`` only stores its parameters; ``validate()`` accepts them;
    - a ``rounds``-round run on ``n_pods`` tiny pods ends with the same model and metrics
      as fedplug's plain FedAvg (within ``atol``), with one history entry per round;
      with ``secure = True`` the pods require secure aggregation (and refuse plaintext);
    - ``setup`` returns the run's state and keeps nothing on the aggregator: it is
      unchanged by a run, and a second run with it gives the same model.
    """
    _declarations(aggregator)
    _init_stores_parameters(aggregator)
    check = "check_aggregator_round"
    before = copy.deepcopy(vars(aggregator))
    with tempfile.TemporaryDirectory(prefix="fedplug-kit-") as tmp:
        results = []
        for i, agg in enumerate((FedAvg(), aggregator, aggregator)):
            where = Path(tmp) / str(i)
            where.mkdir()
            try:
                results.append(_train(agg, where, seed, max(n_pods, 2), rounds))
            except Exception as exc:  # noqa: BLE001 - reported with the run named
                raise _fail(
                    check,
                    aggregator,
                    f"a {rounds}-round run on {n_pods} tiny pods failed"
                    + (" (the second run with the same instance)" if i == 2 else "")
                    + f": {type(exc).__name__}: {exc}",
                ) from exc
    plain, first, second = results
    if [h.get("round") for h in first.history] != list(range(1, rounds + 1)):
        raise _fail(
            check,
            aggregator,
            f"its strategy's history has rounds {[h.get('round') for h in first.history]}, "
            f"not 1..{rounds}.",
            "Return a PodStrategy from wrap() and end each round with record_round().",
        )
    diff, worst = _max_diff(plain.weights, first.weights)
    if not diff <= atol:
        raise _fail(
            check,
            aggregator,
            f"its model differs from plain FedAvg's by up to {diff:.3g} (array {worst}; "
            f"tolerance {atol:g}).",
            "An aggregator computes the pods' weighted mean (by example count).",
        )
    for key in ("loss", "accuracy"):
        a = plain.history[-1]["evaluate"].get(key)
        b = first.history[-1]["evaluate"].get(key)
        if b is None or abs(a - b) > max(atol, 1e-3):
            raise _fail(
                check,
                aggregator,
                f"final validation {key} is {b}, plain FedAvg's is {a}.",
                "Aggregate evaluation metrics as weighted means of the pods' metrics.",
            )
    check = "check_aggregator_state"
    if _changed(before, vars(aggregator)):
        raise _fail(
            check,
            aggregator,
            f"a run changed its attributes ({sorted(before)} -> {sorted(vars(aggregator))}).",
            "setup() returns the run's state, which wrap() takes; keep nothing on self.",
        )
    diff, worst = _max_diff(first.weights, second.weights)
    if not diff <= atol:
        raise _fail(
            check,
            aggregator,
            f"a second run with the same instance gave a different model (up to {diff:.3g}).",
            "setup() returns the run's state, which wrap() takes; keep nothing on self.",
        )


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(a, b))
    return bool(type(a) is type(b) and a == b)


def _changed(before: dict[str, Any], after: dict[str, Any]) -> bool:
    return before.keys() != after.keys() or any(not _same(v, after[k]) for k, v in before.items())
