"""Sweeps: `fedplug run -m` writes one directory per job; `fedplug report` compares them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fedplug import FedplugError
from fedplug.cli._main import main
from fedplug.cli._report import console, read_sweep, report

PNG = b"\x89PNG\r\n\x1a\n"


def _job(
    root: Path,
    name: str,
    overrides: list[str],
    accuracy: float | None,
    seconds: float = 3.0,
    rounds: int = 2,
) -> Path:
    job = root / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if accuracy is not None:
        history = [
            {
                "round": r,
                "train": {"train_loss": 0.5},
                "evaluate": {
                    "loss": 0.4,
                    "accuracy": accuracy - 0.01 * (rounds - r),
                    "auc": 0.9,
                    "f1": 0.6,
                    "precision": 0.7,
                    "recall": 0.5,
                },
            }
            for r in range(1, rounds + 1)
        ]
        (job / "history.json").write_text(
            json.dumps({"history": history, "seconds": seconds, "config": {"seed": 0}})
        )
    return job


@pytest.fixture
def wide_console() -> None:
    console.width = 200  # rich wraps to the terminal; keep each run on one line


def test_report_compares_every_run_and_writes_table_plot_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], wide_console: None
) -> None:
    sweep = tmp_path / "multirun" / "2024-01-01" / "12-00-00"
    for num, (agg, seed, acc) in enumerate(
        [("fedavg", 0, 0.80), ("fedavg", 1, 0.82), ("secure", 0, 0.81), ("secure", 1, 0.83)]
    ):
        _job(
            sweep,
            f"{num}_aggregator={agg},seed={seed}",
            [f"aggregator={agg}", f"seed={seed}", "model.rounds=2"],
            acc,
            seconds=2.0 + num,
        )
    _job(
        sweep, "4_aggregator=secure,seed=2", ["aggregator=secure", "seed=2", "model.rounds=2"], None
    )
    (sweep / "multirun.yaml").write_text("hydra: {}\n")

    assert main(["report", str(sweep)]) == 0
    out = capsys.readouterr().out
    for label in (
        "aggregator=fedavg seed=0",
        "aggregator=fedavg seed=1",
        "aggregator=secure seed=0",
        "aggregator=secure seed=1",
        "aggregator=secure seed=2",
    ):
        assert label in out
    assert "0.8300" in out and "5.0" in out  # final accuracy, wall time of job 3
    assert "no history.json" in out  # the failed job is listed, not dropped
    assert "common to every run: model.rounds=2" in out
    assert "0.8100 ± 0.0141" in out  # fedavg over seeds 0 and 1
    assert "4 of 5 run(s) finished" in out

    summary = json.loads((sweep / "comparison.json").read_text())
    assert [r["dir"] for r in summary["runs"]] == sorted(
        p.name for p in sweep.iterdir() if p.is_dir()
    )
    assert summary["varying"] == ["aggregator", "seed"]
    ok = [r for r in summary["runs"] if r["status"] == "ok"]
    assert [r["final"]["accuracy"] for r in ok] == [0.80, 0.82, 0.81, 0.83]
    assert all(r["rounds"] == 2 for r in ok)
    groups = {g["setting"]["aggregator"]: g for g in summary["groups"]}
    assert groups["secure"]["runs"] == 2
    assert groups["secure"]["accuracy"]["mean"] == pytest.approx(0.82)
    assert (sweep / "comparison.png").read_bytes().startswith(PNG)


def test_report_orders_jobs_by_number(tmp_path: Path) -> None:
    for num in (10, 2, 1):
        _job(tmp_path, f"{num}_seed={num}", [f"seed={num}"], 0.8)
    assert [r.dir for r in read_sweep(tmp_path)] == ["1_seed=1", "2_seed=2", "10_seed=10"]


def test_report_of_a_single_run_directory(tmp_path: Path, wide_console: None) -> None:
    _job(tmp_path, "run", ["seed=3"], 0.7)
    assert report(str(tmp_path / "run")) == 0
    runs = json.loads((tmp_path / "run" / "comparison.json").read_text())["runs"]
    assert len(runs) == 1 and runs[0]["dir"] == "."


def test_unreadable_history_is_reported_not_fatal(tmp_path: Path) -> None:
    job = _job(tmp_path, "0_seed=0", ["seed=0"], None)
    (job / "history.json").write_text("{not json")
    _job(tmp_path, "1_seed=1", ["seed=1"], 0.8)
    runs = read_sweep(tmp_path)
    assert runs[0].status.startswith("unreadable history.json")
    assert runs[1].status == "ok"


def test_empty_directory_is_an_error_saying_how_to_make_a_sweep(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(FedplugError, match=r"no runs found in '.*'.*fedplug run -m") as info:
        report(str(tmp_path))
    assert str(tmp_path) in str(info.value)
    assert not (tmp_path / "comparison.json").exists()


def test_missing_directory_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "multirun" / "nope"
    assert main(["report", str(missing)]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_a_real_sweep_runs_every_combination_and_the_report_covers_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], wide_console: None
) -> None:
    sweep = tmp_path / "sweep"
    env = {**os.environ, "FEDPLUG_POD_DIR": str(tmp_path / "pods")}
    command = [
        sys.executable,
        "-c",
        "import sys; from fedplug.cli import main; sys.exit(main())",
        "run",
        "-m",
        "seed=0,1",
        "model.rounds=1",
        "model.epochs=null",
        "model.steps=10",
        f"hydra.sweep.dir={sweep}",
    ]
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name.split("_")[0] for p in jobs] == ["0", "1"]  # one directory per job
    for job in jobs:
        assert (job / "history.json").is_file() and (job / "model.pt").is_file()

    assert main(["report", str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "seed=0" in out and "seed=1" in out and "2 of 2 run(s) finished" in out
    summary = json.loads((sweep / "comparison.json").read_text())
    assert sorted(r["dir"] for r in summary["runs"]) == [p.name for p in jobs]
    assert summary["varying"] == ["seed"]
    for run, seed in zip(summary["runs"], (0, 1), strict=True):
        assert run["status"] == "ok" and f"seed={seed}" in run["overrides"]
        assert run["rounds"] == 1 and run["seconds"] > 0
        assert 0.0 <= run["final"]["accuracy"] <= 1.0
    assert (sweep / "comparison.png").read_bytes().startswith(PNG)
