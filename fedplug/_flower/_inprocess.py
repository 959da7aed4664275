"""The in-process simulation backend: every pod's ClientApp in this process, no Ray.

The ServerApp's workflow (``run_plan``) runs in the caller's thread over an
``InProcessGrid``; the pods answer one message at a time, in the order the server sent
them. One at a time because local training seeds torch's global RNG (dropout), which
concurrent pods would share: run one after another, each pod draws exactly the numbers
it draws in its own Ray actor, so both backends give the same model. The server waits
for replies with the round's timeout, as on a SuperLink, so a pod that hangs costs the
round's timeout and counts as missing; it does not stall the run.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from flwr.app import Error, Message
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode

from fedplug._errors import ConfigError
from fedplug.data import Pod

from ._flower_internals import set_message_id
from ._local_grid import DeliveryFilter, LocalGrid
from ._pod_app import build_client_app
from ._pod_runtime import PodRuntime, load_runtime
from ._server import RunPlan, RunResult, run_plan

if TYPE_CHECKING:
    from collections.abc import Iterator

logger = logging.getLogger("fedplug.server")

#: The suffix of the stand-in path that names an in-memory pod in its node config (the
#: ClientApp names a pod by its path's stem until the pod is loaded).
MEMORY_SUFFIX = ".in-memory-pod"


class InProcessGrid(LocalGrid):
    """A Grid over ClientApps in this process that answer one message at a time.

    Unlike :class:`LocalGrid` (which answers inside ``push_messages``), the server's
    waits here honour their timeouts, as on a SuperLink: a reply that is not ready in
    time is missing, a message whose wait has ended is not computed any more, and a late
    reply is dropped. A dispatcher thread runs the messages in the order they were
    pushed, each on its own thread, and waits for it to finish, or for the server to stop
    waiting for it: a pod that hangs is then left to itself (its later messages wait
    until it is free, as on a SuperNode) and the other pods go on. Replies are handed
    out once and not kept.
    """

    def __init__(
        self,
        apps: Mapping[int, ClientApp],
        node_configs: Mapping[int, dict] | None = None,
        *,
        default_timeout: float,
        deliver: DeliveryFilter | None = None,
    ) -> None:
        super().__init__(apps, node_configs=node_configs, deliver=deliver)
        #: The wait of a ``send_and_receive`` that gives no timeout: nothing waits forever.
        self.default_timeout = float(default_timeout)
        self._cond = threading.Condition()
        self._queue: deque[tuple[int, Message]] = deque()  # pushed, not started
        self._running: dict[str, int] = {}  # message id -> node, while its handler runs
        self._ready: dict[str, Message] = {}  # message id -> its reply, until pulled
        self._abandoned: set[str] = set()  # messages the server no longer waits for
        # When the server stops waiting for each message: a pod still busy at half of the
        # time left stops holding up the pods after it (they run; it goes on alone).
        self._deadlines: dict[str, float] = {}
        self._order: dict[str, int] = {}  # message id -> push order, to order replies
        self._closed = False
        # Daemons: a pod stuck in its handler must not keep the interpreter alive.
        self._dispatcher = threading.Thread(target=self._dispatch, name="fedplug-pods", daemon=True)
        self._dispatcher.start()

    # -- the pods' side -------------------------------------------------------------------
    def _next(self) -> tuple[int, Message] | None:
        """The first pushed message whose node is free (abandoned ones are dropped)."""
        busy = set(self._running.values())
        for item in list(self._queue):
            node_id, message = item
            if message.metadata.message_id in self._abandoned:
                self._queue.remove(item)
                self._abandoned.discard(message.metadata.message_id)
            elif node_id not in busy:
                self._queue.remove(item)
                return item
        return None

    def _dispatch(self) -> None:
        with self._cond:
            while not self._closed:
                item = self._next()
                if item is None:
                    self._cond.wait()
                    continue
                node_id, message = item
                message_id = message.metadata.message_id
                self._running[message_id] = node_id
                threading.Thread(
                    target=self._handle, args=(node_id, message), name="fedplug-pod", daemon=True
                ).start()
                # One pod at a time, so runs are deterministic (pods share torch's global
                # RNG); the wait ends early when the server gives up on the pod, or when
                # the pod has used half the time left, so a hung pod delays the others
                # but never makes them miss the round.
                started = time.monotonic()
                deadline = self._deadlines.pop(message_id, started + self.default_timeout)
                release = started + max(0.0, deadline - started) / 2
                while message_id in self._running and message_id not in self._abandoned:
                    left = release - time.monotonic()
                    if left <= 0:
                        logger.warning(
                            "node %s is still busy after %.1fs; the next pods start beside it",
                            node_id,
                            time.monotonic() - started,
                        )
                        break
                    self._cond.wait(left)

    def _handle(self, node_id: int, message: Message) -> None:
        reply = self._answer_safely(node_id, message)
        message_id = message.metadata.message_id
        with self._cond:
            del self._running[message_id]
            if message_id in self._abandoned:
                self._abandoned.discard(message_id)  # too late: nobody will pull it
            else:
                self._ready[message_id] = reply
            self._cond.notify_all()

    def _answer_safely(self, node_id: int, message: Message) -> Message:
        """The pod's reply; an exception escaping the ClientApp becomes an error reply.

        A pod's handlers answer every failure themselves; this catches what Flower's
        ClientApp machinery itself raises, and answers as Flower's simulation does.
        """
        try:
            return self._answer(node_id, message)
        except Exception as exc:  # noqa: BLE001 - a failing message must not end the run
            logger.warning("the ClientApp of node %s raised %s: %s", node_id, type(exc), exc)
            logger.debug("%s", traceback.format_exc())
            reply = Message(
                Error(
                    code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION,
                    reason=f"{type(exc)}:<'{exc}'>",
                ),
                reply_to=message,
            )
            set_message_id(reply, uuid.uuid4().hex)
            return reply

    # -- the server's side ----------------------------------------------------------------
    def push_messages(
        self, messages: Iterable[Message], timeout: float | None = None
    ) -> Iterable[str]:
        ids = []
        deadline = time.monotonic() + (self.default_timeout if timeout is None else timeout)
        with self._cond:
            for message in messages:
                set_message_id(message, uuid.uuid4().hex)
                ids.append(message.metadata.message_id)
                self._deadlines[message.metadata.message_id] = deadline
                self._order[message.metadata.message_id] = len(self._order)
                node_id = message.metadata.dst_node_id
                if node_id not in self._apps:
                    continue  # no such node: its reply stays missing, as on a SuperLink
                if self.deliver is not None and not self.deliver(node_id, message):
                    continue  # the node is silent: the caller sees a missing reply
                self._queue.append((node_id, message))
            self._cond.notify_all()
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        with self._cond:
            return [self._ready.pop(i) for i in message_ids if i in self._ready]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        wait = self.default_timeout if timeout is None else float(timeout)
        pending = list(self.push_messages(list(messages), wait))
        deadline = time.monotonic() + wait
        replies: list[Message] = []
        with self._cond:
            while True:
                replies += [self._ready.pop(i) for i in pending if i in self._ready]
                answered = {r.metadata.reply_to_message_id for r in replies}
                pending = [i for i in pending if i not in answered]
                remaining = deadline - time.monotonic()
                if not pending or remaining <= 0:
                    break
                self._cond.wait(remaining)
            # What did not come in time is not computed any more (or, if its pod is on it
            # now, its late reply is dropped), as a SuperLink drops expired messages.
            queued = {m.metadata.message_id for _, m in self._queue}
            self._abandoned.update(i for i in pending if i in queued or i in self._running)
            self._cond.notify_all()
        # In the order the messages were sent, whatever order the pods finished in.
        replies.sort(key=lambda r: self._order.get(r.metadata.reply_to_message_id, 0))
        return replies

    def close(self) -> None:
        """Stop dispatching; a handler still running finishes on its own (a daemon)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class PodRuntimes:
    """The pods of one in-process run: pod files (loaded as a SuperNode would, cached per
    process) and pods given as objects (loaded and validated once per run, held here)."""

    def __init__(self, pods: Sequence[Path | Pod]) -> None:
        self._memory: dict[str, Pod] = {}
        self._loaded: dict[str, PodRuntime] = {}
        self._lock = threading.Lock()
        self.node_paths: list[str] = []
        for pod in pods:
            if isinstance(pod, Pod):
                key = str(Path("memory") / f"{pod.name}{MEMORY_SUFFIX}")
                self._memory[key] = pod
                self.node_paths.append(key)
            else:
                self.node_paths.append(str(Path(pod).resolve()))

    def load(self, path: Path) -> PodRuntime:
        pod = self._memory.get(str(path))
        if pod is None:
            return load_runtime(path)
        with self._lock:
            if str(path) not in self._loaded:
                self._loaded[str(path)] = PodRuntime(pod=pod, data=pod.load(), trainers={})
            return self._loaded[str(path)]


def torch_threads() -> int:
    """Torch threads for the pods: ``$FEDPLUG_TORCH_THREADS``, else 1.

    One, as each pod gets in its Ray actor (one CPU per pod): the same arithmetic, hence
    the same model, on both backends. More threads do not pay for these small models:
    two took 5x longer than one on a busy two-core machine (threads spin for cores).
    """
    text = os.environ.get("FEDPLUG_TORCH_THREADS", "1")
    if not text.strip().isdigit() or int(text) < 1:
        raise ConfigError(
            f"FEDPLUG_TORCH_THREADS={text!r} is invalid: give the number of torch threads "
            "the pods use, a whole number >= 1 (or unset it: 1)."
        )
    return int(text)


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch threads, then give the caller back its own setting."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_inprocess(plan: RunPlan, pods: Sequence[Path | Pod]) -> RunResult:
    """Run ``plan`` with one in-process node per pod (a pod file or a ``Pod`` object)."""
    runtimes = PodRuntimes(pods)
    app = build_client_app(load=runtimes.load)
    nodes = {i + 1: app for i in range(len(pods))}
    configs = {i + 1: {"pod": path} for i, path in enumerate(runtimes.node_paths)}
    with _torch_threads(torch_threads()):
        # Each pod reads and validates its data here first, as it would on its first
        # message. The modeller of a local simulation owns the data: a pod that cannot
        # load raises its own error (every violation, by column), where a SuperNode
        # would answer with a fixed reason and keep the details in its owner's log.
        for path in runtimes.node_paths:
            runtimes.load(Path(path))
        grid = InProcessGrid(nodes, node_configs=configs, default_timeout=plan.round_timeout)
        try:
            return run_plan(grid, plan)
        finally:
            grid.close()
