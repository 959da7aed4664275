"""The redo cache survives a fresh ClientApp process and never mixes exchanges."""

from __future__ import annotations

import stat

import numpy as np

from fedplug._flower import _update_cache as cache


def test_recall_returns_the_vector_as_it_was_remembered(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FEDPLUG_CACHE_DIR", str(tmp_path))
    vector = np.arange(10, dtype=np.uint64)
    cache.remember("pod-a", "run1", 3, vector, ["accuracy"])
    vector += np.uint64(5)  # the pod masks its array in place after remembering it
    got, keys = cache.recall("pod-a", "run1", 3)
    np.testing.assert_array_equal(got, np.arange(10, dtype=np.uint64))
    assert keys == ["accuracy"]
    files = list((tmp_path / "updates").glob("*.bin"))
    assert len(files) == 1 and stat.S_IMODE(files[0].stat().st_mode) == 0o600


def test_files_are_reused_in_turn_and_shorter_vectors_read_back_exactly(
    tmp_path, monkeypatch
) -> None:
    # Files are overwritten in place, so a shorter vector leaves old bytes behind its end:
    # the recorded length must cut them off.
    monkeypatch.setenv("FEDPLUG_CACHE_DIR", str(tmp_path))
    for seq, size in enumerate([100, 90, 7, 120, 5]):
        vector = np.arange(size, dtype=np.uint64) * np.uint64(seq + 1)
        cache.remember("pod-a", "run1", seq, vector, [f"m{seq}"])
        got, keys = cache.recall("pod-a", "run1", seq)
        np.testing.assert_array_equal(got, vector)
        assert keys == [f"m{seq}"]
    assert len(list((tmp_path / "updates").glob("*.bin"))) == 2


def test_other_exchanges_runs_and_pods_get_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FEDPLUG_CACHE_DIR", str(tmp_path))
    cache.remember("pod-a", "run1", 3, np.ones(4, dtype=np.uint64), [])
    assert cache.recall("pod-a", "run1", 4) is None
    assert cache.recall("pod-a", "run2", 3) is None
    assert cache.recall("pod-b", "run1", 3) is None
    cache.remember("pod-a", "run1", 4, np.zeros(4, dtype=np.uint64), [])
    assert cache.recall("pod-a", "run1", 3) is None  # a newer exchange replaces the old one
