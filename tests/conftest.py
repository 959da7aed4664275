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
