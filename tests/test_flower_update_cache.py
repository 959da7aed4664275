"""The redo cache survives a fresh ClientApp process and never mixes exchanges."""

from __future__ import annotations

import stat

import numpy as np

from fedplug._flower import _update_cache as cache


def test_recall_from_memory_and_from_a_fresh_process(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FEDPLUG_CACHE_DIR", str(tmp_path))
    vector = np.arange(10, dtype=np.uint64)
    cache.remember("pod-a", "run1", 3, vector, ["accuracy"])
    got, keys = cache.recall("pod-a", "run1", 3)
    np.testing.assert_array_equal(got, vector)
    assert keys == ["accuracy"]
    monkeypatch.setattr(cache, "_MEMORY", {})  # what a new process sees
    got, keys = cache.recall("pod-a", "run1", 3)
    np.testing.assert_array_equal(got, vector)
    files = list((tmp_path / "updates").glob("*.npy"))
    assert len(files) == 1 and stat.S_IMODE(files[0].stat().st_mode) == 0o600


def test_other_exchanges_runs_and_pods_get_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FEDPLUG_CACHE_DIR", str(tmp_path))
    cache.remember("pod-a", "run1", 3, np.ones(4, dtype=np.uint64), [])
    assert cache.recall("pod-a", "run1", 4) is None
    assert cache.recall("pod-a", "run2", 3) is None
    assert cache.recall("pod-b", "run1", 3) is None
    cache.remember("pod-a", "run1", 4, np.zeros(4, dtype=np.uint64), [])
    assert cache.recall("pod-a", "run1", 3) is None  # a newer exchange replaces the old one
