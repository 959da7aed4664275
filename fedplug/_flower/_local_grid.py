"""An in-process Grid: runs ClientApps directly, for tests and the conformance kit.

It delivers messages the way a SuperLink would (one reply per message, error replies
included) without processes or networking, and can make nodes fall silent to test
dropout. It is not a simulation engine: it runs pods one after another.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid

from ._flower_internals import ensure_task_identity, set_message_id

# Decides whether a node answers a message: (node_id, message) -> bool.
DeliveryFilter = Callable[[int, Message], bool]


class LocalGrid(Grid):
    """A Grid over ClientApps in this process, one per node."""

    def __init__(
        self,
        apps: Mapping[int, ClientApp],
        node_configs: Mapping[int, dict] | None = None,
        run_config: dict | None = None,
        deliver: DeliveryFilter | None = None,
    ) -> None:
        self._apps = dict(apps)
        self._contexts = {
            node_id: Context(
                run_id=1,
                node_id=node_id,
                node_config=dict((node_configs or {}).get(node_id, {})),
                state=RecordDict(),
                run_config=dict(run_config or {}),
            )
            for node_id in self._apps
        }
        self.deliver = deliver
        self.sent: list[Message] = []
        self.replies: list[Message] = []
        ensure_task_identity(run_id=1, node_id=0, task_id=0)

    # -- Grid API --------------------------------------------------------------------------
    def set_run(self, run) -> None:  # noqa: ANN001 - flwr's Run
        self._run = run

    @property
    def run(self):  # noqa: ANN201
        return getattr(self, "_run", None)

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id=dst_node_id, message_type=message_type, ttl=ttl)

    def get_node_ids(self) -> Iterable[int]:
        return list(self._apps)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Deliver each message at once; its reply (if the node answers) waits to be pulled."""
        ids = []
        for message in messages:
            set_message_id(message, uuid.uuid4().hex)
            self.sent.append(message)
            ids.append(message.metadata.message_id)
            node_id = message.metadata.dst_node_id
            if node_id not in self._apps:
                continue
            if self.deliver is not None and not self.deliver(node_id, message):
                continue  # the node is silent: the caller sees a missing reply, as on timeout
            self.replies.append(self._answer(node_id, message))
        return ids

    def _answer(self, node_id: int, message: Message) -> Message:
        """The node's reply to ``message``, with the id a SuperLink would give it."""
        reply = self._apps[node_id](message, self._contexts[node_id])
        set_message_id(reply, uuid.uuid4().hex)
        return reply

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        wanted = set(message_ids)
        return [m for m in self.replies if m.metadata.reply_to_message_id in wanted]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return list(self.pull_messages(self.push_messages(list(messages))))
