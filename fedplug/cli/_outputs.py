"""What a run prints and writes: progress per round, a results table, files, a plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

# The progress lines per round are printed by fit itself (fedplug._flower._progress).
from fedplug._flower._progress import SHOWN

from ._tables import print_table


def results_table(history: list[dict]) -> Table:
    keys = [k for k in SHOWN if any(k in h["evaluate"] for h in history)]
    table = Table(title="validation metrics per round (weighted by examples)")
    table.add_column("round", justify="right")
    table.add_column("train_loss", justify="right")
    for key in keys:
        table.add_column(key, justify="right")
    for entry in history:
        train_loss = entry["train"].get("train_loss")
        row = [str(entry["round"]), f"{train_loss:.4f}" if train_loss is not None else "-"]
        row += [f"{entry['evaluate'][k]:.4f}" if k in entry["evaluate"] else "-" for k in keys]
        table.add_row(*row)
    return table


def print_results(console: Console, history: list[dict], seconds: float, out_dir: Path) -> None:
    print_table(console, results_table(history))
    console.print(f"done in {seconds:.1f}s; model, history and plot in {out_dir}")


def plot_history(history: list[dict], path: Path, title: str = "fedplug run") -> Path:
    import matplotlib.pyplot as plt

    fig = history_figure(history, title)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def history_figure(history: list[dict], title: str = "fedplug run") -> Any:
    """The figure of metrics.png: losses and validation metrics per round."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rounds = [h["round"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("train_loss",):
        left.plot(rounds, [h["train"].get(key) for h in history], marker="o", label=key)
    left.plot(
        rounds, [h["evaluate"].get("loss") for h in history], marker="o", label="validation loss"
    )
    left.set_xlabel("round")
    left.set_title("loss")
    left.legend()
    for key in ("accuracy", "auc", "f1"):
        if any(key in h["evaluate"] for h in history):
            right.plot(rounds, [h["evaluate"].get(key) for h in history], marker="o", label=key)
    right.set_xlabel("round")
    right.set_title("validation metrics")
    right.legend()
    for axes in (left, right):  # rounds are whole numbers: no 1.5 tick
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def write_outputs(
    out_dir: Path, model: Any, history: list[dict], seconds: float, config: dict
) -> None:
    import yaml

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    model.serialize(out_dir / "model.pt")
    summary = {"history": history, "seconds": seconds, "config": config}
    (out_dir / "history.json").write_text(json.dumps(summary, indent=2))
    plot_history(history, out_dir / "metrics.png")
