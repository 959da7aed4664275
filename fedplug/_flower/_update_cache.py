"""A pod's encoded update, kept for the one re-masking redo a round may need.

Kept in a file on the pod's own machine, not in memory: the simulation engine may run a
pod's next message in another worker, and carrying the vector in Flower's node state would
ship it (8 bytes a parameter) with every message. (A pod under ``fedplug pod start`` is one
long-lived process and could keep it in memory; the redo, and this file, go away with
double masking.) The caller may overwrite its array once ``remember`` returns (the pod
masks it in place); a redo, which is rare, reads the file back.

Threat: the file holds the pod's weighted update *before* masking, which secure aggregation
exists to hide. Another local user must not be able to read it, replace it or make the pod
write it where they can read it: by pre-creating a predictable directory, planting a file or
a symbolic link at the next name, or reading a file left behind. So:

- It lives below the pod owner's state directory (``$FEDPLUG_STATE_DIR``, else
  ``$XDG_STATE_HOME/fedplug``, else ``~/.local/state/fedplug``; ``$FEDPLUG_CACHE_DIR`` is
  honoured as an older name of ``$FEDPLUG_STATE_DIR``), in ``<root>/<pod>/<run>/``. Every
  directory fedplug creates there is 0700; every existing one is checked (a real directory,
  not a symbolic link, owned by this user, no group or other permission) and refused with a
  :class:`~fedplug._errors.PodConfigError` otherwise. Directories are opened without
  following symbolic links and every file operation is relative to the checked directory.
- Files are created exclusively (``O_CREAT | O_EXCL | O_NOFOLLOW``, mode 0600) under a fresh
  random name, filled, then renamed into place; one file per exchange holds the metadata and
  the vector, so nothing is ever rewritten in place and no stale bytes survive. Files are
  read with ``O_NOFOLLOW`` and only if they are regular files of this user of the size their
  header states.

Lifetime: storing exchange ``seq`` of a run deletes that run's other exchanges (a new
exchange means the previous round ended); ``recall`` (the redo) returns the vector and
deletes it (a round is redone at most once); ``forget_run`` deletes a run's state,
``forget_stale`` runs nothing has touched for a while (ended or failed without telling the
pod), ``forget_pod`` all of a pod's state.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np

from .._errors import PodConfigError, SecureAggregationError

__all__ = [
    "forget_pod",
    "forget_run",
    "forget_stale",
    "private_dir",
    "recall",
    "remember",
    "state_dir",
    "state_root",
]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a planted FIFO must not hang the pod; it changes nothing for a regular file.
_READ_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_MAGIC = b"fedplug\x01"  # 8 bytes; the metadata length (8 bytes) follows, then the metadata
_MAX_META = 1 << 24
_FINAL = re.compile(r"(\d+)\.update")
_PARTIAL = re.compile(r"\.(\d+)\.[0-9a-f]+\.partial")


# -- directories ------------------------------------------------------------------------------


def state_root() -> Path:
    """The directory below which fedplug keeps every pod's state (not checked or created)."""
    for variable in ("FEDPLUG_STATE_DIR", "FEDPLUG_CACHE_DIR"):
        value = os.environ.get(variable)
        if value:
            return Path(os.path.abspath(os.path.expanduser(value)))
    xdg = os.environ.get("XDG_STATE_HOME")
    if xdg and os.path.isabs(xdg):  # the XDG spec says to ignore a relative value
        return Path(xdg) / "fedplug"
    return Path.home() / ".local" / "state" / "fedplug"


def private_dir(path: Path) -> Path:
    """``path`` as a directory only this user can use; created (0700) if missing.

    Missing parents are created 0700 too. Raises :class:`PodConfigError` naming the path, the
    problem and the fix if it is a symbolic link, not a directory, owned by another user or
    open to group or others.
    """
    path = Path(os.path.abspath(path))
    os.close(_open_dir(path, None, create=True))
    return path


def state_dir(pod: str) -> Path:
    """The pod's private state directory, ``<state_root()>/<pod>``, created if missing."""
    path = state_root() / _component(pod, "pod name", PodConfigError)
    with _dirs(path.parent, path.name):
        pass
    return path


def _component(value: str, what: str, error: type[Exception]) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise error(
            f"{what} {value!r} cannot name a state directory: use 1 to 128 letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    return value


def _problem(path: Path, info: os.stat_result) -> str | None:
    if stat.S_ISLNK(info.st_mode):
        return (
            "is a symbolic link, which another user could point anywhere; remove it "
            "(fedplug recreates it as a private directory)"
        )
    if not stat.S_ISDIR(info.st_mode):
        return "is not a directory; remove it (fedplug recreates it as a private directory)"
    euid = os.geteuid()
    if info.st_uid != euid:
        return (
            f"is owned by uid {info.st_uid}, not by this user (uid {euid}): another user may "
            "have created it to read the pod's updates; remove it (fedplug recreates it) or "
            "set FEDPLUG_STATE_DIR to a directory of your own"
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        return (
            f"has mode {mode:o}, open to other users, who may have read it or planted files "
            f"in it; remove it (fedplug recreates it), or check its contents and run "
            f"`chmod 700 {path}`"
        )
    return None


def _refuse(path: Path, problem: str) -> PodConfigError:
    return PodConfigError(f"fedplug state directory {path} {problem}")


def _open_dir(path: Path, parent: int | None, create: bool) -> int:
    """A descriptor of the checked private directory ``path``.

    With ``parent``, ``path.name`` is looked up in that open directory (whose path is
    ``path.parent``), so nothing above it can be swapped between the check and the use.
    Raises FileNotFoundError if it is missing and ``create`` is false.
    """
    name = path.name if parent is not None else str(path)
    created = False
    if create:
        if parent is None:
            _make_parents(path.parent)
        try:
            os.mkdir(name, 0o700, dir_fd=parent)
            created = True
        except FileExistsError:
            pass
        except OSError as exc:
            raise PodConfigError(
                f"cannot create fedplug state directory {path}: {exc.strerror}; set "
                "FEDPLUG_STATE_DIR to a directory this user can write"
            ) from exc
    info = os.stat(name, dir_fd=parent, follow_symlinks=False)
    problem = _problem(path, info)
    if problem:
        raise _refuse(path, problem)
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
            raise _refuse(path, "was replaced while fedplug opened it; remove it") from exc
        raise
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
            raise _refuse(path, "was replaced while fedplug opened it; remove it")
        if created:
            os.fchmod(fd, 0o700)  # exactly 0700, whatever the umask
    except BaseException:
        os.close(fd)
        raise
    return fd


def _make_parents(path: Path) -> None:
    missing: list[Path] = []
    while not os.path.lexists(path) and path.parent != path:
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            continue
        except OSError as exc:
            raise PodConfigError(
                f"cannot create directory {directory}: {exc.strerror}; set FEDPLUG_STATE_DIR "
                "to a directory this user can write"
            ) from exc


@contextmanager
def _dirs(root: Path, *names: str, create: bool = True) -> Iterator[list[int] | None]:
    """Descriptors of ``root`` and ``root/names[0]/...``, each checked, opened in turn.

    Yields None if one is missing and ``create`` is false.
    """
    fds: list[int] = []
    try:
        path = root
        try:
            fds.append(_open_dir(root, None, create))
            for name in names:
                path = path / name
                fds.append(_open_dir(path, fds[-1], create))
        except FileNotFoundError:
            if create:
                raise
            missing = True
        else:
            missing = False
        yield None if missing else fds
    finally:
        for fd in reversed(fds):
            os.close(fd)


def _run_names(pod: str, run: str) -> tuple[str, str]:
    return (
        _component(pod, "pod name", PodConfigError),
        _component(run, "run id", SecureAggregationError),
    )


# -- files ------------------------------------------------------------------------------------


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _read_exactly(fd: int, data: memoryview, where: Path) -> None:
    while data:
        n = os.readv(fd, [data])
        if n == 0:
            raise PodConfigError(f"fedplug update file {where} is truncated; it was deleted")
        data = data[n:]


def remember(pod: str, run: str, seq: int, vector: np.ndarray, keys: list[str]) -> None:
    """Keep exchange ``seq``'s encoded vector; the run's other exchanges are deleted.

    The vector is written once, straight from ``vector``'s memory; the caller may overwrite
    its array when this returns.
    """
    pod, run = _run_names(pod, run)
    seq = int(seq)
    words = np.ascontiguousarray(vector, dtype="<u8").reshape(-1)  # no copy for uint64
    meta = json.dumps({"seq": seq, "length": int(words.size), "keys": list(keys)}).encode()
    meta += b" " * (-len(meta) % 8)  # keeps the vector 8-byte aligned in the file
    header = _MAGIC + len(meta).to_bytes(8, "little") + meta
    root = state_root()
    with _dirs(root, pod, run) as fds:
        assert fds is not None
        directory = fds[-1]
        _drop_others(directory, seq)
        fd, name = _new_file(directory, seq, root / pod / run)
        try:
            try:
                _write_all(fd, memoryview(header))
                _write_all(fd, words.data.cast("B"))
            finally:
                os.close(fd)
            # The directory is private, and a rename replaces whatever has the final name
            # (a link included) without following it.
            os.replace(name, f"{seq}.update", src_dir_fd=directory, dst_dir_fd=directory)
        except BaseException:
            _unlink(directory, name)
            raise


def _new_file(directory: int, seq: int, where: Path) -> tuple[int, str]:
    for _ in range(3):
        name = f".{seq}.{secrets.token_hex(8)}.partial"
        try:
            fd = os.open(name, _NEW_FILE, 0o600, dir_fd=directory)
        except FileExistsError:
            continue  # something is there already: never write through it, take a fresh name
        os.fchmod(fd, 0o600)  # exactly 0600, whatever the umask
        return fd, name
    raise PodConfigError(
        f"cannot create a fresh file in fedplug state directory {where}: every name tried was "
        "taken; remove the directory (fedplug recreates it)"
    )


def _drop_others(directory: int, seq: int) -> None:
    for name in os.listdir(directory):
        match = _FINAL.fullmatch(name) or _PARTIAL.fullmatch(name)
        if match and int(match.group(1)) != seq:
            _unlink(directory, name)


def _unlink(directory: int, name: str) -> None:
    with suppress(FileNotFoundError):
        os.unlink(name, dir_fd=directory)


def recall(pod: str, run: str, seq: int) -> tuple[np.ndarray, list[str]] | None:
    """The vector and metric keys kept for exchange ``seq``; the file is deleted.

    None if this pod holds none for it (never stored, already recalled, or a later exchange
    replaced it). A file fedplug would not have written (a link, another user's file, a
    malformed one) is not read: it is deleted and :class:`PodConfigError` raised.
    """
    pod, run = _run_names(pod, run)
    seq = int(seq)
    root = state_root()
    where = root / pod / run / f"{seq}.update"
    with _dirs(root, pod, run, create=False) as fds:
        if fds is None:
            return None
        directory = fds[-1]
        try:
            try:
                fd = os.open(where.name, _READ_FILE, dir_fd=directory)
            except FileNotFoundError:
                return None
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise PodConfigError(
                        f"fedplug update file {where} is a symbolic link, which fedplug never "
                        "writes; it was not followed, and was deleted"
                    ) from exc
                raise
            try:
                words, keys = _read(fd, seq, where)
            finally:
                os.close(fd)
        finally:
            _unlink(directory, where.name)  # a round is redone at most once
    return words.astype(np.uint64, copy=False), keys


def _read(fd: int, seq: int, where: Path) -> tuple[np.ndarray, list[str]]:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        raise PodConfigError(
            f"fedplug update file {where} is not a regular file of this user; it was not "
            "read, and was deleted"
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise PodConfigError(
            f"fedplug update file {where} is open to other users; it was not read, and was deleted"
        )
    fixed = bytearray(16)
    _read_exactly(fd, memoryview(fixed), where)
    size = int.from_bytes(fixed[8:], "little")
    if bytes(fixed[:8]) != _MAGIC or size % 8 or size > _MAX_META:
        raise PodConfigError(f"{where} is not a fedplug update file; it was deleted")
    raw = bytearray(size)
    _read_exactly(fd, memoryview(raw), where)
    try:
        meta = json.loads(raw)
        length, keys = int(meta["length"]), [str(key) for key in meta["keys"]]
        matches = int(meta["seq"]) == seq and info.st_size == 16 + size + 8 * length
    except (ValueError, KeyError, TypeError):
        matches = False
    if not matches:
        raise PodConfigError(f"fedplug update file {where} does not match its header; deleted")
    words = np.empty(length, dtype="<u8")
    _read_exactly(fd, words.data.cast("B"), where)
    return words, keys


# -- cleanup ----------------------------------------------------------------------------------


def forget_run(pod: str, run: str) -> None:
    """Delete everything kept for ``run`` of ``pod`` (nothing happens if there is none)."""
    pod, run = _run_names(pod, run)
    with _dirs(state_root(), pod, create=False) as fds:
        if fds is not None:
            _remove(fds[-1], run)


def forget_stale(pod: str, max_age: float) -> None:
    """Delete the pod's runs in which nothing changed for more than ``max_age`` seconds."""
    pod = _component(pod, "pod name", PodConfigError)
    cutoff = time.time() - max_age
    with _dirs(state_root(), pod, create=False) as fds:
        if fds is None:
            return
        for name in os.listdir(fds[-1]):
            if _newest(fds[-1], name) < cutoff:
                _remove(fds[-1], name)


def forget_pod(pod: str) -> None:
    """Delete all of ``pod``'s state (nothing happens if there is none)."""
    pod = _component(pod, "pod name", PodConfigError)
    with _dirs(state_root(), create=False) as fds:
        if fds is not None:
            _remove(fds[-1], pod)


def _newest(parent: int, name: str) -> float:
    """The latest modification time of ``name`` and, for a directory, of what it holds."""
    try:
        info = os.stat(name, dir_fd=parent, follow_symlinks=False)
        newest = info.st_mtime
        if stat.S_ISDIR(info.st_mode):
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
            try:
                for entry in os.listdir(fd):
                    newest = max(newest, _newest(fd, entry))
            finally:
                os.close(fd)
    except FileNotFoundError:
        return float("inf")  # gone already, or being replaced: not stale
    return newest


def _remove(parent: int, name: str) -> None:
    """Delete ``name`` in ``parent`` and, if a directory, what it holds; links are unlinked,
    never followed."""
    try:
        info = os.stat(name, dir_fd=parent, follow_symlinks=False)
        if not stat.S_ISDIR(info.st_mode):
            os.unlink(name, dir_fd=parent)
            return
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        try:
            for entry in os.listdir(fd):
                _remove(fd, entry)
        finally:
            os.close(fd)
        os.rmdir(name, dir_fd=parent)
    except FileNotFoundError:
        pass
