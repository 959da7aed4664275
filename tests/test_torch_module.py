"""torch-module: the user's own torch.nn.Module, allowed by each pod's policy, trained by
fedplug's loop in simulation, plain and secure."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from fedplug import (
    ConfigError,
    DataStructure,
    FedAvg,
    Optimizer,
    PolicyRefusal,
    SecureAggregator,
    TorchModule,
    load_model,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "torch_module"


@pytest.fixture(autouse=True)
def _nets_installed(monkeypatch):
    # The example's networks play an installed package: importable on the "pods".
    monkeypatch.syspath_prepend(str(EXAMPLE))


def _pods(fed_pods, modules=("nets:Linear", "nets:TwoLayer")):
    policy = {"policy": {"min_pods": 2, "accepted_modules": list(modules)}}
    return fed_pods(n_pods=2, rows=400, policies={"pod-a": policy, "pod-b": policy})


def test_a_users_linear_regressor_trains_plain_and_secure(fed_pods, tmp_path) -> None:
    pods = _pods(fed_pods)
    results = {}
    for name, aggregator in (("plain", FedAvg()), ("secure", SecureAggregator())):
        model = TorchModule(
            DataStructure(target="hours-per-week", selected_cols=["age", "sex", "education"]),
            module="nets:Linear",
            rounds=3,
            optimizer=Optimizer("SGD", {"lr": 0.05}),
            batch_size=32,
        )
        history = model.fit(pods, aggregator, backend="inprocess", verbose=False)
        assert {"rmse", "mae", "r2"} <= set(history[-1]["evaluate"])
        results[name] = model
    plain, secure = results["plain"], results["secure"]
    for a, b in zip(plain.state_, secure.state_, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
    frame = __import__("pandas").read_csv(tmp_path / "pod-a.csv").head(100)
    values = plain.predict(frame)
    assert values.dtype.kind == "f" and 10 < float(np.mean(values)) < 70  # hours per week
    path = plain.serialize(tmp_path / "linear.pt")
    np.testing.assert_array_equal(load_model(path).predict(frame), values)


def test_a_users_classifier_module_with_its_own_parameters(fed_pods, tmp_path) -> None:
    pods = _pods(fed_pods)
    model = TorchModule(
        DataStructure(target="TARGET"),
        module="nets:TwoLayer",
        module_params={"width": 8},
        rounds=2,
    )
    history = model.fit(pods, backend="inprocess", verbose=False)
    assert 0.5 < history[-1]["evaluate"]["accuracy"] <= 1
    frame = __import__("pandas").read_csv(tmp_path / "pod-b.csv").head(50)
    assert model.predict_proba(frame).shape == (50, 2)
    assert set(model.predict(frame)) <= {"<=50K", ">50K"}


def test_a_pod_that_does_not_list_the_module_refuses_it(fed_pods) -> None:
    pods = _pods(fed_pods, modules=("nets:TwoLayer",))
    model = TorchModule(DataStructure(target="TARGET"), module="nets:Linear", rounds=1)
    with pytest.raises(PolicyRefusal, match="accepted_modules"):
        model.fit(pods, backend="inprocess", verbose=False)
    assert "os" not in [m.split(":")[0] for m in ("nets:Linear",)]


def test_bad_modules_and_losses_are_config_errors(fed_pods) -> None:
    pods = _pods(fed_pods)
    for module, match in (
        ("nets", "import path"),
        ("nets:Missing", "cannot be imported"),
        ("numpy:ndarray", "not a torch.nn.Module"),
    ):
        with pytest.raises(ConfigError, match=match):
            TorchModule(DataStructure(target="TARGET"), module=module).fit(pods, verbose=False)
    with pytest.raises(ConfigError, match="does not fit a classification"):
        TorchModule(DataStructure(target="TARGET"), module="nets:Linear", loss="mse").fit(
            pods, verbose=False
        )
    with pytest.raises(ConfigError, match="width"):
        TorchModule(
            DataStructure(target="TARGET"), module="nets:Linear", module_params={"width": 3}
        ).fit(pods, verbose=False)


def test_the_pysyft_style_example_runs() -> None:
    sys.path.insert(0, str(EXAMPLE))
    try:
        import linear_regression
    finally:
        sys.path.remove(str(EXAMPLE))
    metrics = linear_regression.main(["--rounds", "2", "--rows", "600"])
    assert metrics["rmse"] > 0 and metrics["r2"] > 0


@pytest.mark.parametrize("aggregator", ["fedavg", "secure"])
def test_flower_server_app_trains_a_users_module(fed_pods, tmp_path, aggregator) -> None:
    # flwr run's ServerApp on an in-process grid: composed from Hydra overrides by name.
    import json

    from flwr.app import Context, RecordDict

    from fedplug._flower import LocalGrid, build_client_app
    from fedplug._flower import app as flower_app

    pods = _pods(fed_pods)
    grid = LocalGrid(
        {i + 1: build_client_app() for i in range(2)},
        node_configs={i + 1: {"pod": str(p)} for i, p in enumerate(pods)},
    )
    out = tmp_path / "out"
    overrides = (
        f"model=torch_module model.module=nets:TwoLayer +model.module_params.width=4 "
        f"model.rounds=1 aggregator={aggregator} pods.identifiers=[pod-a,pod-b] "
        "++federation.connect_timeout=5"
    )
    context = Context(
        run_id=1,
        node_id=0,
        node_config={},
        state=RecordDict(),
        run_config={"overrides": overrides, "output-dir": str(out)},
    )
    assert flower_app.run_deployed(grid, context) == out
    history = json.loads((out / "history.json").read_text())["history"]
    assert 0 < history[-1]["evaluate"]["accuracy"] <= 1
    model = load_model(out / "model.pt")
    assert isinstance(model, TorchModule) and model.module == "nets:TwoLayer"
