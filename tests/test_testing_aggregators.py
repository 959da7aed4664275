"""check_aggregator: the aggregator contract (plugin API 2), performed on real aggregators
and on broken ones, each of which it must catch."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from flwr.app import ArrayRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedplug import FedAvg, SecureAggregator
from fedplug.plugins import Aggregator, PlaintextStrategy, PodSession, PodStrategy, RoundCallback
from fedplug.testing import check_aggregator


class CountingFedAvg(Aggregator[list[int]]):
    """A third party's aggregator, written against the public API only: plain FedAvg that
    counts the rounds of each run in the state its setup returns."""

    def __init__(self, label: str = "counting") -> None:
        self.label = label

    def setup(self, grid: Grid, session: PodSession) -> list[int]:
        return []

    def wrap(
        self,
        inner: Strategy,
        session: PodSession,
        state: list[int],
        on_round: RoundCallback | None = None,
    ) -> PodStrategy:
        def counted(server_round: int, train: dict, evaluate: dict) -> None:
            state.append(server_round)
            if on_round is not None:
                on_round(server_round, train, evaluate)

        return PlaintextStrategy(inner, session, counted)


def test_fedplug_s_own_aggregators_conform() -> None:
    check_aggregator(FedAvg())
    check_aggregator(SecureAggregator(timeout=30.0))


def test_a_third_party_aggregator_on_the_public_api_conforms() -> None:
    check_aggregator(CountingFedAvg())


class KeepsStateOnSelf(CountingFedAvg):
    """Plugin API 1 style: setup stores the run's state on the aggregator."""

    def setup(self, grid: Grid, session: PodSession) -> list[int]:
        self._runs = getattr(self, "_runs", 0) + 1
        return []


def test_state_kept_on_the_aggregator_is_caught() -> None:
    with pytest.raises(AssertionError, match=r"check_aggregator_state.*keep nothing on self"):
        check_aggregator(KeepsStateOnSelf())


class ChecksInInit(CountingFedAvg):
    def __init__(self, label: str = "counting") -> None:
        self.label = label.upper()  # not stored as given


def test_an_init_that_changes_its_parameters_is_caught() -> None:
    with pytest.raises(AssertionError, match=r"aggregator_init.*other values for \[.label.\]"):
        check_aggregator(ChecksInInit())


class ClaimsSecure(CountingFedAvg):
    secure = True  # but its strategy sends plaintext updates


def test_a_secure_claim_with_plaintext_updates_is_refused_by_the_pods() -> None:
    with pytest.raises(AssertionError, match=r"check_aggregator_round.*refused"):
        check_aggregator(ClaimsSecure())


class HalvesTheMean(CountingFedAvg):
    def wrap(
        self,
        inner: Strategy,
        session: PodSession,
        state: list[int],
        on_round: RoundCallback | None = None,
    ) -> PodStrategy:
        return _Halving(inner, session, on_round)


class _Halving(PlaintextStrategy):
    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        arrays, metrics = super().aggregate_train(server_round, replies)
        assert arrays is not None
        return ArrayRecord([a * 0.5 for a in arrays.to_numpy_ndarrays()]), metrics


def test_an_aggregate_that_is_not_the_weighted_mean_is_caught() -> None:
    with pytest.raises(AssertionError, match=r"check_aggregator_round.*differs from plain"):
        check_aggregator(HalvesTheMean())


class ReturnsAFlowerStrategy(CountingFedAvg):
    def wrap(self, inner: Strategy, *args: Any, **kwargs: Any) -> Any:
        return inner


def test_wrap_must_return_a_pod_strategy() -> None:
    with pytest.raises(AssertionError, match=r"not a fedplug PodStrategy"):
        check_aggregator(ReturnsAFlowerStrategy())


def test_not_an_aggregator_is_caught() -> None:
    with pytest.raises(AssertionError, match=r"not a fedplug.Aggregator"):
        check_aggregator(object())  # type: ignore[arg-type]
