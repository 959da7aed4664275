"""The Bitfount census-income tutorial in examples/ runs and trains a useful model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "bitfount_census_tutorial.py"


def test_the_bitfount_tutorial_trains_on_two_pods_and_evaluates(tmp_path, capsys) -> None:
    spec = importlib.util.spec_from_file_location("bitfount_census_tutorial", EXAMPLE)
    assert spec is not None and spec.loader is not None
    tutorial = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tutorial)
    # One round of one epoch keeps it fast; the script's defaults are two of each.
    metrics = tutorial.main(["--dir", str(tmp_path), "--rounds", "1", "--epochs", "1"])
    out = capsys.readouterr().out
    assert "pod 'census-income-demo':" in out and "round 1/1" in out
    assert (tmp_path / "part_5_model.pt").is_file()
    # The Adult test file: 76% of its rows are "<=50K", so better than that is learning.
    assert metrics["accuracy"] > 0.80
    assert metrics["auc"] > 0.85
