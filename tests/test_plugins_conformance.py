"""fedplug.testing: the built-in strategies pass; deliberately broken ones fail clearly."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pytest
from flwr.app import ArrayRecord, Message, MetricRecord
from flwr.serverapp.strategy import FedAvg, FedMedian, Strategy

from fedplug import ConfigError
from fedplug._plugins import load_plugin
from fedplug.testing import (
    check_declarations,
    check_determinism,
    check_parameters,
    check_round_types,
    check_secure_aggregation,
    check_strategy,
    check_weighted_mean,
    fake_grid,
    make_updates,
    run_round,
)


@pytest.mark.parametrize(
    ("name", "server_step"),
    [
        ("fedavg", False),
        ("fedavgm", False),
        ("fedprox", False),
        ("fedadam", True),
        ("fedyogi", True),
        ("fedadagrad", True),
    ],
)
def test_builtin_strategies_conform(name: str, server_step: bool) -> None:
    check_strategy(load_plugin("strategies", name), server_step=server_step)


def test_builtin_strategies_with_params_conform() -> None:
    fedavgm = load_plugin("strategies", "fedavgm")
    check_strategy(fedavgm, params={"server_momentum": 0.9}, server_step=True, secure=False)


def test_a_server_step_is_not_the_mean() -> None:
    with pytest.raises(
        AssertionError, match=r"check_weighted_mean: strategy 'fedadam'.*server_step=True"
    ):
        check_weighted_mean(load_plugin("strategies", "fedadam"), server_step=False)


def test_fixed_rounds_give_the_numpy_weighted_mean() -> None:
    updates = make_updates(4, seed=3)
    result = run_round(
        load_plugin("strategies", "fedavg")(4), fake_grid(updates), updates.global_arrays
    )
    for got, expected in zip(
        result.arrays.to_numpy_ndarrays(), updates.expected_arrays(), strict=True
    ):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    w = np.asarray(updates.weights, float)
    assert result.train_metrics["train_loss"] == pytest.approx(
        np.dot(w, updates.train_loss) / w.sum()
    )
    assert result.evaluate_metrics["accuracy"] == pytest.approx(
        np.dot(w, updates.eval_accuracy) / w.sum()
    )


# -- deliberately broken strategies ----------------------------------------------------------
def plugin(
    cls: type[Strategy], *, secure: bool = True, api: Any = 1, strict: bool = True, **extra: Any
) -> Callable[..., Strategy]:
    """A strategy factory in the project's style, over ``cls``."""

    def factory(n_pods: int, **params: Any) -> Strategy:
        if strict and params:
            raise ConfigError(f"strategy {cls.__name__!r} has no parameter(s) {sorted(params)}")
        return cls(
            fraction_train=1.0,
            fraction_evaluate=1.0,
            min_train_nodes=n_pods,
            min_evaluate_nodes=n_pods,
            min_available_nodes=n_pods,
            **extra,
        )

    factory.__name__ = f"broken-{cls.__name__.lower()}"
    if api is not None:
        factory.fedplug_plugin_api = api  # type: ignore[attr-defined]
    factory.secure_compatible = secure  # type: ignore[attr-defined]
    return factory


class UnweightedMean(FedAvg):
    """Ignores num-examples: every pod counts the same."""

    def aggregate_train(self, server_round: int, replies: Iterable[Message]):
        arrays = [m.content["arrays"].to_numpy_ndarrays() for m in replies]
        mean = [np.mean([a[i] for a in arrays], axis=0) for i in range(len(arrays[0]))]
        return ArrayRecord(mean), MetricRecord({})


class Noisy(FedAvg):
    """Adds unseeded noise to the mean."""

    def aggregate_train(self, server_round: int, replies: Iterable[Message]):
        arrays, metrics = super().aggregate_train(server_round, replies)
        rng = np.random.default_rng()
        return ArrayRecord(
            [a + rng.normal(0, 1e-3, a.shape) for a in arrays.to_numpy_ndarrays()]
        ), metrics


class CountsReplies(FedAvg):
    """A function of the mean and of how many pods answered: breaks under secure aggregation."""

    def aggregate_train(self, server_round: int, replies: Iterable[Message]):
        replies = list(replies)
        arrays, metrics = super().aggregate_train(server_round, replies)
        bump = 0.01 * len(replies)
        return ArrayRecord([a + bump for a in arrays.to_numpy_ndarrays()]), metrics


class Frozen(FedAvg):
    """Never moves: returns the global arrays it sent."""

    def configure_train(self, server_round, arrays, config, grid):  # noqa: ANN001
        self._sent = arrays
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]):
        _, metrics = super().aggregate_train(server_round, replies)
        return self._sent, metrics


class HalfThePods(FedAvg):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.update(fraction_train=0.5, min_train_nodes=1)
        super().__init__(**kwargs)


class WeightedMetricsOnly(FedAvg):
    """Reports the largest loss instead of the weighted mean."""

    def aggregate_train(self, server_round: int, replies: Iterable[Message]):
        replies = list(replies)
        arrays, _ = super().aggregate_train(server_round, replies)
        worst = max(float(m.content["metrics"]["train_loss"]) for m in replies)
        return arrays, MetricRecord({"train_loss": worst})


def test_unweighted_mean_fails_weighted_mean_correctness() -> None:
    with pytest.raises(
        AssertionError,
        match=r"check_weighted_mean: strategy 'broken-unweightedmean'.*"
        r"weights \[10, 40, 90\].*differ from numpy's weighted mean",
    ):
        check_strategy(plugin(UnweightedMean), secure=False)


@pytest.mark.parametrize("cls", [UnweightedMean, FedMedian])
def test_not_a_function_of_the_mean_fails_even_with_a_server_step(cls: type[Strategy]) -> None:
    with pytest.raises(
        AssertionError, match=r"not a function of the weighted mean.*secure_compatible = False"
    ):
        check_weighted_mean(plugin(cls), server_step=True)


def test_depending_on_the_number_of_replies_fails() -> None:
    with pytest.raises(AssertionError, match=r"single synthetic reply that secure aggregation"):
        check_weighted_mean(plugin(CountsReplies), server_step=True)


def test_ignoring_the_updates_fails() -> None:
    with pytest.raises(AssertionError, match=r"ignores the pods' updates"):
        check_weighted_mean(plugin(Frozen), server_step=True)


def test_metrics_must_be_weighted_means() -> None:
    with pytest.raises(AssertionError, match=r"metric 'train_loss' is .*weighted mean"):
        check_weighted_mean(plugin(WeightedMetricsOnly))


def test_unseeded_randomness_fails_determinism() -> None:
    with pytest.raises(AssertionError, match=r"check_determinism: strategy 'broken-noisy'.*seed=0"):
        check_determinism(plugin(Noisy))


def test_sampling_some_pods_fails_round_types() -> None:
    with pytest.raises(
        AssertionError, match=r"check_round_types.*expected each of the 4 pods once"
    ):
        check_round_types(plugin(HalfThePods), n_pods=4)


def test_missing_or_unsupported_api_fails_declarations() -> None:
    with pytest.raises(AssertionError, match=r"check_declarations.*fedplug_plugin_api=None.*= 2"):
        check_declarations(plugin(FedAvg, api=None))
    with pytest.raises(AssertionError, match=r"api=3; this fedplug supports \[1, 2\]"):
        check_strategy(plugin(FedAvg, api=3))


def test_secure_compatible_must_be_declared() -> None:
    factory = plugin(FedAvg)
    del factory.secure_compatible
    with pytest.raises(AssertionError, match=r"secure_compatible=None; it must be True or False"):
        check_declarations(factory)


def test_silently_accepting_unknown_parameters_fails() -> None:
    with pytest.raises(AssertionError, match=r"check_parameters.*accepted an unknown parameter"):
        check_parameters(plugin(FedAvg, strict=False))


def test_returning_something_else_than_a_strategy_fails() -> None:
    def factory(n_pods: int, **params: Any) -> Any:
        if params:
            raise ConfigError(f"unknown {sorted(params)}")
        return {"fraction_train": 1.0}

    factory.fedplug_plugin_api = 1  # type: ignore[attr-defined]
    factory.secure_compatible = False  # type: ignore[attr-defined]
    with pytest.raises(
        AssertionError, match=r"returned a dict, not a flwr\.serverapp\.strategy\.Strategy"
    ):
        check_strategy(factory)


def test_non_secure_strategy_skips_the_mean_checks_but_cannot_be_secure_checked() -> None:
    median = plugin(FedMedian, secure=False)
    check_strategy(median)  # declares itself incompatible: only generic checks apply
    with pytest.raises(AssertionError, match=r"secure_compatible=False"):
        check_secure_aggregation(median)


def test_secure_check_catches_a_strategy_that_lies_about_compatibility() -> None:
    with pytest.raises(
        AssertionError,
        match=r"check_secure_aggregation: strategy 'broken-fedmedian'.*"
        r"differs from the one under plain FedAvg aggregation",
    ):
        check_secure_aggregation(plugin(FedMedian))
