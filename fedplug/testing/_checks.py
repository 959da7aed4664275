"""Conformance checks for strategy plugins, run against fake pods with fixed updates.

Each ``check_*`` returns None or raises AssertionError whose message names the check,
the strategy, what was expected, what happened, and how to fix it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, Message, MetricRecord
from flwr.serverapp.strategy import Strategy

from fedplug._errors import FedplugError
from fedplug._plugins import API_ATTRIBUTE, PLUGIN_API_VERSION, SUPPORTED_PLUGIN_APIS

from ._fixed import (
    FixedUpdates,
    RoundResult,
    fake_grid,
    make_updates,
    negated,
    quiet_flower,
    run_round,
    same_mean,
    seed_everything,
)

StrategyFactory = Callable[..., Strategy]

# float32 arrays averaged in float32 or float64: differences beyond these are real.
RTOL = 1e-5
ATOL = 1e-6
# Two results "differ" when some element moves by more than this (the kit's deltas are ~0.1).
CHANGED = 1e-3


def label(factory: Any) -> str:
    return str(getattr(factory, "__name__", None) or repr(factory))


class _Check:
    """Failure messages of one check for one strategy."""

    def __init__(self, check: str, factory: Any) -> None:
        self.prefix = f"{check}: strategy {label(factory)!r}"

    def fail(self, problem: str, fix: str = "") -> AssertionError:
        return AssertionError(f"{self.prefix}: {problem}" + (f" {fix}" if fix else ""))


def _params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(params or {})


def build(
    factory: StrategyFactory, n_pods: int, params: Mapping[str, Any] | None, seed: int, c: _Check
) -> Strategy:
    seed_everything(seed)
    try:
        strategy = factory(n_pods, **_params(params))
    except Exception as exc:  # noqa: BLE001 - reported with the plugin's own words
        raise c.fail(
            f"factory({n_pods}, **{_params(params)}) raised {type(exc).__name__}: {exc}",
            "A strategy factory must build a strategy from n_pods and its parameters.",
        ) from exc
    if not isinstance(strategy, Strategy):
        raise c.fail(
            f"factory({n_pods}) returned a {type(strategy).__name__}, not a "
            "flwr.serverapp.strategy.Strategy.",
            "Return a Flower Message-API strategy instance.",
        )
    return strategy


def _round(
    strategy: Strategy,
    updates: FixedUpdates,
    c: _Check,
    arrays: Sequence[np.ndarray] | None = None,
    server_round: int = 1,
    mean_of: FixedUpdates | None = None,
) -> RoundResult:
    grid = fake_grid(updates)
    try:
        with quiet_flower():
            return run_round(
                strategy,
                grid,
                updates.global_arrays if arrays is None else arrays,
                server_round,
                mean_of=mean_of,
            )
    except AssertionError as exc:
        raise c.fail(f"round {server_round}: {exc}") from exc


def _arrays(result: RoundResult, c: _Check, what: str) -> list[np.ndarray]:
    if not isinstance(result.arrays, ArrayRecord):
        raise c.fail(f"{what}: aggregate_train returned no arrays ({result.arrays!r}).")
    return result.arrays.to_numpy_ndarrays()


def _max_diff(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> tuple[float, int]:
    diffs = [
        float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
        for x, y in zip(a, b, strict=True)
    ]
    worst = int(np.argmax(diffs)) if diffs else 0
    return (diffs[worst] if diffs else 0.0), worst


def _close(a: Sequence[np.ndarray], b: Sequence[np.ndarray], rtol: float, atol: float) -> bool:
    return len(a) == len(b) and all(
        np.shape(x) == np.shape(y)
        and np.allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), rtol=rtol, atol=atol)
        for x, y in zip(a, b, strict=False)
    )


def _metric(record: MetricRecord | None, key: str) -> float | None:
    if record is None or key not in record:
        return None
    value = record[key]
    return float(value) if isinstance(value, (int, float)) else None


# -- declarations ----------------------------------------------------------------------------
def check_declarations(factory: StrategyFactory) -> None:
    """The factory is callable and declares ``fedplug_plugin_api`` and ``secure_compatible``."""
    c = _Check("check_declarations", factory)
    if not callable(factory):
        raise c.fail(
            f"is a {type(factory).__name__}, not callable.",
            "A strategy plugin is a factory `factory(n_pods, **params) -> Strategy`.",
        )
    api = getattr(factory, API_ATTRIBUTE, None)
    if isinstance(api, bool) or not isinstance(api, int):
        raise c.fail(
            f"declares {API_ATTRIBUTE}={api!r}.",
            f"Set `{label(factory)}.{API_ATTRIBUTE} = {PLUGIN_API_VERSION}` (the plugin API it "
            "was written for).",
        )
    if api not in SUPPORTED_PLUGIN_APIS["strategies"]:
        raise c.fail(
            f"declares {API_ATTRIBUTE}={api}; this fedplug supports "
            f"{sorted(SUPPORTED_PLUGIN_APIS['strategies'])}.",
            f"Port it to plugin API {PLUGIN_API_VERSION}.",
        )
    secure = getattr(factory, "secure_compatible", None)
    if not isinstance(secure, bool):
        raise c.fail(
            f"declares secure_compatible={secure!r}; it must be True or False.",
            "Set `secure_compatible = True` when its aggregation depends on the pods' replies "
            "only through their weighted mean (FedAvg, FedAdam, ...), else False.",
        )


def check_parameters(factory: StrategyFactory, *, n_pods: int = 3) -> None:
    """An unknown parameter is a fedplug error that names it (not a bare TypeError)."""
    c = _Check("check_parameters", factory)
    bogus = "no_such_parameter"
    try:
        factory(n_pods, **{bogus: 1})
    except FedplugError as exc:
        if bogus not in str(exc):
            raise c.fail(
                f"the error for an unknown parameter does not name it: {exc}",
                "Name the parameter and list the valid ones.",
            ) from exc
        return
    except Exception as exc:  # noqa: BLE001
        raise c.fail(
            f"an unknown parameter raised {type(exc).__name__}: {exc}",
            "Raise fedplug.ConfigError naming the parameter and listing the valid ones "
            "(users select strategy parameters in Hydra configs).",
        ) from exc
    raise c.fail(
        f"factory({n_pods}, {bogus}=1) accepted an unknown parameter.",
        "Raise fedplug.ConfigError naming it, so a typo in a config is not ignored.",
    )


# -- one round -------------------------------------------------------------------------------
def _check_messages(
    messages: list[Any], n_pods: int, kind: str, c: _Check, global_arrays: Sequence[np.ndarray]
) -> None:
    if not all(isinstance(m, Message) for m in messages):
        raise c.fail(
            f"configure_{kind} returned {[type(m).__name__ for m in messages]}, not Messages."
        )
    destinations = sorted(m.metadata.dst_node_id for m in messages)
    if destinations != list(range(1, n_pods + 1)):
        raise c.fail(
            f"configure_{kind} addressed nodes {destinations}; expected each of the "
            f"{n_pods} pods once ({list(range(1, n_pods + 1))}).",
            "fedplug runs every pod of a task in every round (pods' policies count on it): "
            "sample all n_pods nodes (fraction 1.0, min nodes n_pods).",
        )
    for message in messages:
        if not message.metadata.message_type.startswith(kind):
            raise c.fail(
                f"configure_{kind} sent a message of type {message.metadata.message_type!r}; "
                f"expected {kind!r}."
            )
        records = list(message.content.array_records.values())
        if len(records) != 1:
            raise c.fail(f"configure_{kind} sent {len(records)} ArrayRecords; expected one.")
        sent = records[0].to_numpy_ndarrays()
        if not _close(sent, global_arrays, 0.0, 0.0):
            raise c.fail(
                f"configure_{kind} did not send the arrays it was given.",
                "Send the current global arrays unchanged; server-side steps belong in "
                "aggregate_train.",
            )


def check_round_types(
    factory: StrategyFactory,
    *,
    n_pods: int = 3,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
) -> None:
    """One train/evaluate round: message and return types, shapes and dtypes."""
    c = _Check("check_round_types", factory)
    strategy = build(factory, n_pods, params, seed, c)
    updates = make_updates(n_pods, seed)
    result = _round(strategy, updates, c)
    _check_messages(result.train_messages, n_pods, "train", c, updates.global_arrays)
    if not (result.train_metrics is None or isinstance(result.train_metrics, MetricRecord)):
        raise c.fail(
            f"aggregate_train returned metrics of type {type(result.train_metrics).__name__}; "
            "expected a MetricRecord or None."
        )
    arrays = _arrays(result, c, "round 1")
    shapes = [a.shape for a in arrays]
    expected = [a.shape for a in updates.global_arrays]
    if shapes != expected:
        raise c.fail(
            f"aggregate_train returned arrays of shapes {shapes}; expected the global arrays' "
            f"shapes {expected}."
        )
    # Flower's FedAdam returns float64 from float32 arrays; a model loads either.
    if not all(np.issubdtype(a.dtype, np.floating) for a in arrays):
        raise c.fail(
            f"aggregate_train returned arrays of dtypes {[str(a.dtype) for a in arrays]}; "
            "expected floating-point arrays like the global ones."
        )
    if not all(np.all(np.isfinite(a)) for a in arrays):
        raise c.fail("aggregate_train returned non-finite values from finite updates.")
    _check_messages(result.evaluate_messages, n_pods, "evaluate", c, arrays)
    if not (result.evaluate_metrics is None or isinstance(result.evaluate_metrics, MetricRecord)):
        raise c.fail(
            f"aggregate_evaluate returned {type(result.evaluate_metrics).__name__}; expected a "
            "MetricRecord or None."
        )


def _run_rounds(
    factory: StrategyFactory,
    n_pods: int,
    seed: int,
    params: Mapping[str, Any] | None,
    rounds: int,
    c: _Check,
) -> list[tuple[list[np.ndarray], dict[str, Any], dict[str, Any]]]:
    strategy = build(factory, n_pods, params, seed, c)
    updates = make_updates(n_pods, seed)
    arrays: Sequence[np.ndarray] = updates.global_arrays
    out = []
    for server_round in range(1, rounds + 1):
        result = _round(strategy, updates, c, arrays, server_round)
        arrays = _arrays(result, c, f"round {server_round}")
        out.append(
            (
                arrays,
                dict(result.train_metrics or {}),
                dict(result.evaluate_metrics or {}),
            )
        )
    return out


def check_determinism(
    factory: StrategyFactory,
    *,
    n_pods: int = 3,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    rounds: int = 2,
) -> None:
    """Two runs with the same seed and the same pod answers give identical results."""
    c = _Check("check_determinism", factory)
    first = _run_rounds(factory, n_pods, seed, params, rounds, c)
    second = _run_rounds(factory, n_pods, seed, params, rounds, c)
    for server_round, (a, b) in enumerate(zip(first, second, strict=True), start=1):
        if not _close(a[0], b[0], 0.0, 0.0):
            diff, worst = _max_diff(a[0], b[0])
            raise c.fail(
                f"two runs with seed={seed} and identical pod answers gave different arrays in "
                f"round {server_round} (array {worst} differs by up to {diff:.3g}).",
                "Draw randomness only from Python's `random` or numpy's global generator (the "
                "kit seeds both), or from a generator seeded by a parameter.",
            )
        if a[1:] != b[1:]:
            raise c.fail(
                f"two runs with seed={seed} gave different metrics in round {server_round}: "
                f"{a[1:]} vs {b[1:]}."
            )


# -- weighted mean ---------------------------------------------------------------------------
def _check_metric(
    record: MetricRecord | None, key: str, expected: float, where: str, c: _Check
) -> None:
    value = _metric(record, key)
    if value is not None and not np.isclose(value, expected, rtol=1e-6, atol=1e-9):
        raise c.fail(
            f"{where}: metric {key!r} is {value:.9g}; the weighted mean of the pods' values "
            f"(weights 'num-examples') is {expected:.9g}.",
            "A secure-compatible strategy must aggregate metrics as weighted means: secure "
            "aggregation reveals nothing else.",
        )


def check_weighted_mean(
    factory: StrategyFactory,
    *,
    n_pods: int = 3,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    server_step: bool | None = None,
) -> None:
    """The aggregate depends on the pods' replies only through their weighted mean.

    Without a server step (``server_step=False``: FedAvg, FedProx) the aggregated arrays must
    equal numpy's weighted mean. With one (FedAdam, momentum), the result must be the same for
    any replies with the same weighted mean, equal what the strategy makes of the one
    synthetic mean reply the secure path gives it, and change when the mean changes.
    ``server_step=None`` reads the factory's optional ``server_step`` attribute (default False).
    """
    c = _Check("check_weighted_mean", factory)
    if getattr(factory, "secure_compatible", None) is not True:
        raise c.fail(
            "declares secure_compatible=False: its aggregation is not claimed to be a weighted "
            "mean, so there is nothing to check.",
            "Declare secure_compatible = True if it is one, or skip this check.",
        )
    if server_step is None:
        server_step = bool(getattr(factory, "server_step", False))
    n_pods = max(n_pods, 2)
    base = make_updates(n_pods, seed)
    plain = _round(build(factory, n_pods, params, seed, c), base, c)
    arrays = _arrays(plain, c, "fixed updates")
    weights = base.weights
    if not server_step:
        expected = base.expected_arrays()
        if not _close(arrays, expected, RTOL, ATOL):
            diff, worst = _max_diff(arrays, expected)
            raise c.fail(
                f"one round from fixed pod updates (weights {weights}) returned arrays that "
                f"differ from numpy's weighted mean by up to {diff:.3g} (array {worst}).",
                "Return the mean of the pods' arrays weighted by their 'num-examples'; if the "
                "strategy applies a server-side step (like FedAdam), pass server_step=True or "
                "set `server_step = True` on the factory.",
            )
    _check_metric(plain.train_metrics, "train_loss", base.weighted(base.train_loss), "train", c)
    for key, values in (("loss", base.eval_loss), ("accuracy", base.eval_accuracy)):
        _check_metric(plain.evaluate_metrics, key, base.weighted(values), "evaluate", c)

    other = _round(build(factory, n_pods, params, seed, c), same_mean(base, seed), c)
    if not _close(_arrays(other, c, "same mean"), arrays, RTOL, 1e-5):
        diff, worst = _max_diff(_arrays(other, c, "same mean"), arrays)
        raise c.fail(
            f"two sets of pod updates with the same weighted mean (weights {weights}) gave "
            f"results differing by up to {diff:.3g} (array {worst}): the result is not a "
            "function of the weighted mean.",
            "Secure aggregation reveals only the weighted mean, so such a strategy must declare "
            "secure_compatible = False (or aggregate by a weighted mean).",
        )

    secure_like = _round(build(factory, n_pods, params, seed, c), base, c, mean_of=base)
    secure_arrays = _arrays(secure_like, c, "the secure path's mean reply")
    if not _close(secure_arrays, arrays, RTOL, 1e-5):
        diff, worst = _max_diff(secure_arrays, arrays)
        raise c.fail(
            "aggregating the single synthetic reply that secure aggregation hands the strategy "
            f"(the weighted mean, with the total 'num-examples') differs by up to {diff:.3g} "
            f"(array {worst}) from aggregating the pods' own replies.",
            "Under secure aggregation the strategy sees one reply carrying the weighted mean; "
            "its result must not depend on the number of replies.",
        )

    moved = _round(build(factory, n_pods, params, seed, c), negated(base), c)
    diff, _ = _max_diff(_arrays(moved, c, "negated updates"), arrays)
    if diff <= CHANGED:
        raise c.fail(
            "the result did not change when the pods' updates were reversed: the strategy "
            "ignores the pods' updates.",
            "Aggregate the arrays in the pods' replies.",
        )
