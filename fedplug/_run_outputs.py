"""What a run writes to its output directory: config, model, history and a plot.

Shared by ``fedplug run`` and the ServerApp of ``flwr run`` (which must not import the CLI).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


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
    # Whatever the model reports: a classifier's loss and scores, a regression's errors.
    for part, key, label in (
        ("train", "train_loss", "train_loss"),
        ("evaluate", "loss", "validation loss"),
        ("evaluate", "rmse", "validation rmse"),
        ("evaluate", "mae", "validation mae"),
    ):
        if any(key in h[part] for h in history):
            left.plot(rounds, [h[part].get(key) for h in history], marker="o", label=label)
    left.set_xlabel("round")
    left.set_title("loss and errors")
    for key in ("accuracy", "auc", "f1", "r2"):
        if any(key in h["evaluate"] for h in history):
            right.plot(rounds, [h["evaluate"].get(key) for h in history], marker="o", label=key)
    right.set_xlabel("round")
    right.set_title("validation metrics")
    for axes in (left, right):
        if axes.get_legend_handles_labels()[0]:  # a failed run may have nothing to show
            axes.legend()
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
