"""A pod's own executor: only the fedplug installed on the pod's machine ever runs there.

Flower's SuperNode (subprocess isolation) starts ``flower-superexec``, which starts
``flwr-clientapp`` per message, which installs the app bundle (FAB) that came with the
run and imports the ClientApp it names: anyone who reaches the SuperLink could run code
on the pod. ``fedplug pod start`` therefore runs ``flower-supernode --isolation process``
and, in its own process, this executor in place of Flower's: it acquires each task from
the SuperNode's Runtime API (signed with a shared secret only this process and the
SuperNode know), checks the task's bundle without extracting or importing anything, and
answers the message with the fedplug ClientApp built here, once, so the pod's validated
data stays loaded between messages. Flower internals are in :mod:`._flower_internals`.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import io
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from flwr.app import Message, RecordDict

from . import _wire as wire
from ._flower_internals import (
    CLIENT_APP_TASK,
    COMPLETED,
    FAILED,
    AcquiredTask,
    RuntimeCallError,
    TaskChannel,
    TaskInput,
    TaskSource,
    is_unauthorized,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

logger = logging.getLogger("fedplug.pod")

#: The only components a bundle may name: fedplug's own app (which a pod never imports
#: from the bundle anyway; naming anything else means the modeller expects other code).
FEDPLUG_CLIENTAPP = "fedplug._flower.app:client_app"
FEDPLUG_SERVERAPP = "fedplug._flower.app:server_app"
#: The refusal reason a modeller's ServerApp sees.
BUNDLE_REFUSED = "bundle-refused"
#: Larger than any real pyproject.toml; read no more from an untrusted archive.
MAX_PYPROJECT_BYTES = 1 << 20
#: Seconds between AcquireTask polls when idle (Flower's SuperExec variable overrides it).
DEFAULT_POLL_INTERVAL = 0.5
#: While a run is active (a task ended under ACTIVE_WINDOW s ago) the pod polls faster: the
#: run's next message waits ~0.05 s instead of up to 0.5 s, and an idle pod stays cheap
#: (polling every 0.1 s costs ~6% of a core, every 0.5 s ~1%).
ACTIVE_POLL_INTERVAL, ACTIVE_WINDOW = 0.1, 30.0
POLL_INTERVAL_ENV = "FLWR_SUPEREXEC_TASK_POLL_INTERVAL"
#: Seconds the SuperNode may take to serve its Runtime API after it starts.
STARTUP_TIMEOUT = 120.0
#: Seconds the SuperNode gets to stop after SIGTERM before SIGKILL.
CHILD_STOP_GRACE = 5.0
#: Seconds between two warnings that the Runtime API does not answer.
WARN_EVERY = 30.0


# -- who listens on the Runtime API port -------------------------------------------------
def descendants(pid: int) -> list[int]:
    """The process ids below ``pid`` (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def listener_owner(port: int, pids: Sequence[int]) -> bool | None:
    """Whether the socket listening on 127.0.0.1:``port`` belongs to one of ``pids``.

    None when nothing listens there yet (or /proc cannot tell, off Linux). A local user
    who binds the port first could otherwise pose as the pod's SuperNode.
    """
    tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
    if not tables[0].exists():
        return True  # no /proc: nothing to check with (the secret still guards the API)
    # Any address counts: a wildcard (0.0.0.0, ::) listener also takes 127.0.0.1's calls.
    suffix = f":{port:04X}"
    inodes = set()
    for table in tables:
        lines = table.read_text().splitlines()[1:] if table.exists() else []
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[1].endswith(suffix) and fields[3] == "0A":  # LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    ours = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    ours.add(os.readlink(fd))
    # Every listener on the port must be the SuperNode's: one other is one too many.
    return inodes <= ours


# -- the bundle ----------------------------------------------------------------------------
def _allowed_entry(name: str) -> bool:
    """pyproject.toml, ``.info/*`` (Flower's metadata) and YAML under ``conf/``."""
    if name == "pyproject.toml":
        return True
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or any(p in (".", "..") for p in parts):
        return False
    if parts[0] == ".info" and len(parts) > 1:
        return True
    if parts[0] == "conf" and len(parts) > 1:
        return name.endswith(("/", ".yaml", ".yml"))  # a directory entry, or a Hydra config
    return False


def inspect_bundle(fab: bytes) -> str | None:
    """Why a pod refuses this app bundle, or None if it is fedplug's app.

    Reads only the archive's directory and its pyproject.toml text: nothing is extracted,
    installed or imported.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(fab)) as archive:
            names = [info.filename for info in archive.infolist()]
            if len(set(names)) != len(names):
                return "the app bundle names a file twice"
            others = sorted(n for n in names if not _allowed_entry(n))
            if others:
                shown = ", ".join(repr(n) for n in others[:10])
                more = f" and {len(others) - 10} more" if len(others) > 10 else ""
                return (
                    "the app bundle carries files other than pyproject.toml and conf/*.yaml "
                    f"(a pod never runs code from a bundle): {shown}{more}"
                )
            if "pyproject.toml" not in names:
                return "the app bundle has no pyproject.toml"
            if archive.getinfo("pyproject.toml").file_size > MAX_PYPROJECT_BYTES:
                return "the app bundle's pyproject.toml is too large"
            text = archive.read("pyproject.toml").decode("utf-8")
    except Exception:  # noqa: BLE001 - any failure to read untrusted input is a refusal
        return "the app bundle is not a readable zip archive"
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return "the app bundle's pyproject.toml is not valid TOML"
    components = config.get("tool", {}).get("flwr", {}).get("app", {}).get("components", {})
    if not isinstance(components, dict):
        return "the app bundle's [tool.flwr.app.components] is not a table"
    for key, allowed in (("clientapp", FEDPLUG_CLIENTAPP), ("serverapp", FEDPLUG_SERVERAPP)):
        named = components.get(key)
        if named != allowed:
            return f"the app bundle names the {key} {named!r}, not fedplug's {allowed!r}"
    return None


def refusal_text(pod: str, run_id: int, why: str) -> str:
    """What the modeller reads: the pod, the run, why, and what to do instead."""
    return (
        f"pod {pod!r} refuses run {run_id}: {why}. A pod runs only the fedplug installed on "
        "its machine, never code from an app bundle: run fedplug's own app "
        "(`flwr run <fedplug checkout> <connection>`), whose bundle holds only pyproject.toml "
        "and conf/*.yaml."
    )


# -- the executor --------------------------------------------------------------------------
class Stopping(BaseException):
    """Raised by SIGTERM/SIGINT in the middle of a task: the pod abandons it and stops."""


def poll_interval() -> float:
    raw = os.environ.get(POLL_INTERVAL_ENV)
    try:
        value = float(raw) if raw else DEFAULT_POLL_INTERVAL
    except ValueError:
        value = DEFAULT_POLL_INTERVAL
    return min(max(value, 0.01), 60.0)


class PodExecutor:
    """Acquires the SuperNode's tasks one at a time and answers them with fedplug's app."""

    def __init__(self, pod_file: Path, address: str, secret: bytes, port: int = 0) -> None:
        from ._pod_app import build_client_app
        from ._pod_runtime import load_runtime

        # Load and validate the pod's data now; every message reuses it.
        self.name = load_runtime(pod_file).name
        self.app = build_client_app(pod_file=pod_file)
        self.address = address
        self.port = port or int(address.rsplit(":", 1)[1])
        self.source = TaskSource(address, secret)
        self.interval = poll_interval()
        self.fixed_interval = bool(os.environ.get(POLL_INTERVAL_ENV))  # the owner's choice
        self.last_task = float("-inf")  # monotonic time the last task ended
        self.busy = False
        self._verdicts: dict[str, str | None] = {}
        # The pod's state between messages (its secure-aggregation keys and record of
        # exchanges), per Flower run, kept in this process only: whatever state the
        # Runtime API hands over is ignored, and none is handed back, so nothing on the
        # other side of that API (the SuperNode, or a process posing as it) can read,
        # reset or roll it back.
        self._states: dict[int, RecordDict] = {}

    def close(self) -> None:
        self.source.close()

    def serve(self, stop: threading.Event, supernode: subprocess.Popen) -> int:
        """Serve until ``stop`` is set (0) or the SuperNode exits or refuses us (1)."""
        started, ready, warned = time.monotonic(), False, 0.0
        verified = False
        while not stop.is_set():
            if supernode.poll() is not None:
                logger.error(
                    "fedplug pod %r stops: its SuperNode (flower-supernode, pid %d) exited "
                    "with status %s; see its log above (a SuperLink with SuperNode "
                    "authentication refuses a pod whose --auth-key is missing or not "
                    "registered with `flwr supernode register`).",
                    self.name,
                    supernode.pid,
                    supernode.returncode,
                )
                return 1
            if not verified:
                owner = listener_owner(self.port, [supernode.pid, *descendants(supernode.pid)])
                if owner is False:
                    logger.error(
                        "fedplug pod %r stops: another process listens on 127.0.0.1:%d, where "
                        "its SuperNode's Runtime API should be; it could pose as the SuperNode. "
                        "Start the pod again (it picks a free port) or choose another --port.",
                        self.name,
                        self.port,
                    )
                    return 1
                if owner is None:
                    if time.monotonic() - started > STARTUP_TIMEOUT:
                        logger.error(
                            "fedplug pod %r stops: its SuperNode did not listen on "
                            "127.0.0.1:%d within %.0f s.",
                            self.name,
                            self.port,
                            STARTUP_TIMEOUT,
                        )
                        return 1
                    stop.wait(self.interval)  # the SuperNode is not listening yet
                    continue
                verified = True
            try:
                acquired = self.source.acquire()
            except RuntimeCallError as exc:
                if supernode.poll() is not None:
                    continue  # said above, at the top of the loop
                if is_unauthorized(exc):
                    logger.error(
                        "fedplug pod %r: the SuperNode refused its secret: %s", self.name, exc
                    )
                    return 1
                now = time.monotonic()
                if not ready and now - started > STARTUP_TIMEOUT:
                    logger.error(
                        "fedplug pod %r: the SuperNode's Runtime API on %s did not answer "
                        "within %.0f s: %s",
                        self.name,
                        self.address,
                        STARTUP_TIMEOUT,
                        exc,
                    )
                    return 1
                if ready and now - warned > WARN_EVERY:
                    warned = now
                    logger.warning("the SuperNode's Runtime API did not answer (%s); retrying", exc)
                stop.wait(self.interval)
                continue
            if not ready:
                ready = True
                logger.info(
                    "fedplug pod %r serving: tasks from its SuperNode (Runtime API %s) run "
                    "fedplug's installed ClientApp only; app bundles are checked, never run",
                    self.name,
                    self.address,
                )
            if acquired is None:
                stop.wait(self.idle_wait())
            else:
                self.run_task(acquired)  # then poll again at once: more may be queued
        return 0

    def idle_wait(self) -> float:
        """Seconds to wait after a poll that found no task (see ACTIVE_POLL_INTERVAL)."""
        active = time.monotonic() - self.last_task < ACTIVE_WINDOW
        return ACTIVE_POLL_INTERVAL if active and not self.fixed_interval else self.interval

    def run_task(self, acquired: AcquiredTask) -> None:
        """Do what flwr-clientapp does for one task, without installing the bundle."""
        channel = TaskChannel(self.address, acquired.token)
        task: TaskInput | None = None
        sub_status, details = FAILED, "the pod stopped before it finished the task"
        self.busy = True
        try:
            if acquired.task_type != CLIENT_APP_TASK:  # never asked for; never run
                details = f"a pod runs no {acquired.task_type!r} task"
                return
            channel.start_heartbeat()
            task = channel.pull_input()
            reply, sub_status, details = self.answer(task)
            channel.push_reply(reply, task.context)
        except Exception as exc:  # noqa: BLE001 - one failed task never stops the pod
            logger.error(
                "fedplug pod %r: task %d of run %d failed: %s: %s",
                self.name,
                acquired.task_id,
                acquired.run_id,
                type(exc).__name__,
                exc,
            )
            sub_status = FAILED
            details = f"pod {self.name!r} could not complete the task ({type(exc).__name__})"
        finally:
            self.busy = False
            self.last_task = time.monotonic()
            try:
                channel.push_output(task.context if task else None, sub_status, details)
            except RuntimeCallError as exc:
                logger.warning("could not end task %d: %s", acquired.task_id, exc)
            finally:
                channel.close()

    def _state_for(self, run_id: int) -> RecordDict:
        # Never evicted: dropping a run's record would let its server set up keys again.
        # A run's state is a few kilobytes, and only runs of fedplug's own app get one.
        return self._states.setdefault(run_id, RecordDict())

    def verdict(self, task: TaskInput) -> str | None:
        """The bundle check, once per bundle (by its SHA-256)."""
        key = task.fab_hash
        if key not in self._verdicts:
            self._verdicts[key] = inspect_bundle(task.fab)
            if self._verdicts[key] is None:
                logger.info("run %d: app bundle %s is fedplug's app", task.run_id, key[:12])
        return self._verdicts[key]

    def answer(self, task: TaskInput) -> tuple[Message, str, str]:
        """The reply, the task's sub-status and its details.

        The app sees this process's own state for the run, never the Runtime API's, and
        the context handed back holds none of it: the pod's secrets never leave it.
        """
        context = task.context
        try:
            why = self.verdict(task)
            if why is not None:
                return self._refuse(task, why)
            task.context = dataclasses.replace(context, state=self._state_for(task.run_id))
            return self._answer(task)
        finally:
            task.context = dataclasses.replace(context, state=RecordDict())

    def _refuse(self, task: TaskInput, why: str) -> tuple[Message, str, str]:
        text = refusal_text(self.name, task.run_id, why)
        logger.warning(
            "fedplug pod %r refuses run %d (%s): %s", self.name, task.run_id, BUNDLE_REFUSED, why
        )
        reply = wire.refusal_reply(task.message, BUNDLE_REFUSED, text, pods=[self.name])
        return reply, FAILED, text

    def _answer(self, task: TaskInput) -> tuple[Message, str, str]:
        try:
            return self.app(task.message, task.context), COMPLETED, ""
        except Exception as exc:  # noqa: BLE001 - the app answers errors itself; belt and braces
            logger.exception("fedplug pod %r failed on run %d", self.name, task.run_id)
            text = f"pod {self.name!r} failed: {type(exc).__name__}"
            return wire.error_reply(task.message, wire.POD_FAILURE, text), FAILED, text


# -- the process: secret, SuperNode child, signals ---------------------------------------
@contextlib.contextmanager
def private_secret() -> Iterator[tuple[Path, bytes]]:
    """32 random bytes in a new 0600 file in a new 0700 directory, removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="fedplug-pod-"))  # mode 0700
    try:
        path = directory / "superexec-secret"
        secret = secrets.token_bytes(32)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(path, flags, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secret)
        yield path, secret
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn giving the SuperNode SIGKILL when this process dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _stop_child(child: subprocess.Popen) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=CHILD_STOP_GRACE)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=CHILD_STOP_GRACE)


def _log_to_stderr() -> None:
    root = logging.getLogger("fedplug")
    if not any(getattr(h, "_fedplug_pod", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)-8s %(name)s: %(message)s"))
        handler._fedplug_pod = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(logging.INFO)


def serve_pod(
    pod_file: Path,
    command_for: Callable[[Path], Sequence[str]],
    port: int,
    env: Mapping[str, str],
    announce: Callable[[Sequence[str]], None] | None = None,
) -> int:
    """Run the SuperNode (``command_for(secret_file)``) as a child and serve its tasks.

    Returns 0 when stopped by SIGTERM/SIGINT, 1 when the SuperNode exits on its own.
    """
    _log_to_stderr()
    stop = threading.Event()
    with private_secret() as (secret_file, secret):
        command = list(command_for(secret_file))
        executor = PodExecutor(pod_file, f"127.0.0.1:{port}", secret, port)

        def on_signal(signum: int, frame: FrameType | None) -> None:
            first = not stop.is_set()
            stop.set()
            if first and executor.busy:
                raise Stopping

        previous: dict[int, Any] = {
            sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        child: subprocess.Popen | None = None
        try:
            if announce is not None:
                announce(command)
            sys.stdout.flush()
            sys.stderr.flush()
            child = subprocess.Popen(
                command, env=dict(env), stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent()
            )
            return executor.serve(stop, child)
        except Stopping:
            return 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if child is not None:
                _stop_child(child)
            executor.close()
