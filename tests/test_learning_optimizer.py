from __future__ import annotations

import pytest
import torch

from fedplug._errors import ConfigError
from fedplug.learning import Optimizer


def _params() -> list[torch.nn.Parameter]:
    return list(torch.nn.Linear(3, 2).parameters())


@pytest.mark.parametrize(
    ("name", "cls"),
    [("SGD", torch.optim.SGD), ("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW)],
)
def test_names_match_torch_classes_case_insensitively(name: str, cls: type) -> None:
    opt = Optimizer(name, {"lr": 0.05})
    built = opt.build(_params())
    assert type(built) is cls
    assert built.param_groups[0]["lr"] == 0.05
    assert opt.name == cls.__name__


def test_default_params() -> None:
    built = Optimizer("Adam").build(_params())
    assert isinstance(built, torch.optim.Adam)


def test_unknown_name_lists_available() -> None:
    with pytest.raises(ConfigError, match="unknown optimizer 'adamm'") as info:
        Optimizer("adamm")
    message = str(info.value)
    assert "did you mean 'Adam'" in message
    for name in ("Adam", "AdamW", "SGD", "RMSprop"):
        assert f"'{name}'" in message
    assert Optimizer.available() == sorted(Optimizer.available())
    assert "SGD" in Optimizer.available()


def test_unknown_param_is_named_with_valid_ones() -> None:
    with pytest.raises(
        ConfigError, match=r"'SGD': unknown parameter 'learning_rate'; valid parameters are 'lr'"
    ) as i:
        Optimizer("SGD", {"learning_rate": 0.1})
    assert "'lr'" in str(i.value)
    assert "'momentum'" in str(i.value)


@pytest.mark.parametrize("value", [-1.0, "fast"])
def test_bad_param_value_is_named(value: object) -> None:
    with pytest.raises(ConfigError, match=r"'SGD': invalid parameter lr="):
        Optimizer("SGD", {"lr": value, "momentum": 0.9})


def test_bad_value_among_several_names_the_culprit() -> None:
    with pytest.raises(ConfigError, match=r"invalid parameter betas=\(0\.9, 2\.0\)"):
        Optimizer("Adam", {"lr": 0.01, "betas": [0.9, 2.0]})


def test_params_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match="params must be a mapping"):
        Optimizer("SGD", [0.1])  # type: ignore[arg-type]


def test_yaml_lists_become_tuples_and_round_trip() -> None:
    opt = Optimizer("adam", {"lr": 0.01, "betas": [0.8, 0.9]})
    assert opt.params["betas"] == (0.8, 0.9)
    assert opt.build(_params()).param_groups[0]["betas"] == (0.8, 0.9)
    d = opt.to_dict()
    assert d == {"name": "Adam", "params": {"lr": 0.01, "betas": [0.8, 0.9]}}
    assert Optimizer.from_dict(d) == opt
    assert Optimizer.from_dict({"name": "SGD"}) == Optimizer("sgd", {})


def test_from_dict_refuses_unknown_keys() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'lr'; valid keys are 'name', 'params'"):
        Optimizer.from_dict({"name": "SGD", "lr": 0.1})
    with pytest.raises(ConfigError, match="expected a mapping"):
        Optimizer.from_dict({"params": {}})
