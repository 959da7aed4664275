"""Every config group is checked before anything starts, naming the key and the valid ones."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fedplug._errors import ConfigError
from fedplug._task_builder import compose_config, objects_from_config
from fedplug.cli._main import main


def _error(overrides: list[str]) -> str:
    with pytest.raises(ConfigError) as info:
        objects_from_config(compose_config(overrides))
    return str(info.value)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # Hydra's "Key 'epoch' is not in struct": fedplug's message with the group's keys.
        (
            ["model.epoch=2"],
            "model: unknown key 'epoch' (did you mean 'epochs'?); the model config has 'name', "
            "'rounds', 'epochs'",
        ),
        (
            ["aggregator=secure", "aggregator.params.clipp=1"],
            "aggregator.params: unknown key 'clipp' (did you mean 'clip'?)",
        ),
        (
            ["modell.rounds=1"],
            "'modell' is neither a config group nor a key (did you mean 'model'?)",
        ),
        (
            ["aggregator=secur"],
            "aggregator=secur: no such aggregator option (did you mean 'secure'?); the options "
            "are 'fedavg', 'secure'",
        ),
        # Added keys (+) reach the groups' objects: refused with the valid keys, no TypeError.
        (
            ["+datastructure.targte=TARGET"],
            "datastructure config: unknown key 'targte' (did you mean 'target'?); DataStructure "
            "takes 'target', 'table', 'selected_cols', 'ignore_cols'",
        ),
        (["+aggregator.params.clip=1"], "aggregator config: unknown key 'clip'; FedAvg takes"),
        (["+federation.gpus_per_pod=1"], "federation config: unknown key 'gpus_per_pod'"),
        (["+pods.identifier=[a]"], "pods config: unknown key 'identifier' (did you mean"),
        (["+foo=1"], "config: unknown key 'foo'"),
        # Values Ray or a pod would trip over much later.
        (["federation.cpus_per_pod=0"], "federation.cpus_per_pod must be a number above 0, got 0"),
        (["federation.round_timeout=-5"], "federation.round_timeout must be a number above 0"),
        (["federation.connect_timeout=soon"], "federation.connect_timeout must be a number"),
        (["federation.verbose=3"], "federation.verbose must be true or false, got 3"),
        (["seed=abc"], "seed must be an integer, got 'abc'"),
        (["pods.identifiers=[]"], "pods.identifiers is empty"),
        (["pods.identifiers=[a,b,a]"], "pods.identifiers names 'a' more than once"),
        (["pods.create_demo=census"], "pods.create_demo must be null (write no demo pods) or one"),
        (["datastructure.target=null"], "datastructure.target must be a column name, got None"),
        (["datastructure.ignore_cols=fnlwgt"], "datastructure.ignore_cols must be a list of names"),
    ],
)
def test_a_bad_key_or_value_is_named_with_what_is_valid(
    overrides: list[str], expected: str
) -> None:
    assert expected in _error(overrides)


def test_the_default_config_and_its_options_pass() -> None:
    for overrides in ([], ["aggregator=secure", "strategy=fedadam", "federation.verbose=true"]):
        composed = objects_from_config(compose_config(overrides))
        assert composed.pods["identifiers"]


def test_fedplug_run_refuses_a_bad_config_in_seconds_with_the_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    assert main(["run", "federation.cpus_per_pod=0", "hydra.run.dir=out"]) == 1
    assert main(["run", "model.epoch=2"]) == 1
    assert main(["run", "-m", "seed=1,2", "model.epoch=2"]) == 1  # a sweep too
    assert main(["run", "pods.identifiers=[]", "hydra.run.dir=out2"]) == 1
    assert time.monotonic() - started < 30  # not Ray's ZeroDivisionError minutes later
    err = " ".join(capsys.readouterr().err.split())
    assert "error: federation.cpus_per_pod must be a number above 0, got 0" in err
    assert err.count("error: model: unknown key 'epoch' (did you mean 'epochs'?)") == 2
    # Printed as text: the bracketed example is not taken for rich markup and dropped.
    assert "e.g. pods.identifiers=[hospital-a,hospital-b]." in err
    assert "Traceback" not in err and "HYDRA_FULL_ERROR" not in err
    assert not (tmp_path / "pods").exists()  # nothing was written before the check


def test_a_policy_refusal_comes_before_torch_loads(tmp_path, monkeypatch) -> None:
    # The pods' policies are read from their files and the run refused before the model
    # (and torch) load: a refusal in seconds, from a fresh interpreter.
    import subprocess
    import sys

    import yaml

    from fedplug.data import write_census_demo

    write_census_demo(tmp_path / "pods")
    pod_file = tmp_path / "pods" / "census-income-demo.yaml"
    pod = yaml.safe_load(pod_file.read_text())
    pod.setdefault("policy", {})["require_secure_aggregation"] = True
    pod_file.write_text(yaml.safe_dump(pod))
    code = (
        "import sys\n"
        "from fedplug.cli._main import main\n"
        "try:\n"
        "    code = main(['run', 'aggregator=fedavg', 'hydra.run.dir=out'])\n"
        "except SystemExit as exit:\n"
        "    code = exit.code\n"
        "print('exit', code)\n"
        "print('torch loaded:', 'torch' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert "require secure aggregation" in done.stderr + done.stdout
    assert "exit 1" in done.stdout
    assert "torch loaded: False" in done.stdout
