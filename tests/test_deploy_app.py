"""The Flower App (``flwr run .``) without processes: its FAB, its config, its ServerApp.

The process-level tests (test_deploy_secure/tls_auth/faults/policy) start real servers;
these check the pieces in-process, in seconds.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import zipfile
from pathlib import Path

import pytest
import tomli
from deploy_helpers import BIN, REPO_ROOT, write_pods
from flwr.app import Context, Message, RecordDict

from fedplug._errors import ConfigError, PodConfigError, PolicyRefusal
from fedplug._flower import LocalGrid, SecureAggregator, build_client_app
from fedplug._flower import _wire as wire
from fedplug._flower import app as flower_app
from fedplug._task_builder import compose_config, objects_from_config
from fedplug.cli._pod import supernode_command


# -- the Flower App's declaration and its FAB ---------------------------------------------
def test_pyproject_declares_the_flower_app() -> None:
    config = tomli.loads((REPO_ROOT / "pyproject.toml").read_text())
    app = config["tool"]["flwr"]["app"]
    assert app["components"] == {
        "serverapp": "fedplug._flower.app:server_app",
        "clientapp": "fedplug._flower.app:client_app",
    }
    assert set(app["config"]) == {"overrides", "output-dir"}
    # `flwr run` migrates (rewrites) a legacy [tool.flwr.federations] table: none here.
    assert "federations" not in config["tool"]["flwr"]


def test_the_fab_holds_only_the_app_config_and_hydra_configs() -> None:
    from flwr.cli.build import build_fab_from_disk

    fab = build_fab_from_disk(REPO_ROOT)
    names = zipfile.ZipFile(io.BytesIO(fab)).namelist()
    assert "pyproject.toml" in names and "conf/config.yaml" in names
    assert all(n in ("pyproject.toml", ".info/CONTENT") or n.startswith("conf/") for n in names)
    assert not any(n.endswith((".py", ".csv", ".gz", ".pt")) for n in names), names
    assert len(fab) < 64 * 1024, len(fab)


# -- composing the task ---------------------------------------------------------------------
def test_overrides_compose_the_same_objects_as_fedplug_run() -> None:
    cfg = compose_config(["aggregator=secure", "model.epochs=2", "strategy=fedadam"])
    composed = objects_from_config(cfg)
    assert isinstance(composed.aggregator, SecureAggregator)
    assert composed.model.epochs == 2
    assert composed.strategy_ref == "fedadam" and "eta" in composed.strategy_params
    assert set(composed.config) >= {"datastructure", "model", "aggregator", "pods", "seed"}


def test_a_bad_override_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="aggregator=nonsense"):
        compose_config(["aggregator=nonsense"])


def test_pod_names_come_from_names_or_pod_files(tmp_path: Path) -> None:
    (pod,) = write_pods(tmp_path, names=("hospital-a",), rows=(50,))
    assert flower_app.pod_names(["census-1", str(pod)]) == ["census-1", "hospital-a"]
    with pytest.raises(PodConfigError, match="missing.yaml"):
        flower_app.pod_names([str(tmp_path / "missing.yaml")])
    with pytest.raises(PodConfigError, match="more than once"):
        flower_app.pod_names(["hospital-a", str(pod)])


def test_output_dir_defaults_to_a_timestamped_folder() -> None:
    assert flower_app.output_dir({"output-dir": "/tmp/x"}) == Path("/tmp/x")
    default = flower_app.output_dir({"output-dir": ""})
    assert default.parent == Path("outputs") / "flwr-run"


# -- the ServerApp, on an in-process grid ---------------------------------------------------
class _PushPullGrid(LocalGrid):
    """LocalGrid answers pushed messages at once, so pulls (the SuperLink's way) find them."""


def _grid(pods: list[Path], deliver=None) -> LocalGrid:  # noqa: ANN001
    apps = {i + 1: build_client_app() for i in range(len(pods))}
    configs = {i + 1: {"pod": str(p)} for i, p in enumerate(pods)}
    return _PushPullGrid(apps, node_configs=configs, deliver=deliver)


def _context(overrides: str, out: Path, connect_timeout: float = 5.0) -> Context:
    # A short wait for pods: a broken test fails fast instead of waiting 120 s.
    overrides = f"{overrides} ++federation.connect_timeout={connect_timeout}"
    config = {"overrides": overrides, "output-dir": str(out)}
    return Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=config)


def test_the_server_app_trains_and_writes_outputs(tmp_path: Path) -> None:
    pods = write_pods(tmp_path / "pods", names=("p-1", "p-2"), rows=(150, 120))
    out = tmp_path / "out"
    context = _context("aggregator=secure model.rounds=1 pods.identifiers=[p-1,p-2]", out)
    grid = _grid(pods)
    assert flower_app.run_deployed(grid, context) == out
    # The pods are found once: the run reuses what building the model asked them.
    queries = [m for m in grid.sent if m.metadata.message_type == wire.SCHEMA_QUERY]
    assert sorted(m.metadata.dst_node_id for m in queries) == [1, 2]
    summary = json.loads((out / "history.json").read_text())
    assert [h["round"] for h in summary["history"]] == [1]
    assert summary["config"]["aggregator"]["name"] == "secure"
    from fedplug import TabularClassifier

    model = TabularClassifier.deserialize(out / "model.pt")
    assert model.predict(model_frame(pods[0])).shape == (10,)


def model_frame(pod: Path):  # noqa: ANN201
    import pandas as pd

    return pd.read_csv(pod.with_suffix(".csv")).head(10)


def test_a_refusal_fails_the_server_app_with_the_pods_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pods = write_pods(
        tmp_path / "pods",
        names=("p-1", "p-2", "p-3"),
        rows=(80, 80, 80),
        extra={"p-3": {"approved_pods": ["p-1"]}},
    )
    context = _context("aggregator=secure pods.identifiers=[p-1,p-2,p-3]", tmp_path / "out")
    with pytest.raises(PolicyRefusal, match="p-3") as info:
        flower_app.main(_grid(pods), context)
    assert "p-2" in str(info.value)
    assert "fedplug run failed" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_bad_setting_fails_before_any_pod_is_contacted(tmp_path: Path) -> None:
    grid = _grid([])
    context = _context("aggregator=secure aggregator.params.min_pods=1", tmp_path / "out")
    with pytest.raises(ConfigError, match="min_pods"):
        flower_app.run_deployed(grid, context)
    assert grid.sent == []


def test_a_missing_pod_fails_after_the_connect_timeout(tmp_path: Path) -> None:
    """The ServerApp never waits forever for a pod that is not there."""
    pods = write_pods(tmp_path / "pods", names=("p-1",), rows=(60,))
    context = _context("pods.identifiers=[p-1,p-9]", tmp_path / "out", connect_timeout=0.5)
    with pytest.raises(PodConfigError, match="p-9"):
        flower_app.run_deployed(_grid(pods), context)


def test_finding_pods_never_waits_on_a_dead_or_unrelated_supernode(tmp_path: Path) -> None:
    pods = write_pods(tmp_path / "pods", names=("p-1", "p-2", "p-3"), rows=(40, 40, 40))
    grid = _grid(pods, deliver=lambda node, message: node != 3)  # node 3 never answers
    # An hour's timeout: had the search waited on node 3, pytest's timeout would end it.
    nodes, infos = flower_app.find_pods(grid, ["p-2", "p-1"], timeout=3600, interval=0.01)
    assert nodes == {2: "p-2", 1: "p-1"}
    assert set(infos) == {"p-1", "p-2"} and infos["p-1"].min_pods == 2
    with pytest.raises(PodConfigError, match=r"\['p-3'\] not found .*found: \['p-1', 'p-2'\]"):
        flower_app.find_pods(grid, ["p-1", "p-3"], timeout=0.3, interval=0.01)


def test_a_pod_whose_data_fails_its_checks_is_the_error_at_once(tmp_path: Path) -> None:
    # Its answer to the schema query names it and why: no "not found" after the timeout.
    pods = write_pods(tmp_path / "pods", names=("p-1", "p-2"), rows=(40, 40))
    csv = tmp_path / "pods" / "p-2.csv"
    csv.write_text(csv.read_text().replace(",Private,", ",Privat,", 1) + "not,a,row\n")
    with pytest.raises(PodConfigError, match=r"\['p-2'\] cannot serve it \(pod-data\)") as info:
        # An hour's timeout: had the search waited, pytest's timeout would end it.
        flower_app.find_pods(_grid(pods), ["p-1", "p-2"], timeout=3600, interval=0.01)
    assert "fedplug pod check" in str(info.value)


def test_a_pod_served_twice_is_an_error(tmp_path: Path) -> None:
    (pod,) = write_pods(tmp_path / "pods", names=("p-1",), rows=(40,))
    with pytest.raises(PodConfigError, match="several SuperNodes"):
        flower_app.find_pods(_grid([pod, pod]), ["p-1"], timeout=5, interval=0.01)


# -- polling for replies --------------------------------------------------------------------
class _SlowGrid(LocalGrid):
    """Replies become pullable one poll at a time, like a SuperLink's."""

    def push_messages(self, messages):  # noqa: ANN001, ANN201
        batch = list(messages)
        ids = super().push_messages(batch)
        self._batch = batch
        return ids

    def pull_messages(self, message_ids):  # noqa: ANN001, ANN201
        if self._batch:
            message = self._batch.pop(0)
            reply = self._apps[message.metadata.dst_node_id](
                message, self._contexts[message.metadata.dst_node_id]
            )
            reply.metadata.__dict__["_message_id"] = "r" + message.metadata.message_id
            return [reply]
        return []


def test_polling_grid_collects_every_reply_and_respects_the_timeout(tmp_path: Path) -> None:
    pods = write_pods(tmp_path / "pods", names=("p-1", "p-2"), rows=(40, 40))
    inner = _SlowGrid(
        {1: build_client_app(), 2: build_client_app()},
        {1: {"pod": str(pods[0])}, 2: {"pod": str(pods[1])}},
    )
    grid = flower_app.PollingGrid(inner, interval=0.01)
    queries = [Message(RecordDict(), dst_node_id=n, message_type="query.schema") for n in (1, 2)]
    replies = list(grid.send_and_receive(queries, timeout=10))
    assert sorted(r.metadata.src_node_id for r in replies) == [1, 2]

    class _Silent(_SlowGrid):
        def pull_messages(self, message_ids):  # noqa: ANN001, ANN201
            return []

    silent = flower_app.PollingGrid(_Silent({1: build_client_app()}), interval=0.01)
    message = Message(RecordDict(), dst_node_id=1, message_type="query.schema")
    assert list(silent.send_and_receive([message], timeout=0.2)) == []


# -- `fedplug pod start` ------------------------------------------------------------------
def _ns(**kwargs: object) -> argparse.Namespace:
    base = {
        "superlink": "127.0.0.1:9092",
        "insecure": False,
        "root_certificates": None,
        "auth_key": None,
        "clientappio_api_address": None,
    }
    return argparse.Namespace(**{**base, **kwargs})


def test_pod_start_uses_flower_supernodes_real_flags(tmp_path: Path) -> None:
    ca, key, secret = tmp_path / "ca.crt", tmp_path / "pod-a", tmp_path / "secret"
    ca.write_text("x")
    key.write_text("x")
    command = supernode_command(_ns(root_certificates=str(ca), auth_key=str(key)), secret)
    usage = subprocess.run(
        [str(BIN / "flower-supernode"), "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    flags = [a for a in command if a.startswith("--")]
    assert flags and all(flag in usage for flag in flags), (flags, usage)

    def value(flag: str) -> str:
        return command[command.index(flag) + 1]

    # No app process of Flower's (it would install and import the bundle's code): the
    # pod's own executor serves the tasks, authenticated by the shared secret.
    assert value("--isolation") == "process"
    assert value("--superexec-auth-secret-file") == str(secret)
    assert "--node-config" not in command  # the executor knows its pod file
    assert value("--root-certificates") == str(ca)
    assert value("--auth-supernode-private-key") == str(key)
    assert value("--host") == "127.0.0.1"  # the Runtime API is local only
    assert 0 < int(value("--port")) < 65536  # a free one, chosen per pod
    insecure = supernode_command(_ns(insecure=True, port=9300), secret)
    assert "--insecure" in insecure and insecure[-2:] == ["--port", "9300"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "--insecure"),
        ({"insecure": True, "root_certificates": "ca.crt"}, "not both"),
        ({"root_certificates": "/nope/ca.crt"}, "/nope/ca.crt"),
        ({"insecure": True, "auth_key": "/nope/key"}, "ssh-keygen"),
        ({"insecure": True, "port": "http"}, "--port"),
    ],
)
def test_pod_start_rejects_bad_connection_options(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        supernode_command(_ns(**kwargs), Path("/tmp/secret"))


def test_pod_check_prints_the_identity_key_peers_pin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fedplug.cli._pod import pod_check
    from fedplug.secagg import IdentityKey

    key = IdentityKey.generate()
    (tmp_path / "a.pem").write_bytes(key.to_pem())  # as `openssl genpkey -algorithm ed25519`
    (tmp_path / "a.pem").chmod(0o600)  # a pod refuses an identity key others can read
    extra = {"pod-a": {"identity": {"key_file": "a.pem"}}}
    (pod,) = write_pods(tmp_path, names=("pod-a",), rows=(30,), extra=extra)
    assert pod_check(str(pod)) == 0
    assert key.public_b64() in capsys.readouterr().out


def test_pod_start_checks_the_pod_before_starting(tmp_path: Path) -> None:
    (pod,) = write_pods(tmp_path, names=("pod-a",), rows=(30,))
    pod.with_suffix(".csv").write_text("age\nnot-a-number\n")
    start = [str(BIN / "fedplug"), "pod", "start", str(pod)]
    done = subprocess.run(
        [*start, "--superlink", "127.0.0.1:1", "--insecure"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "pod-a" in done.stdout + done.stderr
    assert "starting:" not in done.stdout
