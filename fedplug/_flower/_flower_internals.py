"""Every Flower internal fedplug uses, in one place (written against flwr 1.42).

fedplug's own code uses Flower's public API (``flwr.app``, ``flwr.clientapp``,
``flwr.serverapp``, ``flwr.simulation``) and, where that is not enough, the small functions
here; pyproject.toml pins Flower to the range these were checked against. Each use says why
and where it comes from.

* Messages and tasks (:func:`set_message_id`, :func:`ensure_task_identity`), the app
  bundle's project directory (:func:`fab_project_dir`) and the ``.npy`` layout of an
  ``Array``'s bytes (:func:`npy_array`, :func:`npy_words`).
* The pod executor (:mod:`fedplug._flower._pod_executor`) replaces Flower's
  ``flower-superexec`` and ``flwr-clientapp`` for a pod: it talks to the SuperNode's Runtime
  API itself, so it can run the fedplug ClientApp installed on the pod's machine instead of
  the one an app bundle names. Flower has no public API for that. On a Flower upgrade,
  check this part against ``flwr/supernode/runtime/run_clientapp.py`` and
  ``flwr/supercore/superexec/run_superexec.py``.

A pod's ClientApp imports this module too, so the imports that take long (the HTTP
interceptors and the heartbeat, about 0.3 s) happen in the executor's functions that use them.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
from flwr.app import Array, Context, Message

# flwr 1.42: a reply travels as its metadata plus an object tree; run_clientapp's
# push_message strips the content first, so this does too.
from flwr.app.message import remove_content_from_message

# flwr 1.42: the sub-status a task ends with (what run_clientapp reports to the SuperNode).
from flwr.common.constant import SubStatus

# flwr 1.42: the Runtime API speaks protobuf; these convert the task's context and reply.
from flwr.common.serde import context_from_proto, context_to_proto, message_to_proto

# flwr 1.42: the Runtime API's request messages (no public API wraps them).
from flwr.proto.node_pb2 import Node  # pylint: disable=E0611
from flwr.proto.runtime_pb2 import (  # pylint: disable=E0611
    AcquireTaskRequest,
    PullAppMessagesRequest,
    PullTaskInputRequest,
    PushAppMessagesRequest,
    PushTaskOutputRequest,
    SendTaskHeartbeatRequest,
)

# flwr 1.42: TaskType.CLIENT_APP is the task a SuperNode creates for each message.
from flwr.supercore.constant import TaskType

# flwr 1.42: how a message's object tree is pulled and pushed, as run_clientapp does it.
from flwr.supercore.inflatable.inflatable_object import (
    get_all_nested_objects,
    get_object_tree,
    no_object_id_recompute,
)
from flwr.supercore.inflatable.inflatable_protobuf_utils import (
    make_confirm_message_received_fn_protobuf,
    make_pull_object_fn_protobuf,
    make_push_object_fn_protobuf,
)
from flwr.supercore.inflatable.inflatable_utils import (
    pull_and_inflate_object_from_tree,
    push_objects,
)

# flwr 1.42: the protobuf-over-HTTP client of the SuperNode's Runtime API.
from flwr.supercore.runtime import RuntimeHttpClient

# flwr 1.42: Flower's Message and logging read the running task's identity from this
# class; run_clientapp sets it per process, the executor per task, LocalGrid once.
from flwr.supercore.task_identity import TaskIdentity

if TYPE_CHECKING:
    from flwr.supercore.heartbeat import HeartbeatSender

logger = logging.getLogger("fedplug.pod")

CLIENT_APP_TASK = str(TaskType.CLIENT_APP)
COMPLETED = SubStatus.COMPLETED
FAILED = SubStatus.FAILED
#: flwr 1.42's run_superexec protects exactly this method with the shared secret.
_SUPEREXEC_AUTH_METHODS = frozenset({"/flwr.proto.Runtime/AcquireTask"})
#: Seconds one Runtime API call may take (the SuperNode is on this machine).
CALL_TIMEOUT = 30.0
#: Seconds one heartbeat call may take (flwr 1.42's HEARTBEAT_CALL_TIMEOUT).
HEARTBEAT_TIMEOUT = 5.0
#: Seconds to pull a message's objects (Flower's default, 2 h, is too long to wait).
PULL_TIMEOUT = 600.0
#: Seconds before the first retry of an object the SuperNode is still receiving (it hands
#: out the task before the message's arrays arrive), and the most between retries.
#: With Flower's 1 s first wait, a pod that polls fast (and so asks before the arrays are
#: in) lost about a second per message.
PULL_FIRST_RETRY, PULL_MAX_RETRY_WAIT = 0.02, 0.5

#: What the executor catches from a Runtime API call: transport errors, HTTP error
#: statuses and undecodable replies (Flower's client raises ValueError for those).
RuntimeCallError = (httpx.HTTPError, ValueError)


# -- messages, tasks, bundles and arrays (used outside the executor) -----------------------
def set_message_id(message: Message, message_id: str) -> None:
    """Give ``message`` its id.

    flwr 1.42: Metadata has no setter for ``message_id`` (the SuperLink assigns it, from
    the message's object id); a pulled message lacks it, and LocalGrid, which plays the
    SuperLink, must assign one. Set it as run_clientapp does.
    """
    message.metadata.__dict__["_message_id"] = message_id


def ensure_task_identity(run_id: int, node_id: int, task_id: int) -> None:
    """Set each part of the running task's identity that is not set yet.

    flwr 1.42: Flower's Message and logging read ``TaskIdentity`` (run_clientapp sets it
    per process) and raise RuntimeError when a part is unset; an in-process Grid has no
    task, so it sets placeholders once.
    """
    for attr, value in (("run_id", run_id), ("node_id", node_id), ("task_id", task_id)):
        try:
            getattr(TaskIdentity, attr)
        except RuntimeError:
            setattr(TaskIdentity, attr, value)


def fab_project_dir(run: Any) -> Path | None:
    """Where the SuperLink installed the app bundle (FAB) of ``run``, or None if unknown.

    flwr 1.42: ``flwr.common.config.get_project_dir`` is how Flower itself finds a FAB's
    files; there is no public API. ``run`` is a Grid's ``run`` (``fab_id``, ``fab_version``,
    ``fab_hash``); imported here lazily, as only the ServerApp needs it.
    """
    from flwr.common.config import get_project_dir

    try:
        return Path(get_project_dir(run.fab_id, run.fab_version, run.fab_hash))
    except (ValueError, AttributeError):
        return None


def npy_array(words: np.ndarray) -> Array:
    """``words`` as a Flower Array in NumPy's .npy format, copied once.

    flwr 1.42: an Array of stype ``numpy.ndarray`` holds its array's ``.npy`` file
    (``Array.from_numpy_ndarray`` writes it with ``np.save``). That goes through a BytesIO,
    three copies of a multi-megabyte upload; the bytes here are the same.
    """
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(words))
    data = b"".join((header.getvalue(), np.ascontiguousarray(words).data.cast("B")))
    return Array(dtype=str(words.dtype), shape=tuple(words.shape), stype="numpy.ndarray", data=data)


def npy_words(array: Array) -> np.ndarray:
    """A read-only view of the uint64 vector an Array holds (its ``.npy`` bytes), no copy.

    flwr 1.42: the layout :func:`npy_array` writes (``Array.numpy()`` would copy).
    Raises ValueError for anything but a vector of little-endian uint64 words.
    """
    stream = io.BytesIO(array.data)
    major, _ = np.lib.format.read_magic(stream)
    read_header = (
        np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    )
    shape, _, dtype = read_header(stream)
    if dtype != np.dtype("<u8") or len(shape) != 1:
        raise ValueError(f"dtype {dtype} and shape {shape}, not a vector of uint64 words")
    return np.frombuffer(array.data, dtype="<u8", count=shape[0], offset=stream.tell())


# -- the pod executor -----------------------------------------------------------------------
def _client(address: str, interceptors: list, timeout: float) -> RuntimeHttpClient:
    # flwr 1.42: RuntimeVersionHttpInterceptor sends the version headers the Runtime API
    # checks (imported here: see the module's docstring).
    from flwr.supercore.interceptors import RuntimeVersionHttpInterceptor

    # No retry invoker: Flower's retries forever and SIGINTs the process on a 401, which
    # would stop a long-lived pod; the executor decides itself what a failure means.
    return RuntimeHttpClient(
        f"http://{address}",
        interceptors=[
            RuntimeVersionHttpInterceptor(component_name="flwr-clientapp"),
            *interceptors,
        ],
        verify=False,  # plain HTTP on 127.0.0.1; the secret and the task token authenticate
        timeout=timeout,
    )


def is_unauthorized(exc: BaseException) -> bool:
    """True for the SuperNode's answer to a wrongly signed AcquireTask (401/403)."""
    return isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code in (401, 403)


@dataclass(frozen=True)
class AcquiredTask:
    """A task the SuperNode handed out, with the token that authorizes working on it."""

    token: str
    task_id: int
    run_id: int
    task_type: str


@dataclass
class TaskInput:
    """What a CLIENT_APP task carries: the message, the node's context and the bundle."""

    message: Message
    context: Context
    run_id: int
    fab: bytes

    @property
    def fab_hash(self) -> str:
        return hashlib.sha256(self.fab).hexdigest()


class TaskSource:
    """The SuperExec side of the Runtime API: acquire the next pending CLIENT_APP task."""

    def __init__(self, address: str, secret: bytes, timeout: float = CALL_TIMEOUT) -> None:
        # flwr 1.42: signs AcquireTask with an HMAC of the shared secret (the only method
        # the SuperNode protects with it, as run_superexec does).
        from flwr.supercore.interceptors import SuperExecAuthHttpInterceptor

        auth = SuperExecAuthHttpInterceptor(
            master_secret=secret, protected_methods=_SUPEREXEC_AUTH_METHODS
        )
        self._client = _client(address, [auth], timeout)

    def acquire(self) -> AcquiredTask | None:
        """One AcquireTask call; raises :data:`RuntimeCallError` when it fails."""
        res = self._client.AcquireTask(AcquireTaskRequest(supported_task_types=[CLIENT_APP_TASK]))
        if not res.HasField("task") or not res.token:
            return None
        return AcquiredTask(res.token, res.task.task_id, res.task.run_id, res.task.type)

    def close(self) -> None:
        self._client.close()


class TaskChannel:
    """The flwr-clientapp side of one task: what ``run_clientapp`` does, minus the bundle."""

    def __init__(self, address: str, token: str, timeout: float = CALL_TIMEOUT) -> None:
        # flwr 1.42: sends the per-task token every call but AcquireTask needs.
        from flwr.supercore.interceptors import RuntimeTokenHttpInterceptor

        self._client = _client(address, [RuntimeTokenHttpInterceptor(token)], timeout)
        # Its own short-timeout client, so stopping the heartbeat never waits long.
        self._beat_client = _client(
            address, [RuntimeTokenHttpInterceptor(token)], HEARTBEAT_TIMEOUT
        )
        self._heartbeat: HeartbeatSender | None = None
        self.task_ended = False

    # -- heartbeat --------------------------------------------------------------------------
    def _beat(self) -> bool:
        """One heartbeat. Flower's version SIGINTs the process when the task is gone; a
        pod serves many tasks, so it only notes it (the task's pushes will then fail)."""
        try:
            ok = self._beat_client.SendTaskHeartbeat(SendTaskHeartbeatRequest()).success
        except RuntimeCallError:
            return False  # HeartbeatSender retries with backoff
        if not ok and not self.task_ended:
            self.task_ended = True
            logger.warning("the SuperNode no longer knows this task (run stopped or expired)")
        return True

    def start_heartbeat(self) -> None:
        # flwr 1.42: a per-task heartbeat keeps the SuperNode from expiring a long task
        # (training).
        from flwr.supercore.heartbeat import HeartbeatSender

        self._heartbeat = HeartbeatSender(self._beat)
        self._heartbeat.start()

    # -- input ------------------------------------------------------------------------------
    def pull_input(self) -> TaskInput:
        """The task's context, run and bundle, then its one message (as pull_task_input)."""
        res = self._client.PullTaskInput(PullTaskInputRequest())
        TaskIdentity.task_id = res.task_id
        TaskIdentity.run_id = res.run.run_id
        TaskIdentity.node_id = res.context.node_id
        context = context_from_proto(res.context)
        pulled = self._client.PullMessages(PullAppMessagesRequest())
        if not pulled.messages_list:
            raise RuntimeError("the SuperNode's Runtime API returned no message for the task")
        node = Node(node_id=context.node_id)
        tree = pulled.message_object_trees[0]
        message = pull_and_inflate_object_from_tree(
            tree,
            make_pull_object_fn_protobuf(self._client.PullObject, node, context.run_id),
            make_confirm_message_received_fn_protobuf(
                self._client.ConfirmMessageReceived, node, context.run_id
            ),
            return_type=Message,
            max_time=PULL_TIMEOUT,
            initial_backoff=PULL_FIRST_RETRY,
            backoff_cap=PULL_MAX_RETRY_WAIT,
        )
        # A pulled message lacks its own id (its object id), which a reply names.
        set_message_id(message, tree.object_id)
        return TaskInput(message, context, int(res.run.run_id), bytes(res.fab.content))

    # -- output -----------------------------------------------------------------------------
    def push_reply(self, reply: Message, context: Context) -> None:
        """Push the reply and its objects (as run_clientapp's push_message)."""
        set_message_id(reply, reply.object_id)
        proto = message_to_proto(remove_content_from_message(reply))
        with no_object_id_recompute():
            res = self._client.PushMessages(
                PushAppMessagesRequest(
                    messages_list=[proto], message_object_trees=[get_object_tree(reply)]
                )
            )
            push_objects(
                get_all_nested_objects(reply),
                make_push_object_fn_protobuf(
                    self._client.PushObject,
                    Node(node_id=context.node_id),
                    run_id=context.run_id,
                    session_id=res.session_id,
                ),
                object_ids_to_push=set(res.objects_to_push),
            )

    def push_output(self, context: Context | None, sub_status: str, details: str) -> None:
        """End the task; the context (the pod's state between messages) stays on the node."""
        self._client.PushTaskOutput(
            PushTaskOutputRequest(
                context=context_to_proto(context) if context is not None else None,
                sub_status=sub_status,
                details=details,
            )
        )

    def close(self) -> None:
        if self._heartbeat is not None and self._heartbeat.is_running:
            self._heartbeat.stop()
        self._client.close()
        self._beat_client.close()
