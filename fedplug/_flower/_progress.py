"""Progress per round, as ``fedplug run`` and ``TabularClassifier.fit`` print it."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console

#: The validation metrics a progress line and the results table show, in this order.
SHOWN = ("loss", "accuracy", "auc", "f1", "precision", "recall", "rmse", "mae", "r2")

RoundCallback = Callable[[int, dict, dict], None]


def round_line(server_round: int, rounds: int, train: dict, evaluate: dict) -> str:
    """``round 2/5  train_loss=0.3521  loss=0.3398  accuracy=0.8421 ...``"""
    parts = [f"round {server_round}/{rounds}"]
    if "train_loss" in train:
        parts.append(f"train_loss={train['train_loss']:.4f}")
    parts += [f"{k}={evaluate[k]:.4f}" for k in SHOWN if k in evaluate]
    return "  ".join(parts)


def progress_printer(console: Console | None, rounds: int) -> RoundCallback:
    """A round callback that prints one line per round (to stdout unless ``console``)."""
    # soft_wrap: a line stays whole in a notebook or a log, whatever the width.
    out = console if console is not None else Console(soft_wrap=True)

    def on_round(server_round: int, train: dict, evaluate: dict) -> None:
        out.print("  " + round_line(server_round, rounds, train, evaluate), highlight=False)

    return on_round


def with_progress(
    on_round: RoundCallback | None, rounds: int, show: bool, console: Console | None = None
) -> RoundCallback | None:
    """``on_round``, preceded by a progress line per round when ``show``."""
    if not show:
        return on_round
    printer = progress_printer(console, rounds)
    if on_round is None:
        return printer

    def both(server_round: int, train: dict, evaluate: dict) -> None:
        printer(server_round, train, evaluate)
        on_round(server_round, train, evaluate)

    return both
