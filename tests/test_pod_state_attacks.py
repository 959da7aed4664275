"""Another local user attacks a pod's state on disk (the unmasked update kept for a redo).

Each test performs the attack and shows it fail: directories pre-created open to others or
owned by someone else are refused before anything is written, links planted where the pod
creates or reads something are never followed, and what the pod writes is private.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fedplug._errors import PodConfigError
from fedplug._flower import _update_cache as cache

SECRET = np.arange(1, 1001, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
LEVELS = ["root", "pod", "run"]
OTHER_UID = 4242


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("FEDPLUG_CACHE_DIR", raising=False)
    monkeypatch.setenv("FEDPLUG_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def level_path(root: Path, level: str) -> Path:
    return {"root": root, "pod": root / "pod-a", "run": root / "pod-a" / "run1"}[level]


def precreate(root: Path, level: str, mode: int) -> Path:
    """The pod's directories down to ``level``, that last one with ``mode``."""
    target = level_path(root, level)
    for path in (root, root / "pod-a", root / "pod-a" / "run1"):
        path.mkdir(mode=0o700)
        if path == target:
            os.chmod(path, mode)  # mkdir's mode is cut by the umask
            return target
    raise AssertionError(level)


def not_directories(path: Path) -> list[Path]:
    """Every entry below ``path`` that is not a directory (links are not followed)."""
    found = []
    for top, dirs, names in os.walk(path):
        for name in [*dirs, *names]:
            if not stat.S_ISDIR((Path(top) / name).lstat().st_mode):
                found.append(Path(top) / name)
    return found


def store_and_recall_are_refused(match: str) -> None:
    with pytest.raises(PodConfigError, match=match):
        cache.remember("pod-a", "run1", 1, SECRET, ["accuracy"])
    with pytest.raises(PodConfigError, match=match):
        cache.recall("pod-a", "run1", 1)


# -- (a) a directory pre-created open to others --------------------------------------------


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o770, 0o705])
def test_directory_open_to_others_is_refused_and_nothing_is_written(
    root: Path, level: str, mode: int
) -> None:
    target = precreate(root, level, mode)
    with pytest.raises(PodConfigError) as refused:
        cache.remember("pod-a", "run1", 1, SECRET, ["accuracy"])
    message = str(refused.value)
    assert str(target) in message and f"{mode & 0o777:o}" in message
    assert f"chmod 700 {target}" in message and "remove it" in message
    assert not_directories(root) == []
    with pytest.raises(PodConfigError, match="open to other users"):
        cache.state_dir("pod-a") if level != "run" else cache.recall("pod-a", "run1", 1)
    assert stat.S_IMODE(target.stat().st_mode) == mode  # left for its owner to judge


def test_file_planted_in_a_world_writable_run_directory_is_not_read(root: Path) -> None:
    run = precreate(root, "run", 0o777)
    # The attacker plants what would be the pod's next file (a well-formed one, even).
    os.chmod(run, 0o700)
    cache.remember("pod-a", "run1", 1, np.zeros(3, dtype=np.uint64), [])
    os.chmod(run, 0o777)
    with pytest.raises(PodConfigError, match="open to other users"):
        cache.recall("pod-a", "run1", 1)
    assert (run / "1.update").exists()  # refused before it was opened


# -- (b) a directory owned by someone else -------------------------------------------------


def test_directory_owned_by_another_user_is_refused(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root.mkdir(mode=0o700)
    real = os.geteuid()
    monkeypatch.setattr(cache.os, "geteuid", lambda: real + 1)  # root now belongs to "another"
    store_and_recall_are_refused(f"owned by uid {real}, not by this user")
    with pytest.raises(PodConfigError, match=str(root)):
        cache.private_dir(root)
    monkeypatch.undo()
    assert not_directories(root) == []
    assert list(root.iterdir()) == []


def really(how: str) -> bool:
    """Whether to chown for real: only root can; elsewhere the process is made to see it."""
    return how == "chown" and os.geteuid() == 0


def make_foreign(path: Path, how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``path`` owned by another user (or, seen by the module, every directory is)."""
    if really(how):
        os.chown(path, OTHER_UID, OTHER_UID, follow_symlinks=False)
    else:
        real = os.geteuid()
        monkeypatch.setattr(cache.os, "geteuid", lambda: real + 1)


@pytest.mark.parametrize("how", ["chown", "geteuid"])
@pytest.mark.parametrize("level", LEVELS)
def test_directory_of_another_user_at_any_level_is_refused(
    root: Path, level: str, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = precreate(root, level, 0o700)
    make_foreign(target, how, monkeypatch)
    store_and_recall_are_refused("owned by uid .*, not by this user")
    with pytest.raises(PodConfigError, match="remove it"):
        cache.forget_stale("pod-a", 0) if level != "run" else cache.recall("pod-a", "run1", 1)
    assert not_directories(root) == []


@pytest.mark.parametrize("how", ["chown", "fstat"])
def test_update_file_of_another_user_is_not_read(
    root: Path, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache.remember("pod-a", "run1", 1, SECRET, ["accuracy"])
    planted = root / "pod-a" / "run1" / "1.update"
    if really(how):
        os.chown(planted, OTHER_UID, OTHER_UID)
    else:  # only the file looks foreign: the directories stay ours
        real_fstat = os.fstat

        def fstat(fd: int) -> os.stat_result:
            info = real_fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return info
            fields = list(info[:10])
            fields[4] = info.st_uid + 1
            return os.stat_result(fields)

        monkeypatch.setattr(cache.os, "fstat", fstat)
    with pytest.raises(PodConfigError, match="not a regular file of this user"):
        cache.recall("pod-a", "run1", 1)
    assert not planted.exists()


# -- (c) links planted where the pod creates or reads -------------------------------------


@pytest.fixture
def bait(tmp_path: Path) -> Callable[[], bytes]:
    """A file of the attacker's (or of the victim, elsewhere): returns its current content."""
    path = tmp_path / "attacker" / "bait"
    path.parent.mkdir()
    path.write_bytes(b"attacker's bytes\n")
    return path.read_bytes


@pytest.mark.parametrize("level", LEVELS)
def test_symlinked_directory_is_refused_and_its_target_untouched(
    root: Path, tmp_path: Path, level: str
) -> None:
    elsewhere = tmp_path / "attacker" / "dir"
    elsewhere.mkdir(parents=True, mode=0o700)
    link = level_path(root, level)
    for parent in {"root": [], "pod": [root], "run": [root, root / "pod-a"]}[level]:
        parent.mkdir(mode=0o700)
        os.chmod(parent, 0o700)
    link.symlink_to(elsewhere, target_is_directory=True)
    store_and_recall_are_refused("is a symbolic link")
    with pytest.raises(PodConfigError, match=f"{link} is a symbolic link.*remove it"):
        cache.private_dir(link)
    assert list(elsewhere.iterdir()) == []


def test_symlink_at_the_next_file_name_is_replaced_never_written_through(
    root: Path, tmp_path: Path, bait: Callable[[], bytes]
) -> None:
    cache.remember("pod-a", "run1", 1, np.zeros(3, dtype=np.uint64), [])  # creates the dirs
    run = root / "pod-a" / "run1"
    for seq, target in ((2, "bait"), (3, "created-by-the-pod")):
        (run / f"{seq}.update").symlink_to(tmp_path / "attacker" / target)
        cache.remember("pod-a", "run1", seq, SECRET, ["accuracy"])
        final = run / f"{seq}.update"
        assert stat.S_ISREG(final.lstat().st_mode)
        got, keys = cache.recall("pod-a", "run1", seq)
        np.testing.assert_array_equal(got, SECRET)
    assert bait() == b"attacker's bytes\n"
    assert sorted(p.name for p in (tmp_path / "attacker").iterdir()) == ["bait"]


def test_symlink_at_the_partial_file_name_is_skipped_for_a_fresh_name(
    root: Path, tmp_path: Path, bait: Callable[[], bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache.remember("pod-a", "run1", 1, np.zeros(3, dtype=np.uint64), [])
    run = root / "pod-a" / "run1"
    (run / ".2.0000000000000000.partial").symlink_to(tmp_path / "attacker" / "bait")
    tokens = iter(["0000000000000000", "1111111111111111"])
    monkeypatch.setattr(cache.secrets, "token_hex", lambda n: next(tokens))
    cache.remember("pod-a", "run1", 2, SECRET, ["accuracy"])
    np.testing.assert_array_equal(cache.recall("pod-a", "run1", 2)[0], SECRET)
    assert bait() == b"attacker's bytes\n"


def test_when_every_fresh_name_is_taken_remember_fails_clearly(
    root: Path, tmp_path: Path, bait: Callable[[], bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache.remember("pod-a", "run1", 1, np.zeros(3, dtype=np.uint64), [])
    run = root / "pod-a" / "run1"
    (run / ".2.0000000000000000.partial").symlink_to(tmp_path / "attacker" / "bait")
    monkeypatch.setattr(cache.secrets, "token_hex", lambda n: "0000000000000000")
    with pytest.raises(PodConfigError, match=f"cannot create a fresh file in .*{run}"):
        cache.remember("pod-a", "run1", 2, SECRET, ["accuracy"])
    assert bait() == b"attacker's bytes\n"
    assert not (run / "2.update").exists()


def test_symlink_at_the_name_a_redo_reads_is_not_followed(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The attacker prepares a well-formed update file of their choosing...
    cache.remember("pod-a", "run1", 7, np.full(3, 666, dtype=np.uint64), ["forged"])
    forged = tmp_path / "attacker" / "forged.update"
    forged.parent.mkdir()
    os.replace(root / "pod-a" / "run1" / "7.update", forged)
    content = forged.read_bytes()
    # ... and links the name the pod reads on a redo to it.
    (root / "pod-a" / "run1" / "7.update").symlink_to(forged)
    with pytest.raises(PodConfigError, match="is a symbolic link.*not followed"):
        cache.recall("pod-a", "run1", 7)
    assert forged.read_bytes() == content
    assert not os.path.lexists(root / "pod-a" / "run1" / "7.update")


def test_fifo_at_the_name_a_redo_reads_neither_hangs_nor_is_read(root: Path) -> None:
    cache.remember("pod-a", "run1", 1, np.zeros(3, dtype=np.uint64), [])
    os.mkfifo(root / "pod-a" / "run1" / "2.update", 0o600)
    with pytest.raises(PodConfigError, match="not a regular file"):
        cache.recall("pod-a", "run1", 2)


def test_forget_unlinks_planted_links_without_following_them(
    root: Path, tmp_path: Path, bait: Callable[[], bytes]
) -> None:
    cache.remember("pod-a", "run1", 1, SECRET, [])
    elsewhere = tmp_path / "attacker"
    (root / "pod-a" / "run1" / "dir-link").symlink_to(elsewhere, target_is_directory=True)
    (root / "pod-a" / "run2").symlink_to(elsewhere, target_is_directory=True)
    cache.forget_stale("pod-a", -1.0)
    assert list((root / "pod-a").iterdir()) == []
    assert bait() == b"attacker's bytes\n"


# -- (d) what the pod writes is private --------------------------------------------------------


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_files_are_0600_and_directories_0700_whatever_the_umask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask: int
) -> None:
    monkeypatch.delenv("FEDPLUG_CACHE_DIR", raising=False)
    root = tmp_path / "missing" / "parents" / "state"
    monkeypatch.setenv("FEDPLUG_STATE_DIR", str(root))
    previous = os.umask(umask)
    try:
        cache.remember("pod-a", "run1", 1, SECRET, ["accuracy"])
    finally:
        os.umask(previous)
    directories = [tmp_path / "missing", tmp_path / "missing" / "parents", root]
    directories += [root / "pod-a", root / "pod-a" / "run1"]
    for directory in directories:
        assert stat.S_IMODE(directory.lstat().st_mode) == 0o700, directory
    (only,) = not_directories(tmp_path)
    info = only.lstat()
    assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == os.geteuid()


def test_private_dir_creates_0700_and_accepts_its_own_directory(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b"
    assert cache.private_dir(path) == path
    assert cache.private_dir(path) == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    (tmp_path / "file").write_text("")
    with pytest.raises(PodConfigError, match="is not a directory"):
        cache.private_dir(tmp_path / "file")


@pytest.mark.parametrize(
    "content",
    [b"", b"fedplug\x01", b"not a fedplug file at all", b"fedplug\x01" + (8).to_bytes(8, "little")],
)
def test_malformed_update_file_is_refused_and_deleted(root: Path, content: bytes) -> None:
    cache.remember("pod-a", "run1", 1, SECRET, [])
    (root / "pod-a" / "run1" / "1.update").write_bytes(content)
    with pytest.raises(PodConfigError, match="1.update"):
        cache.recall("pod-a", "run1", 1)
    assert not_directories(root) == []


def test_header_of_another_exchange_or_length_is_refused(root: Path) -> None:
    cache.remember("pod-a", "run1", 1, SECRET, [])
    run = root / "pod-a" / "run1"
    os.replace(run / "1.update", run / "2.update")  # seq in the header says 1
    with pytest.raises(PodConfigError, match="does not match its header"):
        cache.recall("pod-a", "run1", 2)
    cache.remember("pod-a", "run1", 1, SECRET, [])
    with open(run / "1.update", "ab") as tail:
        tail.write(b"stale tail")
    with pytest.raises(PodConfigError, match="does not match its header"):
        cache.recall("pod-a", "run1", 1)
