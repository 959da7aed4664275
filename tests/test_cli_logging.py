"""run.log holds the run (settings, rounds, end or error); the terminal has no third-party noise."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fedplug.cli import _outputs
from fedplug.cli._main import main
from fedplug.cli._report import read_sweep


def _overrides(pods: list[Path]) -> list[str]:
    names = ",".join(p.stem for p in pods)
    return [
        f"pods.identifiers=[{names}]",
        f"pods.dirs=[{pods[0].parent}]",
        "pods.create_demo=null",
        "model.rounds=2",
        "model.epochs=null",
        "model.steps=3",
    ]


def test_run_log_holds_the_progress_and_third_party_chatter_stays_out(
    fed_pods: Callable[..., list[Path]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    pods = fed_pods(n_pods=2, rows=200)
    out = tmp_path / "out"
    write_outputs = _outputs.write_outputs

    def chatty(*args: Any, **kwargs: Any) -> None:
        # What libraries log during a run, beside fedplug.
        logging.getLogger("alembic.runtime.plugins").info("setup plugin alembic.autogenerate")
        logging.getLogger("some.library").warning("a third-party warning")
        logging.getLogger("fedplug.server").warning("a fedplug warning")
        write_outputs(*args, **kwargs)

    monkeypatch.setattr(_outputs, "write_outputs", chatty)
    assert main(["run", *_overrides(pods), f"hydra.run.dir={out}"]) == 0
    captured = capsys.readouterr()
    root = logging.getLogger()
    assert not [h for h in root.handlers if getattr(h, "baseFilename", "").endswith("run.log")]

    log = (out / "run.log").read_text()
    lines = log.splitlines()
    assert "fedplug.run: fedplug run: TabularClassifier on pods ['pod-a', 'pod-b']" in lines[0]
    rounds = [line for line in lines if "fedplug.run: round " in line]
    assert [r.split("fedplug.run: ")[1].split()[0:2] for r in rounds] == [
        ["round", "1/2"],
        ["round", "2/2"],
    ]
    assert all("train_loss=" in r and "accuracy=" in r for r in rounds)
    assert any("fedplug.run: done in " in line for line in lines)
    assert "WARNING some.library: a third-party warning" in log  # kept, in the file only
    assert "alembic" not in log and "alembic" not in captured.out + captured.err
    assert "a third-party warning" not in captured.out + captured.err
    assert "WARNING fedplug.server: a fedplug warning" in captured.err  # fedplug's own: shown
    assert "round 2/2" in captured.out  # the terminal's progress is unchanged


def test_a_refused_run_keeps_only_its_config_and_a_log_with_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    assert main(["run", "federation.round_timeout=0", f"hydra.run.dir={out}"]) == 1
    message = "federation.round_timeout must be a number above 0, got 0"
    assert message in " ".join(capsys.readouterr().err.split())
    assert sorted(p.name for p in out.iterdir()) == [".hydra", "run.log"]
    assert f"ERROR   fedplug.run: {message}" in (out / "run.log").read_text()
    # `fedplug report` shows the run as failed, with that reason.
    (run,) = read_sweep(out)
    assert run.status.startswith(f"failed: {message}")
