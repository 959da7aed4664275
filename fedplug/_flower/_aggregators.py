"""Aggregators: how the pods' weighted mean is computed (plaintext or secure).

:class:`Aggregator` is the extension point; a plugin subclasses it and implements
:meth:`Aggregator.wrap`. ``__init__`` only stores parameters (checked in ``wrap``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedplug._errors import ConfigError
from fedplug.secagg import Q

from ._session import PodSession
from ._wrapper import AggregationStrategy, RoundCallback


class Aggregator(ABC):
    """Turns an inner weighted-mean strategy into the strategy a run executes."""

    fedplug_plugin_api: ClassVar[int] = 1
    #: Whether updates leave pods masked (pods requiring secure aggregation check this).
    secure: ClassVar[bool] = False

    def setup(self, grid: Grid, session: PodSession) -> None:  # noqa: B027 - optional hook
        """One-time work per run before the first exchange (key agreement, say)."""

    @abstractmethod
    def wrap(
        self, inner: Strategy, session: PodSession, on_round: RoundCallback | None = None
    ) -> Strategy:
        """Return the strategy to run: ``inner`` with this aggregation applied."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"


class FedAvg(Aggregator):
    """Plaintext federated averaging, weighted by each pod's number of examples."""

    def wrap(
        self, inner: Strategy, session: PodSession, on_round: RoundCallback | None = None
    ) -> Strategy:
        return AggregationStrategy(inner, session, on_round)


class SecureAggregator(Aggregator):
    """Additive secret sharing over GF(q): the server learns only the pods' sum.

    Parameters
    ----------
    prime_q:
        The field's prime (default 2^61 - 1).
    clip:
        Model updates (a pod's weights minus the global weights) are clipped to
        ``[-clip, clip]`` per element before encoding; clipped elements are counted.
    stats_clip:
        The bound for the centred feature moments used for scaling (values of order one;
        the first exchange, of raw means, sizes its own bound from the field).
    max_weight:
        The largest number of examples a pod may report.
    min_pods:
        No sum is released over fewer pods.
    timeout:
        Seconds to wait for pods in each exchange, and for the one re-masking redo.
    """

    secure: ClassVar[bool] = True

    def __init__(
        self,
        prime_q: int = Q,
        clip: float = 8.0,
        stats_clip: float = 1e4,
        max_weight: int = 1_000_000,
        min_pods: int = 2,
        timeout: float = 120.0,
    ) -> None:
        self.prime_q = prime_q
        self.clip = clip
        self.stats_clip = stats_clip
        self.max_weight = max_weight
        self.min_pods = min_pods
        self.timeout = timeout

    def validate(self) -> None:
        checks = [
            (
                isinstance(self.prime_q, int) and 2**31 < self.prime_q < 2**62,
                "prime_q",
                "a prime between 2^31 and 2^62, e.g. 2305843009213693951 (2^61 - 1)",
            ),
            (float(self.clip) > 0, "clip", "a positive number"),
            (float(self.stats_clip) > 0, "stats_clip", "a positive number"),
            (
                isinstance(self.max_weight, int) and self.max_weight >= 1,
                "max_weight",
                "an integer >= 1",
            ),
            (isinstance(self.min_pods, int) and self.min_pods >= 2, "min_pods", "an integer >= 2"),
            (float(self.timeout) > 0, "timeout", "a positive number of seconds"),
        ]
        for ok, name, fix in checks:
            if not ok:
                raise ConfigError(
                    f"SecureAggregator: {name}={getattr(self, name)!r} is invalid; use {fix}."
                )

    def setup(self, grid: Grid, session: PodSession) -> None:
        from ._secure_strategy import run_key_setup

        self.validate()
        self._keys = run_key_setup(grid, session, self)

    def wrap(
        self, inner: Strategy, session: PodSession, on_round: RoundCallback | None = None
    ) -> Strategy:
        from ._secure_strategy import SecureAggregationStrategy

        return SecureAggregationStrategy(inner, session, self, self._keys, on_round)
