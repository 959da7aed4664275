"""The example plugin passes fedplug's conformance kit and steps as documented."""

from __future__ import annotations

import numpy as np
import pytest
from fedplug import ConfigError
from fedplug.plugins import load_plugin
from fedplug.testing import check_strategy, check_weighted_mean, fake_grid, make_updates, run_round

from fedplug_example_strategy import fedavg_lr


@pytest.mark.parametrize("server_lr", [1.0, 0.5])
def test_conformance(server_lr: float) -> None:
    check_strategy(fedavg_lr, params={"server_lr": server_lr})


def test_learning_rate_one_is_the_weighted_mean() -> None:
    check_weighted_mean(fedavg_lr, params={"server_lr": 1.0}, server_step=False)


def test_step_is_a_fraction_of_the_way_to_the_mean() -> None:
    updates = make_updates(3, seed=1)
    result = run_round(fedavg_lr(3, server_lr=0.25), fake_grid(updates), updates.global_arrays)
    got = result.arrays.to_numpy_ndarrays()
    for g, mean, new in zip(updates.global_arrays, updates.expected_arrays(), got, strict=True):
        np.testing.assert_allclose(new, g + 0.25 * (mean - g), rtol=1e-5, atol=1e-6)


def test_registered_under_its_entry_point_name() -> None:
    assert load_plugin("strategies", "fedavg-lr") is fedavg_lr


@pytest.mark.parametrize(
    ("params", "named"), [({"server_lr": -1}, "server_lr"), ({"lr": 0.1}, "lr")]
)
def test_bad_parameters_are_config_errors(params: dict, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        fedavg_lr(2, **params)
