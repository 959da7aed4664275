"""Shared fixtures. Data-layer fixtures are prefixed ``data_``."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest


@pytest.fixture
def data_people() -> pd.DataFrame:
    """A small table with a continuous int, a continuous float, a string and a bool column."""
    return pd.DataFrame(
        {
            "age": [25, 32, 47, 51, 38, 29, 44, 60],
            "income": [1.5, 2.0, 3.25, 4.0, 2.5, 1.0, 3.0, 5.5],
            "city": ["Paris", "Lyon", "Paris", "Nice", "Lyon", "Paris", "Nice", "Lyon"],
            "member": [True, False, True, True, False, False, True, False],
        }
    )


@pytest.fixture
def data_digest() -> Callable[[Path], str]:
    """SHA-256 of a file's bytes, to check that reading never modifies a source."""

    def digest(path: Path) -> str:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()

    return digest


# -- federated fixtures (prefixed ``fed_``): small pods of the census data ---------------


@pytest.fixture(scope="session")
def fed_adult() -> pd.DataFrame:
    from fedplug.data import load_adult

    return load_adult("train")


@pytest.fixture
def fed_pods(tmp_path: Path, fed_adult: pd.DataFrame) -> Callable[..., list[Path]]:
    """Write small census pods sharing one agreed schema file; returns their YAML paths.

    ``policies`` maps a pod name to extra YAML keys (approved_pods, policy, ...).
    """
    import yaml

    from fedplug.data import Schema
    from fedplug.testing import pin_each_other

    def make(
        n_pods: int = 3, rows: int = 400, policies: dict | None = None, prefix: str = "pod"
    ) -> list[Path]:
        # education-num is an ordered level: declared, so inference does not warn.
        schema = Schema.infer(
            fed_adult, name="census", force_stypes={"education-num": "continuous"}
        )
        schema.to_yaml(tmp_path / "schema.yaml")
        paths = []
        for i in range(n_pods):
            name = f"{prefix}-{chr(ord('a') + i)}"
            fed_adult.iloc[i * rows : (i + 1) * rows].to_csv(tmp_path / f"{name}.csv", index=False)
            config = {
                "name": name,
                "datasource": {"type": "csv", "path": f"{name}.csv"},
                "schema": {"file": "schema.yaml"},
                "split": {"type": "percentage", "validation": 0.25, "seed": 1},
                "policy": {"min_pods": 2},
            }
            config.update((policies or {}).get(name, {}))
            path = tmp_path / f"{name}.yaml"
            path.write_text(yaml.safe_dump(config))
            paths.append(path)
        if any(
            (policies or {}).get(p.stem, {}).get("policy", {}).get("require_secure_aggregation")
            for p in paths
        ):
            # A pod requiring secure aggregation must approve and pin its peers.
            pin_each_other(paths)
        return paths

    return make
