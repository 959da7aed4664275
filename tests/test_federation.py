"""``fit(..., federation=CONNECTION)`` without a SuperLink: the task as Hydra overrides, what
cannot travel, and the submission against a stand-in ``flwr`` CLI.

The stand-in plays ``flwr run --stream`` and ``flwr ls``/``flwr stop`` as Flower 1.42 does
(the lines fit reads: "Successfully started run N", the ServerApp's log, the JSON status),
so the submission's streaming, timeout and failure paths run in a second each. The real
thing is ``tests/test_federation_deploy.py`` (``-m deploy``).
"""

from __future__ import annotations

import json
import shlex
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tomli

import fedplug
from fedplug import (
    DataStructure,
    FedAvg,
    GradientBoostedTrees,
    Optimizer,
    SecureAggregator,
    TabularClassifier,
    combine_pod_schemas,
)
from fedplug._errors import ConfigError, PodConfigError, TrainingError
from fedplug._federation import (
    RESULT_MARKER,
    RunFailed,
    check_round_trip,
    describe,
    hydra_value,
    packaged_app,
    result_line,
)
from fedplug._task_builder import conf_dir

CONNECTION = "fake-link"
FEATURES = ["age", "education", "hours-per-week", "sex"]


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def flwr_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Flower configuration naming one SuperLink connection (the user's is untouched)."""
    home = tmp_path / "flwr-home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "{CONNECTION}"\n\n'
        f'[superlink.{CONNECTION}]\naddress = "127.0.0.1:1"\ninsecure = true\n'
    )
    monkeypatch.setenv("FLWR_HOME", str(home))
    return home


def _model(**params: object) -> TabularClassifier:
    defaults: dict = {"rounds": 1, "hidden": (8,), "batch_size": 32}
    return TabularClassifier(
        DataStructure("TARGET", selected_cols=FEATURES), **{**defaults, **params}
    )


#: The stand-in ``flwr``: what it prints comes from ``script.json`` beside it, and each
#: call is recorded in ``calls.jsonl`` (with the run config file's content for `run`).
FAKE_FLWR = """\
#!{python}
import json, shutil, sys, time
from pathlib import Path
here = Path(__file__).parent
script = json.loads((here / "script.json").read_text())
args = sys.argv[1:]
call = {{"args": args}}
if args[0] == "run" and "--run-config" in args:
    call["run_config"] = Path(args[args.index("--run-config") + 1]).read_text()
with (here / "calls.jsonl").open("a") as f:
    f.write(json.dumps(call) + "\\n")
if args[0] == "run":
    for line in script["lines"]:
        print(line, flush=True)
    time.sleep(script.get("sleep", 0))
elif args[0] == "ls":
    print(json.dumps({{"runs": [{{"run-id": 7, "status": script["status"],
                                 "status-details": script.get("details", "")}}]}}))
"""


@pytest.fixture
def fake_flwr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flwr_home: Path
) -> Callable[..., Path]:
    """Put a stand-in ``flwr`` first on PATH; call it with what the run prints."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    exe = bin_dir / "flwr"
    exe.write_text(FAKE_FLWR.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")

    def script(
        lines: list[str], status: str = "finished:completed", details: str = "", sleep: float = 0
    ) -> Path:
        (bin_dir / "script.json").write_text(
            json.dumps({"lines": lines, "status": status, "details": details, "sleep": sleep})
        )
        return bin_dir / "calls.jsonl"

    return script


def _calls(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _trained_file(directory: Path, model: TabularClassifier, pods: list[Path]) -> list[dict]:
    """A model file as the ServerApp writes it (untrained weights stand in for trained ones)."""
    schema = combine_pod_schemas(pods)
    task = model.training_task(schema)
    k = len(task.continuous())
    task = task.with_scaling(np.zeros(k), np.ones(k))
    history = [{"round": 1, "train": {"train_loss": 0.5}, "evaluate": {"accuracy": 0.75}}]
    twin = _model()
    twin.set_trained(task, model.initial_weights(task), history)
    twin.serialize(directory / "model.pt")
    return history


# -- values in Hydra's override grammar -----------------------------------------------------

NASTY = [
    "",
    "plain",
    "with space",
    "it's",
    'say "hi"',
    "back\\slash",
    "ends\\",
    "ends\\\\",
    "quote\\'mix",
    "a,b=c:d[e]{f}(g)",
    "1",
    "true",
    "null",
    "#hash ~tilde",
    "ünïcödé €",
    "tab\there",
]


@pytest.mark.parametrize("value", NASTY)
def test_a_string_travels_unchanged_through_shlex_and_hydra(value: str) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    token = f"+x={hydra_value(value, 'x')}"
    (back,) = shlex.split(shlex.join([token]))  # the ServerApp splits the run config
    (override,) = OverridesParser.create().parse_overrides([back])
    assert override.value() == value


def test_values_keep_their_types_and_code_is_refused() -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    value = {"n": 3, "x": 0.1, "tiny": 1e-12, "on": True, "off": None, "l": [1, "2", [3.5]]}
    (override,) = OverridesParser.create().parse_overrides([f"+x={hydra_value(value, 'x')}"])
    assert override.value() == value
    for bad in (object(), np.array([1, 2]), lambda: 1, {"k": {1, 2}}):
        with pytest.raises(ConfigError, match="only plain data"):
            hydra_value(bad, "model parameter 'w'")
    with pytest.raises(ConfigError, match="interpolation"):
        hydra_value("${oc.env:HOME}", "datastructure.target")
    with pytest.raises(ConfigError, match="cannot travel"):
        hydra_value({"pod-ü": "t"}, "datastructure.table")


# -- the task as overrides, composed back -----------------------------------------------------


def test_a_model_travels_as_overrides_and_composes_back_equal(
    fed_pods: Callable[..., list[Path]],
) -> None:
    pods = fed_pods(2, rows=60)
    schema = combine_pod_schemas(pods)
    model = TabularClassifier(
        DataStructure("TARGET", table={"pod-a": "t'1", "pod-b": "adult"}, ignore_cols=["fnlwgt"]),
        schema=schema,
        epochs=None,
        steps=3,
        rounds=2,
        hidden=(8, 4),
        dropout=0.25,
        optimizer=Optimizer("SGD", {"lr": 0.01, "momentum": 0.9}),
        seed=3,
    )
    aggregator = SecureAggregator(clip=4.0, threshold=2, neighbours="harary", timeout=30.0)
    task = describe(model, [str(p) for p in pods], aggregator, "fedprox", {"proximal_mu": 0.5})
    assert task.pods == ["pod-a", "pod-b"]  # pod files are read for the names they serve
    overrides = shlex.split(shlex.join(task.overrides()))  # as the ServerApp reads them
    assert overrides == task.overrides()
    composed = check_round_trip(task, conf_dir())
    back = composed.model
    assert type(back) is TabularClassifier
    for name in ("epochs", "steps", "rounds", "dropout", "seed", "batch_size"):
        assert getattr(back, name) == getattr(model, name), name
    assert list(back.hidden) == [8, 4]
    assert back.optimizer.to_dict() == model.optimizer.to_dict()
    assert back.datastructure.to_dict() == model.datastructure.to_dict()
    assert back.schema.to_dict() == schema.to_dict()  # the schema travels whole
    assert type(composed.aggregator) is SecureAggregator
    assert vars(composed.aggregator) == vars(aggregator)
    assert (composed.strategy_ref, composed.strategy_params) == ("fedprox", {"proximal_mu": 0.5})
    assert composed.pods["identifiers"] == ["pod-a", "pod-b"]


def test_defaults_travel_as_the_python_api_means_them() -> None:
    """A strategy without parameters gets its factory's defaults, not the config's, and
    the aggregator defaults to FedAvg, as in a simulation."""
    model = GradientBoostedTrees(DataStructure("TARGET"), n_trees=3, max_depth=2)
    task = describe(model, ["a", "b"], None, "fedprox", None)
    composed = check_round_trip(task, conf_dir())
    assert type(composed.model) is GradientBoostedTrees
    assert (composed.model.n_trees, composed.model.max_depth, composed.model.schema) == (3, 2, None)
    assert type(composed.aggregator) is FedAvg
    assert composed.strategy_params == {}  # conf/strategy/fedprox.yaml says 0.01


@pytest.mark.parametrize(
    "name", ["tabular-classifier", "gradient-boosted-trees", "tabular-regressor", "torch-module"]
)
def test_every_built_in_model_travels_with_its_defaults(name: str) -> None:
    from fedplug._plugins import load_plugin
    from fedplug._task_builder import parameter_names

    cls = load_plugin("models", name)
    model = cls(DataStructure("TARGET"))
    composed = check_round_trip(describe(model, ["a", "b"], None, "fedavg", None), conf_dir())
    assert type(composed.model) is cls
    for param in parameter_names(cls):
        want, got = getattr(model, param), getattr(composed.model, param)
        if hasattr(want, "to_dict"):
            want, got = want.to_dict(), got.to_dict()
        assert (list(want) if isinstance(want, tuple) else want) == got, param


class LocalClassifier(TabularClassifier):
    """A model class defined here, not installed as a plugin."""


class LocalAggregator(FedAvg):
    """An aggregator class defined here."""


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"strategy": "OBJECT"}, "a Flower strategy object or factory is code"),
        ({"strategy": print}, "a Flower strategy object or factory is code"),
        ({"on_round": print}, "on_round cannot travel"),
        ({"aggregator": LocalAggregator()}, "LocalAggregator .* not an installed fedplug"),
        ({"backend": "ray"}, "choose how a simulation runs"),
        ({"cpus_per_pod": 2.0}, "choose how a simulation runs"),
        ({"pod_dirs": ["pods"]}, "pod_dirs locates pod files"),
        ({"strategy_params": {"mu": object()}}, "strategy_params.mu is a object"),
        ({"federation": "nowhere"}, f"no SuperLink connection 'nowhere'.*'{CONNECTION}'"),
        ({"federation": {"connection": CONNECTION, "timeout": 3}}, "unknown key 'timeout'"),
        ({"verbose": "loud"}, "verbose='loud' is invalid"),
    ],
)
def test_what_cannot_travel_is_refused_before_anything_is_sent(
    change: dict, match: str, flwr_home: Path
) -> None:
    from flwr.serverapp.strategy import FedAvg as FlowerFedAvg

    if change.get("strategy") == "OBJECT":
        change = {"strategy": FlowerFedAvg()}
    kwargs: dict = {"federation": CONNECTION, **change}
    with pytest.raises(ConfigError, match=match):
        _model().fit(["pod-a", "pod-b"], **kwargs)
    assert not (flwr_home / "calls.jsonl").exists()


def test_a_class_defined_here_or_a_pod_in_memory_is_refused(flwr_home: Path) -> None:
    model = LocalClassifier(DataStructure("TARGET"), rounds=1)
    with pytest.raises(ConfigError, match="LocalClassifier .* not the installed model plugin"):
        model.fit(["pod-a", "pod-b"], federation=CONNECTION)
    pod = fedplug.Pod("memory", fedplug.DataFrameSource(pd.DataFrame({"TARGET": ["a", "b"]})))
    with pytest.raises(PodConfigError, match="'memory' is a fedplug.Pod held in this process"):
        _model().fit([pod, "pod-b"], federation=CONNECTION)
    model = _model()
    model.hidden = (object(),)  # a parameter holding an object
    with pytest.raises(ConfigError, match=r"model parameter 'hidden'\[0\] is a object"):
        model.fit(["pod-a", "pod-b"], federation=CONNECTION)


def test_without_a_flower_config_the_error_says_where_to_add_the_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "empty"))
    with pytest.raises(ConfigError) as info:
        _model().fit(["pod-a", "pod-b"], federation="fedplug-local")
    message = str(info.value)
    assert str(tmp_path / "empty" / "config.toml") in message
    assert "[superlink.NAME]" in message and "(none)" in message


# -- the submission, against the stand-in flwr ------------------------------------------------


def _log(*messages: str) -> list[str]:
    """Lines as `flwr run --stream` shows the ServerApp's log."""
    return [f"INFO     fedplug: {m}" for m in messages]


def test_fit_streams_the_rounds_and_loads_the_model_the_server_app_wrote(
    fed_pods: Callable[..., list[Path]],
    fake_flwr: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pods = fed_pods(2, rows=60)
    out = tmp_path / "superlink-outputs" / "run-7"
    out.mkdir(parents=True)
    history = _trained_file(out, _model(), pods)
    calls = fake_flwr(
        [
            "Loading project configuration...",
            "Successfully started run 7",
            "INFO :      Starting logstream for run_id `7`",
            *_log("pods found: {'pod-a': 1, 'pod-b': 2}", "round 1/1  train_loss=0.5000"),
            *_log(result_line(7, out, history)),
        ]
    )
    model = _model()
    assert model.fit(["pod-a", "pod-b"], federation=CONNECTION) == history
    printed = capsys.readouterr().out
    assert "  round 1/1  train_loss=0.5000" in printed
    assert "Starting logstream" not in printed and RESULT_MARKER not in printed  # verbose=1
    assert f"run 7: finished:completed; outputs in {out}" in printed
    assert model.trained and model.history_ == history
    frame = pd.read_csv(pods[0].with_suffix(".csv")).head(5)
    assert model.predict(frame).shape == (5,)
    assert list(model.hidden) == [8] and model.datastructure.selected_cols == FEATURES
    run, status = _calls(calls)
    assert run["args"][:4] == ["run", str(conf_dir().parent), CONNECTION, "--stream"]
    config = tomli.loads(run["run_config"])
    assert config["output-dir"].startswith("outputs/flwr-run/")
    overrides = shlex.split(config["overrides"])
    assert "+pods.identifiers=['pod-a','pod-b']" in overrides
    assert "++federation.round_timeout=300.0" in overrides
    assert status["args"] == ["ls", "--run-id", "7", CONNECTION, "--format", "json"]


def test_a_remote_superlink_returns_the_history_and_names_where_the_model_stays(
    fake_flwr: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    history = [{"round": 1, "train": {}, "evaluate": {"accuracy": 0.5}}]
    elsewhere = Path("/nonexistent-superlink-machine/outputs/flwr-run/x")
    fake_flwr(["Successfully started run 7", *_log(result_line(7, elsewhere, history))])
    model = _model()
    with pytest.warns(UserWarning, match="is on the SuperLink's machine") as record:
        assert model.fit(["pod-a", "pod-b"], federation=CONNECTION, verbose=False) == history
    assert str(elsewhere / "model.pt") in str(record[0].message)
    assert "fedplug.load_model(path)" in str(record[0].message)
    assert not model.trained and model.history_ == history
    assert capsys.readouterr().out == ""  # verbose=False


def test_a_model_file_that_is_not_the_runs_is_never_taken_for_it(
    fed_pods: Callable[..., list[Path]], fake_flwr: Callable[..., Path], tmp_path: Path
) -> None:
    pods = fed_pods(2, rows=60)
    _trained_file(tmp_path, _model(), pods)
    other = [{"round": 1, "train": {}, "evaluate": {"accuracy": 0.1}}]
    fake_flwr(["Successfully started run 7", *_log(result_line(7, tmp_path, other))])
    model = _model()
    with pytest.raises(TrainingError, match="is not the one this run wrote"):
        model.fit(["pod-a", "pod-b"], federation=CONNECTION, verbose=False)
    assert not model.trained


def test_a_failed_run_raises_with_flowers_status_and_the_runs_error(
    fake_flwr: Callable[..., Path],
) -> None:
    details = "PolicyRefusal: pod 'pod-b' refuses (unapproved-pod) (pods ['pod-a'])"
    fake_flwr(
        ["Successfully started run 7", *_log("fedplug run failed: pod 'pod-b' refuses")],
        status="finished:failed",
        details=details,
    )
    with pytest.raises(RunFailed) as info:
        _model().fit(["pod-a", "pod-b"], federation=CONNECTION, verbose=False)
    message = str(info.value)
    assert f"run 7 on '{CONNECTION}' ended finished:failed: {details}" in message
    assert f"flwr log 7 {CONNECTION}" in message


def test_a_run_past_its_timeout_is_stopped_on_the_superlink(
    fake_flwr: Callable[..., Path],
) -> None:
    calls = fake_flwr(["Successfully started run 7"], sleep=30)
    federation = {"connection": CONNECTION, "run_timeout": 1.5}
    with pytest.raises(RunFailed, match="run 7 .* did not end within 2s; it was stopped"):
        _model().fit(["pod-a", "pod-b"], federation=federation, verbose=False)
    assert _calls(calls)[-1]["args"] == ["stop", "7", CONNECTION]


def test_a_submission_the_superlink_refuses_says_so(fake_flwr: Callable[..., Path]) -> None:
    fake_flwr(["❌ SuperLink connection refused"])
    with pytest.raises(RunFailed, match="(?s)did not start a run .*connection refused"):
        _model().fit(["pod-a", "pod-b"], federation=CONNECTION, verbose=False)


# -- the ServerApp trains the translated task as a simulation does ---------------------------


def test_the_server_app_trains_the_translated_task_as_the_simulation_does(
    fed_pods: Callable[..., list[Path]], tmp_path: Path
) -> None:
    from flwr.app import Context, RecordDict

    from fedplug._flower import LocalGrid, build_client_app
    from fedplug._flower import app as flower_app

    pods = fed_pods(2, rows=80)
    schema = combine_pod_schemas(pods)
    simulated = _model(schema=schema, optimizer=Optimizer("SGD", {"lr": 0.05}))
    history = simulated.fit(pods, backend="inprocess", verbose=False)

    task = describe(
        _model(schema=schema, optimizer=Optimizer("SGD", {"lr": 0.05})),
        pods,
        None,
        "fedavg",
        None,
        {"connect_timeout": 5.0},
    )
    grid = LocalGrid(
        {1: build_client_app(), 2: build_client_app()},
        node_configs={1: {"pod": str(pods[0])}, 2: {"pod": str(pods[1])}},
    )
    config = {"overrides": shlex.join(task.overrides()), "output-dir": str(tmp_path / "out")}
    context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=config)
    out = flower_app.run_deployed(grid, context)
    deployed = fedplug.load_model(out / "model.pt")
    assert [h["round"] for h in deployed.history_] == [h["round"] for h in history]
    for a, b in zip(deployed.state_, simulated.state_, strict=True):
        np.testing.assert_array_equal(a, b)  # the same task, bit for bit


# -- an installed fedplug (no checkout) ---------------------------------------------------------


def test_an_installed_fedplug_submits_an_app_of_its_configs_that_pods_accept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import shutil
    import zipfile

    from flwr.cli.build import build_fab_from_disk

    from fedplug._flower._pod_executor import inspect_bundle

    installed = tmp_path / "site-packages" / "fedplug" / "conf"
    shutil.copytree(conf_dir(), installed)
    monkeypatch.setenv("FEDPLUG_CONF_DIR", str(installed))
    with packaged_app() as app:
        assert app != conf_dir().parent and (app / "conf" / "config.yaml").is_file()
        pyproject = tomli.loads((app / "pyproject.toml").read_text())
        assert pyproject["project"]["version"] == fedplug.__version__
        fab = build_fab_from_disk(app)
    names = zipfile.ZipFile(io.BytesIO(fab)).namelist()
    assert "pyproject.toml" in names and "conf/model/tabular_classifier.yaml" in names
    assert inspect_bundle(fab) is None  # a pod accepts it
    assert not app.exists()  # the temporary app is gone once submitted


# -- fedplug run federation=... ------------------------------------------------------------------


def test_fedplug_run_federation_connection_trains_on_the_superlink_and_writes_outputs_here(
    fed_pods: Callable[..., list[Path]],
    fake_flwr: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from fedplug.cli._main import main

    pods = fed_pods(2, rows=60)
    out = tmp_path / "superlink-outputs"
    out.mkdir()
    history = _trained_file(out, _model(), pods)
    calls = fake_flwr(["Successfully started run 7", *_log(result_line(7, out, history))])
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    cols = ",".join(FEATURES)
    argv = ["run", f"federation={CONNECTION}", "pods.identifiers=[pod-a,pod-b]"]
    argv += [
        "model.rounds=1",
        "federation.connect_timeout=30",
        f"datastructure.selected_cols=[{cols}]",
    ]
    assert main(argv) == 0, capsys.readouterr()
    (model_file,) = work.glob("outputs/*/*/model.pt")  # written here, as a simulation's
    assert fedplug.load_model(model_file).history_ == history
    assert not (work / "pods").exists()  # no demo pods for a run on a SuperLink
    overrides = shlex.split(tomli.loads(_calls(calls)[0]["run_config"])["overrides"])
    assert "+model.rounds=1" in overrides and "++federation.connect_timeout=30.0" in overrides
    assert f"+datastructure.selected_cols={hydra_value(FEATURES, 'x')}" in overrides

    # A remote SuperLink keeps the model: the results table, a warning naming where.
    elsewhere = Path("/nonexistent-superlink-machine/outputs/flwr-run/x")
    fake_flwr(["Successfully started run 7", *_log(result_line(7, elsewhere, history))])
    with pytest.warns(UserWarning, match="nonexistent-superlink-machine"):
        assert main([*argv, "hydra.run.dir=remote"]) == 0
    assert not list((work / "remote").glob("*.pt")) and "accuracy" in capsys.readouterr().out

    assert main(["run", "federation=superlink"]) == 1  # which SuperLink?
    assert "federation.connection must name a SuperLink connection" in " ".join(
        capsys.readouterr().err.split()
    )


def test_federation_names_a_config_before_a_connection(flwr_home: Path) -> None:
    from fedplug._federation import expand_federation

    with (flwr_home / "config.toml").open("a") as f:
        f.write('\n[superlink.simulation]\naddress = "127.0.0.1:2"\ninsecure = true\n')
    argv = ["federation=simulation", f"federation={CONNECTION}", "model.rounds=1"]
    assert expand_federation(argv, conf_dir()) == [
        "federation=simulation",
        "federation=superlink",
        f"federation.connection='{CONNECTION}'",
        "model.rounds=1",
    ]
    assert expand_federation(["federation=nowhere"], conf_dir()) == ["federation=nowhere"]
