"""What the commands print and plot stays whole: at 80 columns, in a pipe, in the figures."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from fedplug._plugins import list_plugins
from fedplug.cli import _report
from fedplug.cli._outputs import history_figure
from fedplug.cli._report import RunSummary, comparison_figure, read_sweep, report

LONG = [
    "aggregator=secure",
    "strategy=fedadam",
    "strategy.params.eta=0.02",
    "model.optimizer.params.lr=0.005",
]


def _terminal(width: int = 80) -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=width, color_system=None)


def _column(text: str, index: int) -> str:
    """Every piece of one column of a rich table, joined (folded cells come back whole)."""
    rows = [line.split("│") for line in text.splitlines() if "│" in line]
    pieces = [parts[index].strip() for parts in rows if -len(parts) <= index < len(parts)]
    return "".join(pieces)


def _sweep(root: Path) -> Path:
    for num, (seed, accuracy) in enumerate([(0, 0.81), (1, 0.83), (2, None)]):
        job = root / f"{num}_seed={seed}"
        (job / ".hydra").mkdir(parents=True)
        overrides = [*LONG, f"seed={seed}", f"pods.identifiers=[hospital-north-{seed},x]"]
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        if accuracy is None:
            (job / "run.log").write_text(
                "2024-01-01 12:00:00,000 ERROR   fedplug.run: pod 'hospital-north-2' not found\n"
            )
            continue
        history = [
            {"round": r, "train": {}, "evaluate": {"accuracy": accuracy, "loss": 0.4}}
            for r in (1, 2, 3)
        ]
        (job / "history.json").write_text(json.dumps({"history": history, "seconds": 2.5}))
    return root


def test_plugins_in_a_pipe_at_80_columns_print_every_target_whole() -> None:
    env = {**os.environ, "COLUMNS": "80"}
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from fedplug.cli import main; sys.exit(main())"]
        + ["plugins"],
        capture_output=True,  # a pipe
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "…" not in done.stdout
    lines = done.stdout.splitlines()
    for record in list_plugins():
        assert any(record.name in line.split() and record.target in line for line in lines)


def test_plugins_in_an_80_column_terminal_fold_instead_of_cutting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fedplug.cli import _plugins

    console = _terminal()
    monkeypatch.setattr(_plugins, "console", console)
    assert _plugins.plugins() == 0
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    targets = _column(text, 2)
    for record in list_plugins():
        assert record.target in targets


def test_report_at_80_columns_and_in_a_pipe_shows_every_override_and_the_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = _sweep(tmp_path / "sweep")
    assert report(str(sweep)) == 0  # a pipe (captured): plain lines, one per run
    lines = capsys.readouterr().out.splitlines()
    row = next(line for line in lines if line.lstrip().startswith("2 "))
    assert "seed=2" in row and "failed: pod 'hospital-north-2' not found" in row

    console = _terminal()
    monkeypatch.setattr(_report, "console", console)
    assert report(str(sweep)) == 0
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "…" not in text
    status = "".join(_column(text, -2).split())  # the last column: status, folded
    assert "failed:pod'hospital-north-2'notfound" in status
    overrides = "".join(_column(text, 2).split())
    assert "pods.identifiers=[hospital-north-1,x]" in overrides


def test_metrics_png_has_whole_round_ticks() -> None:
    history = [
        {"round": r, "train": {"train_loss": 0.5 / r}, "evaluate": {"loss": 0.4, "accuracy": 0.8}}
        for r in (1, 2, 3)
    ]
    figure = history_figure(history)
    for axes in figure.axes:
        ticks = [t for t in axes.get_xticks() if 1 <= t <= 3]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_a_failed_run_is_in_the_comparison_plot_marked_failed(tmp_path: Path) -> None:
    runs = read_sweep(_sweep(tmp_path / "sweep"))
    for run in runs:
        run.label = run.dir
    figure = comparison_figure(runs)
    left, right = figure.axes
    legend = [t.get_text() for t in left.get_legend().get_texts()]
    assert legend == ["#0 0_seed=0", "#1 1_seed=1", "#2 2_seed=2 (failed)"]
    assert [t.get_text() for t in right.get_xticklabels()] == ["#0", "#1", "#2 (failed)"]
    assert "1 failed" in figure._suptitle.get_text()
    assert isinstance(runs[2], RunSummary) and runs[2].status.startswith("failed: ")
