"""Bad inputs at the Python API and the command line give clear, actionable errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fedplug import (
    ConfigError,
    DataStructure,
    FedplugError,
    Optimizer,
    PodConfigError,
    SecureAggregator,
    TabularClassifier,
)
from fedplug.cli import main


def test_unknown_pod_name_lists_known_pods(fed_pods, tmp_path) -> None:
    fed_pods(2, rows=100)
    model = TabularClassifier(DataStructure(target="TARGET"))
    with pytest.raises(PodConfigError, match="no-such-pod") as info:
        model.fit(["no-such-pod"], pod_dirs=[tmp_path])
    assert "pod-a" in str(info.value)


def test_epochs_and_steps_together_are_refused(fed_pods, tmp_path) -> None:
    pods = fed_pods(2, rows=100)
    model = TabularClassifier(DataStructure(target="TARGET"), epochs=1, steps=10)
    with pytest.raises(ConfigError, match="exactly one of epochs"):
        model.fit([str(p) for p in pods])


def test_bad_rounds_is_refused(fed_pods) -> None:
    pods = fed_pods(2, rows=100)
    with pytest.raises(ConfigError, match="rounds must be a positive integer, got 0"):
        TabularClassifier(DataStructure(target="TARGET"), rounds=0).fit([str(p) for p in pods])


def test_pod_listed_twice_is_refused(fed_pods) -> None:
    pods = fed_pods(2, rows=100)
    model = TabularClassifier(DataStructure(target="TARGET"))
    with pytest.raises(PodConfigError, match="more than once"):
        model.fit([str(pods[0]), str(pods[0])])


def test_unknown_strategy_lists_available(fed_pods) -> None:
    pods = fed_pods(2, rows=100)
    model = TabularClassifier(DataStructure(target="TARGET"))
    with pytest.raises(FedplugError, match="fedadam"):
        model.fit([str(p) for p in pods], strategy="no-such-strategy")


def test_unknown_strategy_parameter_is_named(fed_pods) -> None:
    pods = fed_pods(2, rows=100)
    model = TabularClassifier(DataStructure(target="TARGET"))
    with pytest.raises(ConfigError, match="lr_server"):
        model.fit([str(p) for p in pods], strategy_params={"lr_server": 1.0})


def test_unknown_optimizer_lists_available() -> None:
    with pytest.raises(ConfigError, match="Adam"):
        Optimizer("Adamm")


def test_predict_before_fit_is_explained() -> None:
    import pandas as pd

    with pytest.raises(FedplugError, match="not trained"):
        TabularClassifier(DataStructure(target="TARGET")).predict(pd.DataFrame({"a": [1]}))


def test_deserialize_of_a_foreign_file(tmp_path) -> None:
    path = tmp_path / "model.pt"
    path.write_text("not a model")
    with pytest.raises(FedplugError, match="not a fedplug model file"):
        TabularClassifier.deserialize(path)
    with pytest.raises(FedplugError, match="does not exist"):
        TabularClassifier.deserialize(tmp_path / "missing.pt")


def test_bad_secure_setting_names_the_setting(fed_pods) -> None:
    pods = fed_pods(2, rows=100)
    model = TabularClassifier(DataStructure(target="TARGET"), rounds=1)
    with pytest.raises(ConfigError, match="clip"):
        model.fit([str(p) for p in pods], aggregator=SecureAggregator(clip=-1.0))


def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess:  # noqa: ANN001
    return subprocess.run(
        [sys.executable, "-m", "fedplug.cli._main", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("aggregator=nope", "aggregator=nope: no such aggregator option"),
        ("model.epoch=2", "model: unknown key 'epoch' (did you mean 'epochs'?)"),
        ("strategy=fedmedianx", "strategy=fedmedianx: no such strategy option"),
    ],
)
def test_bad_hydra_overrides(override, expected, tmp_path) -> None:
    result = _cli("run", override, cwd=tmp_path)
    assert result.returncode != 0
    assert expected in result.stderr + result.stdout


def test_cli_pod_check_reports_bad_data(fed_pods, tmp_path, data_digest) -> None:
    (pod,) = fed_pods(1, rows=50)
    csv = tmp_path / "pod-a.csv"
    text = csv.read_text().splitlines()
    text[3] = text[3].replace(text[3].split(",")[0], "old", 1)  # 'age' is continuous
    csv.write_text("\n".join(text) + "\n")
    before = data_digest(csv)
    assert main(["pod", "check", str(pod)]) == 1
    assert data_digest(csv) == before


def test_cli_pod_check_ok(fed_pods, capsys) -> None:
    (pod,) = fed_pods(1, rows=50)
    assert main(["pod", "check", str(pod)]) == 0
    out = capsys.readouterr().out
    assert "pod-a" in out and "workclass" in out


def test_strategy_not_secure_compatible_is_refused_under_secure(fed_pods) -> None:
    from fedplug_strategies.flower import fedavg

    def median(n_pods: int, **params):  # noqa: ANN202, ANN003
        return fedavg(n_pods, **params)

    median.fedplug_plugin_api = 1
    median.secure_compatible = False
    pods = fed_pods(2, rows=100)
    model = TabularClassifier(DataStructure(target="TARGET"), rounds=1)
    with pytest.raises(ConfigError, match="secure_compatible=False"):
        model.fit([str(p) for p in pods], aggregator=SecureAggregator(), strategy=median)


# -- the error classes: each raised where it belongs, and still caught as its base -------


@pytest.mark.parametrize("use", ["predict", "predict_proba", "evaluate", "serialize"])
def test_use_before_fit_raises_not_fitted(use, tmp_path) -> None:
    import pandas as pd

    from fedplug import NotFittedError

    model = TabularClassifier(DataStructure(target="TARGET"))
    arg = tmp_path / "model.pt" if use == "serialize" else pd.DataFrame({"a": [1]})
    with pytest.raises(NotFittedError, match="not trained: call fit"):
        getattr(model, use)(arg)
    with pytest.raises(FedplugError, match="not trained"):  # the class raised before
        getattr(model, use)(arg)
    assert not (tmp_path / "model.pt").exists()


def test_foreign_missing_and_malformed_model_files_raise_model_file_error(tmp_path) -> None:
    import torch

    from fedplug import ModelFileError
    from fedplug._model_base import FILE_FORMAT

    text = tmp_path / "text.pt"
    text.write_text("not a model")
    other = tmp_path / "other.pt"
    torch.save({"format": "something-else/1"}, other)
    partial = tmp_path / "partial.pt"
    torch.save({"format": FILE_FORMAT, "plugin": "tabular-classifier"}, partial)
    legacy = tmp_path / "legacy.pt"  # the format files had before models named themselves
    torch.save({"format": "fedplug.tabular-classifier/1"}, legacy)  # a KeyError escaped
    for path, message in [
        (text, "not a fedplug model file"),
        (other, "expected format"),
        (partial, "incomplete or malformed"),
        (legacy, "incomplete or malformed"),
        (tmp_path / "missing.pt", "does not exist"),
    ]:
        with pytest.raises(ModelFileError, match=message) as info:
            TabularClassifier.deserialize(path)
        assert isinstance(info.value, FedplugError)
        assert str(path) in str(info.value)


def test_weights_of_another_architecture_raise_model_mismatch(fed_pods, tmp_path) -> None:
    import pandas as pd
    import torch

    from fedplug import ModelFileError, ModelMismatchError, TrainingError

    pods = fed_pods(2, rows=100)
    model = TabularClassifier(DataStructure(target="TARGET"), rounds=1)
    model.fit([str(p) for p in pods])
    path = model.serialize(tmp_path / "model.pt")
    payload = torch.load(path, weights_only=True)
    payload["model"]["weights"] = payload["model"]["weights"][:-1]
    torch.save(payload, path)
    loaded = TabularClassifier.deserialize(path)
    frame = pd.read_csv(tmp_path / "pod-a.csv").head(20)
    for base in (ModelMismatchError, ModelFileError, TrainingError, FedplugError):
        with pytest.raises(base, match="different model architecture"):
            loaded.predict(frame)
    assert issubclass(ModelMismatchError, ModelFileError)
    assert issubclass(ModelMismatchError, TrainingError)  # the class raised before


def test_error_tree_is_documented() -> None:
    import fedplug
    from fedplug import _errors

    classes = [
        value
        for value in vars(_errors).values()
        if isinstance(value, type) and issubclass(value, fedplug.FedplugError)
    ]
    doc = _errors.__doc__ or ""
    for cls in classes:
        assert f"* {cls.__name__} - " in doc, cls.__name__
        for base in cls.__bases__:
            if base is not Exception:
                assert base.__name__ in doc


def test_an_aggregator_that_is_not_one_is_a_config_error() -> None:
    from fedplug._task_builder import check_aggregator, make_aggregator

    with pytest.raises(
        ConfigError, match=r"'secure' is not a fedplug Aggregator.*SecureAggregator\(\)"
    ):
        check_aggregator("secure")
    with pytest.raises(ConfigError, match=r"not a subclass of fedplug.Aggregator"):
        make_aggregator("fedplug.data:CSVSource", {})
    with pytest.raises(ConfigError, match=r"unknown key 'clipp' \(did you mean 'clip'\?\)"):
        make_aggregator("secure", {"clipp": 1.0})


def test_a_local_pods_policy_refuses_before_its_data_is_read(fed_pods, tmp_path) -> None:
    from fedplug import PolicyRefusal

    pods = fed_pods(
        2, rows=50, policies={"pod-b": {"policy": {"require_secure_aggregation": True}}}
    )
    (tmp_path / "pod-a.csv").unlink()  # reading any data would fail with another error
    with pytest.raises(PolicyRefusal, match=r"\['pod-b'\] require secure aggregation"):
        TabularClassifier(DataStructure(target="TARGET"), rounds=1).fit(pods, verbose=False)
