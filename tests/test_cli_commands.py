"""The command line's edges: help, shell completion, swapped arguments, `fedplug submit`."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from deploy_helpers import BIN, CONNECTION, REPO_ROOT, cluster

from fedplug._errors import ConfigError
from fedplug.cli._main import main
from fedplug.cli._submit import app_dir, run_config

COMMANDS = ("run", "demo", "pod", "schema", "submit", "evaluate", "plugins", "report")


def test_help_lists_every_command_run_included(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: fedplug <command> [...]\n")
    listed = re.findall(r"^  ([a-z]+) ", out, flags=re.MULTILINE)
    assert set(COMMANDS) <= set(listed), listed
    with pytest.raises(SystemExit):
        main(["nonsense"])
    assert "'run'" in capsys.readouterr().err  # among the valid choices


@pytest.mark.parametrize(
    ("argv", "usage"),
    [
        (["pod", "start", "--help"], "usage: fedplug pod start [-h] --superlink HOST:PORT"),
        (["submit", "--help"], "usage: fedplug submit [-h]"),
        (["demo", "--help"], "usage: fedplug demo [-h]"),
    ],
)
def test_a_command_help_has_its_own_usage(
    argv: list[str], usage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(argv)
    out = capsys.readouterr().out
    assert out.startswith(usage), out[:300]
    assert "commands:" not in out  # not the top-level command list


@pytest.mark.parametrize("flag", ["-sc", "--shell-completion"])
def test_shell_completion_is_refused_clearly(
    flag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["run", flag, "install=bash"]) == 1
    captured = capsys.readouterr()
    err = " ".join(captured.err.split())
    assert f"`fedplug run {flag}`: shell completion is not available for fedplug" in err
    assert "fedplug run --help" in err
    assert "complete" not in captured.out  # no script was printed


def test_evaluate_with_its_arguments_swapped_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, model = tmp_path / "test.csv", tmp_path / "model.pt"
    data.write_text("age,TARGET\n30,>50K\n")
    model.write_bytes(b"not used")
    assert main(["evaluate", str(data), str(model)]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "fedplug evaluate takes the model first, then the data" in err
    assert f"Run `fedplug evaluate {model} {data}`" in err
    assert "pop from empty list" not in err


def test_submit_checks_its_inputs_before_calling_flower(tmp_path: Path) -> None:
    assert run_config(["aggregator=secure", "pods.identifiers=[a,b]"], "/tmp/o") == (
        "overrides='aggregator=secure pods.identifiers=[a,b]' output-dir='/tmp/o'"
    )
    with pytest.raises(ConfigError, match="single quote"):
        run_config(["datastructure.target='TARGET'"], "")
    with pytest.raises(ConfigError, match="not a Flower App.*--app DIR"):
        app_dir(str(tmp_path))
    assert app_dir(None) == REPO_ROOT


@pytest.mark.deploy
def test_submit_exits_non_zero_for_a_failed_run_where_flwr_run_exits_zero(
    tmp_path: Path,
) -> None:
    """A run that fails on the SuperLink (its pods are not there): `flwr run --stream`
    exits 0, `fedplug submit` exits 1 with the run's status and Flower's details."""
    overrides = ["pods.identifiers=[absent-a,absent-b]", "federation.connect_timeout=1"]
    with cluster(tmp_path) as c:
        c.start_superlink()
        done = subprocess.run(
            [BIN / "fedplug", "submit", CONNECTION, *overrides, "--output-dir", tmp_path / "out"],
            env=c.env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=240,
            stdin=subprocess.DEVNULL,
        )
        run_id = int(done.stdout.split("Successfully started run ", 1)[1].split()[0])
        assert c.status(run_id)[0] == "finished:failed"
    err = " ".join(done.stderr.split())
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"error: run {run_id} on 'fedplug-test' ended finished:failed: " in err, err
    assert "absent-a" in err and "not found" in err  # Flower's details: fedplug's error
    assert "(flwr run itself exited with code 0)" in err  # Flower's behaviour, the reason
