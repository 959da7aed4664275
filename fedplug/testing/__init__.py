"""fedplug's conformance kit: checks a plugin author runs in their own tests.

Like scikit-learn's ``check_estimator``::

    from fedplug.testing import check_strategy

    def test_conformance():
        check_strategy(my_factory)

Every check returns None or raises AssertionError whose message names the check, the
plugin, the problem and the fix. The strategy checks run against fake pods answering
fixed updates on an in-process grid (no Ray); the secure check trains a tiny model on
tiny temporary pods, once under plain and once under secure aggregation.
``check_aggregator`` checks an aggregator plugin (its contract, and a tiny run against
plain FedAvg); ``check_datasource`` checks a datasource plugin: read-only, a new frame per
call, clear errors for missing data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._aggregators import check_aggregator
from ._checks import (
    StrategyFactory,
    check_declarations,
    check_determinism,
    check_parameters,
    check_round_types,
    check_weighted_mean,
)
from ._datasources import check_datasource
from ._fixed import FixedUpdates, RoundResult, fake_grid, fake_pod_app, make_updates, run_round
from ._models import KIT_COLUMNS, check_model
from ._pods import pin_each_other
from ._secure import check_secure_aggregation, write_tiny_pods

__all__ = [
    "KIT_COLUMNS",
    "check_model",
    "FixedUpdates",
    "RoundResult",
    "StrategyFactory",
    "check_aggregator",
    "check_datasource",
    "check_declarations",
    "check_determinism",
    "check_parameters",
    "check_round_types",
    "check_secure_aggregation",
    "check_strategy",
    "check_weighted_mean",
    "fake_grid",
    "fake_pod_app",
    "make_updates",
    "pin_each_other",
    "run_round",
    "write_tiny_pods",
]


def check_strategy(
    factory: StrategyFactory,
    *,
    n_pods: int = 3,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    server_step: bool | None = None,
    secure: bool = True,
) -> None:
    """Run every strategy check on ``factory(n_pods, **params)``.

    Parameters
    ----------
    factory:
        The strategy plugin: ``factory(n_pods, **params) -> flwr Strategy`` declaring
        ``fedplug_plugin_api`` and ``secure_compatible``.
    n_pods, seed:
        How many fake pods answer, and the seed of the fixed updates and of the runs.
    params:
        Strategy parameters, as a Hydra config's ``strategy.params`` would give them.
    server_step:
        Whether the strategy applies a server-side step to the weighted mean (FedAdam,
        momentum), so its result is not the mean itself. None reads the factory's
        optional ``server_step`` attribute (default False).
    secure:
        Also train under plain and secure aggregation and compare (a second or two);
        only for strategies declaring ``secure_compatible = True``.
    """
    check_declarations(factory)
    check_parameters(factory, n_pods=n_pods)
    check_round_types(factory, n_pods=n_pods, seed=seed, params=params)
    check_determinism(factory, n_pods=n_pods, seed=seed, params=params)
    if getattr(factory, "secure_compatible", None) is True:  # a bool: checked above
        check_weighted_mean(
            factory, n_pods=n_pods, seed=seed, params=params, server_step=server_step
        )
        if secure:
            check_secure_aggregation(factory, n_pods=n_pods, seed=seed, params=params)
