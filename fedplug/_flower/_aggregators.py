"""Aggregators: how the pods' weighted mean is computed (plaintext or secure).

:class:`Aggregator` is the extension point (plugin API 2). A plugin subclasses it:

- ``__init__`` only stores its parameters; :meth:`Aggregator.validate` checks them;
- :meth:`Aggregator.setup` runs once per run, before the first exchange, and *returns*
  the run's state (keys, say); it keeps nothing on the aggregator, which may serve
  several runs;
- :meth:`Aggregator.wrap` takes that state and returns the :class:`PodStrategy` to run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Generic, TypeVar

from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedplug.secagg import Q

from ._pod_strategy import PlaintextStrategy, PodStrategy, RoundCallback
from ._secure_strategy import (
    SecureAggregationStrategy,
    SecureSettings,
    SecureSetup,
    run_key_setup,
)
from ._session import PodSession

#: The type of the state an aggregator's ``setup`` returns and its ``wrap`` takes.
StateT = TypeVar("StateT")


class Aggregator(ABC, Generic[StateT]):
    """Turns an inner weighted-mean strategy into the strategy a run executes."""

    fedplug_plugin_api: ClassVar[int] = 2
    #: Whether updates leave pods masked (pods requiring secure aggregation check this).
    secure: ClassVar[bool] = False

    def validate(self) -> None:  # noqa: B027 - an aggregator without parameters needs none
        """Check the parameters ``__init__`` stored; raise :class:`~fedplug.ConfigError`
        naming the parameter and the fix. Called before any pod is contacted."""

    def setup(self, grid: Grid, session: PodSession) -> StateT:
        """Once per run, before the first exchange (key agreement, say).

        Returns the state :meth:`wrap` takes; the default has none.
        """
        return None  # type: ignore[return-value]  # StateT is None for stateless aggregators

    @abstractmethod
    def wrap(
        self,
        inner: Strategy,
        session: PodSession,
        state: StateT,
        on_round: RoundCallback | None = None,
    ) -> PodStrategy:
        """Return the strategy to run: ``inner`` with this aggregation applied.

        Called for each phase of a run (feature statistics, then training) with the state
        :meth:`setup` returned.
        """

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"


class FedAvg(Aggregator[None]):
    """Plaintext federated averaging, weighted by each pod's number of examples."""

    def wrap(
        self,
        inner: Strategy,
        session: PodSession,
        state: None,
        on_round: RoundCallback | None = None,
    ) -> PodStrategy:
        return PlaintextStrategy(inner, session, on_round)


class SecureAggregator(Aggregator[SecureSetup]):
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
        Seconds to wait for pods in each exchange (uploads, and the unmask exchange).
    threshold:
        How many pods' shares recover a pod's self-mask (default: a majority of the run's
        pods, the least the pods accept; a pod's policy.min_threshold may ask for more). A
        server colluding with fewer pods than this learns no pod's update.
    dropout:
        ``"recover"`` (default): each exchange is double-masked and followed by one small
        unmask exchange, so pods that drop out are left out of the sum and the run goes on
        without them. ``"abort"``: one exchange per round, and a dropout ends the run.
    neighbours:
        ``"all"``: every pair of pods shares a mask (O(K) masks per pod); ``"harary"``:
        each pod masks with its 2 * ceil(log2 K) neighbours in a Harary graph (Bell et
        al.): O(log K) work instead of O(K), with a weaker guarantee (README, Secure
        aggregation, Neighbours). Default ``"all"``. Applies to ``dropout="recover"``.
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
        threshold: int | None = None,
        dropout: str = "recover",
        neighbours: str | None = None,
    ) -> None:
        self.prime_q = prime_q
        self.clip = clip
        self.stats_clip = stats_clip
        self.max_weight = max_weight
        self.min_pods = min_pods
        self.timeout = timeout
        self.threshold = threshold
        self.dropout = dropout
        self.neighbours = neighbours

    def settings(self) -> SecureSettings:
        """The parameters, checked and frozen for a run."""
        return SecureSettings(
            prime_q=self.prime_q,
            clip=self.clip,
            stats_clip=self.stats_clip,
            max_weight=self.max_weight,
            min_pods=self.min_pods,
            timeout=self.timeout,
            threshold=self.threshold,
            dropout=self.dropout,
            neighbours=self.neighbours,
        )

    def validate(self) -> None:
        self.settings()

    def setup(self, grid: Grid, session: PodSession) -> SecureSetup:
        settings = self.settings()
        return SecureSetup(settings, run_key_setup(grid, session, settings))

    def wrap(
        self,
        inner: Strategy,
        session: PodSession,
        state: SecureSetup,
        on_round: RoundCallback | None = None,
    ) -> PodStrategy:
        return SecureAggregationStrategy(inner, session, state.settings, state.keys, on_round)
