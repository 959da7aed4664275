"""The redo cache: exact round trips, a private place, and nothing kept longer than needed.

Attacks by another local user are in test_pod_state_attacks.py.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest

from fedplug._errors import PodConfigError, SecureAggregationError
from fedplug._flower import _update_cache as cache


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("FEDPLUG_CACHE_DIR", raising=False)
    monkeypatch.setenv("FEDPLUG_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def files_under(path: Path) -> list[Path]:
    """Every entry that is not a directory below ``path`` (links are not followed)."""
    return sorted(
        Path(top) / name
        for top, dirs, names in os.walk(path)
        for name in [*names, *dirs]
        if not stat.S_ISDIR((Path(top) / name).lstat().st_mode)
    )


# -- where state lives ----------------------------------------------------------------------


def test_state_root_prefers_fedplug_state_dir_then_xdg_then_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("FEDPLUG_STATE_DIR", "FEDPLUG_CACHE_DIR", "XDG_STATE_HOME"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.state_root() == tmp_path / "home" / ".local" / "state" / "fedplug"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/ignored")
    assert cache.state_root() == tmp_path / "home" / ".local" / "state" / "fedplug"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert cache.state_root() == tmp_path / "xdg" / "fedplug"
    monkeypatch.setenv("FEDPLUG_CACHE_DIR", str(tmp_path / "old"))  # the older name
    assert cache.state_root() == tmp_path / "old"
    monkeypatch.setenv("FEDPLUG_STATE_DIR", str(tmp_path / "new"))
    assert cache.state_root() == tmp_path / "new"


def test_state_lives_in_one_directory_per_pod_and_run(root: Path) -> None:
    cache.remember("pod-a", "run1", 0, np.ones(3, dtype=np.uint64), [])
    cache.remember("pod-a", "run2", 0, np.ones(3, dtype=np.uint64), [])
    cache.remember("pod-b", "run1", 0, np.ones(3, dtype=np.uint64), [])
    assert sorted(p.relative_to(root).as_posix() for p in files_under(root)) == [
        "pod-a/run1/0.update",
        "pod-a/run2/0.update",
        "pod-b/run1/0.update",
    ]
    assert cache.state_dir("pod-c") == root / "pod-c"
    assert stat.S_IMODE((root / "pod-c").stat().st_mode) == 0o700


@pytest.mark.parametrize(
    "name", ["", ".", "..", "../x", "a/b", "/abs", ".hidden", "a\0b", "x" * 129]
)
def test_pod_and_run_names_must_be_one_safe_path_component(root: Path, name: str) -> None:
    vector = np.ones(3, dtype=np.uint64)
    with pytest.raises(PodConfigError, match="pod name"):
        cache.remember(name, "run1", 0, vector, [])
    with pytest.raises(PodConfigError, match="pod name"):
        cache.state_dir(name)
    with pytest.raises(SecureAggregationError, match="run id"):
        cache.remember("pod-a", name, 0, vector, [])
    with pytest.raises(SecureAggregationError, match="run id"):
        cache.recall("pod-a", name, 0)
    assert files_under(root.parent) == []


# -- round trips ------------------------------------------------------------------------------


def test_recall_returns_the_vector_as_it_was_remembered(root: Path) -> None:
    vector = np.arange(10, dtype=np.uint64)
    cache.remember("pod-a", "run1", 3, vector, ["accuracy"])
    vector += np.uint64(5)  # the pod masks its array in place after remembering it
    got, keys = cache.recall("pod-a", "run1", 3)
    np.testing.assert_array_equal(got, np.arange(10, dtype=np.uint64))
    assert got.dtype == np.uint64
    assert keys == ["accuracy"]


@pytest.mark.parametrize("size", [0, 1, 3, 7, 13, 1021, 65_537, 1_000_003])
def test_round_trip_is_exact_for_any_length(root: Path, size: int) -> None:
    rng = np.random.default_rng(size)
    vector = rng.integers(0, 2**64, size=size, dtype=np.uint64, endpoint=False)
    vector[:2] = [2**64 - 1, 0][: min(size, 2)]
    keys = ["loss", "accuracy", "ünïcode key", 'with "quotes"'][: size % 5]
    cache.remember("pod-a", "run1", 9, vector, keys)
    got, got_keys = cache.recall("pod-a", "run1", 9)
    np.testing.assert_array_equal(got, vector)
    assert got_keys == keys


def test_shorter_vectors_after_longer_ones_read_back_exactly(root: Path) -> None:
    for seq, size in enumerate([100, 90, 7, 120, 5]):
        vector = np.arange(size, dtype=np.uint64) * np.uint64(seq + 1)
        cache.remember("pod-a", "run1", seq, vector, [f"m{seq}"])
        (only,) = files_under(root)
        assert only.name == f"{seq}.update"
        got, keys = cache.recall("pod-a", "run1", seq)
        np.testing.assert_array_equal(got, vector)
        assert keys == [f"m{seq}"]


def test_non_contiguous_and_other_integer_inputs_are_kept_as_uint64(root: Path) -> None:
    vector = np.arange(20, dtype=np.uint64)[::3]
    cache.remember("pod-a", "run1", 0, vector, [])
    np.testing.assert_array_equal(cache.recall("pod-a", "run1", 0)[0], vector)


def test_other_exchanges_runs_and_pods_get_nothing(root: Path) -> None:
    cache.remember("pod-a", "run1", 3, np.ones(4, dtype=np.uint64), [])
    assert cache.recall("pod-a", "run1", 4) is None
    assert cache.recall("pod-a", "run2", 3) is None
    assert cache.recall("pod-b", "run1", 3) is None
    cache.remember("pod-a", "run1", 4, np.zeros(4, dtype=np.uint64), [])
    assert cache.recall("pod-a", "run1", 3) is None  # a newer exchange replaces the old one


def test_recall_without_any_state_creates_nothing(root: Path) -> None:
    assert cache.recall("pod-a", "run1", 0) is None
    assert not root.exists()


# -- lifetime -----------------------------------------------------------------------------------


def test_storing_the_next_exchange_deletes_the_previous_one(root: Path) -> None:
    cache.remember("pod-a", "run1", 3, np.arange(5, dtype=np.uint64), ["a"])
    cache.remember("pod-a", "run1", 4, np.arange(6, dtype=np.uint64), ["b"])
    assert [p.name for p in files_under(root)] == ["4.update"]
    assert cache.recall("pod-a", "run1", 3) is None


def test_storing_an_exchange_also_removes_partial_files_left_by_a_crash(root: Path) -> None:
    cache.remember("pod-a", "run1", 3, np.arange(5, dtype=np.uint64), [])
    run = root / "pod-a" / "run1"
    fd = os.open(run / ".3.00ff.partial", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    cache.remember("pod-a", "run1", 4, np.arange(5, dtype=np.uint64), [])
    assert [p.name for p in files_under(root)] == ["4.update"]


def test_recall_deletes_what_it_returns(root: Path) -> None:
    cache.remember("pod-a", "run1", 3, np.arange(5, dtype=np.uint64), ["a"])
    assert cache.recall("pod-a", "run1", 3) is not None
    assert files_under(root) == []
    assert cache.recall("pod-a", "run1", 3) is None  # a round is redone at most once


def test_forget_run_deletes_everything_of_that_run_only(root: Path) -> None:
    cache.remember("pod-a", "run1", 3, np.arange(5, dtype=np.uint64), [])
    cache.remember("pod-a", "run2", 3, np.arange(5, dtype=np.uint64), [])
    (root / "pod-a" / "run1" / "stray").write_bytes(b"x")
    cache.forget_run("pod-a", "run1")
    assert not (root / "pod-a" / "run1").exists()
    assert [p.relative_to(root).as_posix() for p in files_under(root)] == ["pod-a/run2/3.update"]
    cache.forget_run("pod-a", "run1")  # nothing left: nothing happens
    cache.forget_run("pod-z", "run1")
    assert not (root / "pod-z").exists()


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    for top, dirs, names in os.walk(path, topdown=False):
        for name in [*names, *dirs]:
            os.utime(Path(top) / name, (then, then), follow_symlinks=False)
    os.utime(path, (then, then))


def test_forget_stale_removes_old_runs_only(root: Path) -> None:
    for run in ("old", "recent", "old-but-touched"):
        cache.remember("pod-a", run, 1, np.arange(5, dtype=np.uint64), [])
    _age(root / "pod-a" / "old", 7200)
    _age(root / "pod-a" / "old-but-touched", 7200)
    os.utime(root / "pod-a" / "old-but-touched" / "1.update")  # written just now
    (root / "pod-a" / "empty-old").mkdir(mode=0o700)
    _age(root / "pod-a" / "empty-old", 7200)
    cache.forget_stale("pod-a", 3600)
    assert sorted(p.name for p in (root / "pod-a").iterdir()) == ["old-but-touched", "recent"]
    cache.forget_stale("pod-a", -1.0)  # everything is older than "in a second"
    assert list((root / "pod-a").iterdir()) == []
    cache.forget_stale("pod-z", 0)
    assert not (root / "pod-z").exists()


def test_forget_pod_deletes_all_of_its_state(root: Path) -> None:
    cache.remember("pod-a", "run1", 1, np.arange(5, dtype=np.uint64), [])
    cache.remember("pod-a", "run2", 1, np.arange(5, dtype=np.uint64), [])
    cache.remember("pod-b", "run1", 1, np.arange(5, dtype=np.uint64), [])
    cache.forget_pod("pod-a")
    assert not (root / "pod-a").exists()
    assert [p.relative_to(root).as_posix() for p in files_under(root)] == ["pod-b/run1/1.update"]
    cache.forget_pod("pod-a")


def test_a_failed_write_leaves_no_partial_file(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full_disk(fd: int, data: object) -> int:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch, pytest.raises(OSError, match="No space"):
        patch.setattr(cache.os, "write", full_disk)
        cache.remember("pod-a", "run1", 1, np.arange(5, dtype=np.uint64), [])
    assert files_under(root) == []
