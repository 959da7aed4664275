"""Three small pods whose owners accept ``ridge-classifier`` (policy.accepted_models)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

COLORS = ["red", "green", "blue"]
CLASSES = ["low", "mid", "high"]


def write_pods(
    directory: Path, accepted: Sequence[str] | None = ("ridge-classifier",), rows: int = 80
) -> list[Path]:
    """Pods with ``x1``, ``x2`` (continuous), ``color`` and a 3-class ``label``; returns the
    YAML paths. ``accepted``: the pods' policy.accepted_models (None: the default)."""
    rng = np.random.default_rng(3)
    names = [f"ridge-pod-{i}" for i in range(3)]
    paths = []
    for i, name in enumerate(names):
        x1 = rng.normal(0.5 * i, 1.0, rows)
        x2 = rng.exponential(2.0, rows)
        if i == 0:
            # An outlier whose standardized value is beyond the clip (10): exercised.
            x2[-1] = 1000.0
        color = rng.choice(COLORS, rows)
        color[: len(COLORS)] = COLORS  # every pod sees every category: equal vocabularies
        score = x1 + 0.3 * np.minimum(x2, 8.0) + (color == "red") + rng.normal(0, 0.5, rows)
        label = np.select([score < 1.0, score < 2.5], CLASSES[:2], CLASSES[2])
        label[: len(CLASSES)] = CLASSES
        pd.DataFrame({"x1": x1, "x2": x2, "color": color, "label": label}).to_csv(
            directory / f"{name}.csv", index=False
        )
        config: dict = {
            "name": name,
            "datasource": {"type": "csv", "path": f"{name}.csv"},
            "split": {"type": "percentage", "validation": 0.25, "seed": 0},
            "approved_pods": [n for n in names if n != name],
        }
        if accepted is not None:
            # What each pod's owner adds to run this model plugin.
            config["policy"] = {"accepted_models": list(accepted)}
        path = directory / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        paths.append(path)
    return paths


@pytest.fixture
def pods(tmp_path: Path) -> list[Path]:
    return write_pods(tmp_path)
