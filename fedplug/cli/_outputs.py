"""What a run prints and writes: progress per round, a results table, files, a plot."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

# The progress lines per round are printed by fit itself (fedplug._flower._progress).
from fedplug._flower._progress import SHOWN

# What a run writes lives below the CLI, so the ServerApp of `flwr run` writes it too.
from fedplug._run_outputs import history_figure, plot_history, write_outputs

from ._tables import print_table

__all__ = ["history_figure", "plot_history", "print_results", "results_table", "write_outputs"]


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
