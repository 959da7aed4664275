"""Keeping a pod's protocol state in ``context.state`` between messages.

The pod's exchange key, roster and used exchanges live in the context's state. Under
``fedplug pod start`` that state is the pod process's own, per Flower run (the executor
never takes it from, nor gives it to, the SuperNode's Runtime API); in a simulation it is
the simulated node's. Either way it is never sent.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from flwr.app import ConfigRecord, Context

from fedplug.secagg import PodProtocol


def _encode(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode()}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


# The live protocol objects of this process, by (pod runtime, node, key), with the state
# text they were saved as. A hit skips re-deriving every pair secret (one X25519 and HKDF
# per peer) on each message; a pod file that changes gets a new runtime, so a new object.
_LIVE: dict[tuple[int, int, str], tuple[str, PodProtocol]] = {}


def save_protocol(context: Context, key: str, protocol: PodProtocol, owner: object) -> None:
    state = {k: _encode(v) for k, v in protocol.export_state().items()}
    text = json.dumps(state)
    context.state[key] = ConfigRecord({"state": text})
    _LIVE[(id(owner), context.node_id, key)] = (text, protocol)


def load_protocol(
    context: Context, key: str, fresh: Callable[[], PodProtocol], owner: object
) -> PodProtocol | None:
    """The saved protocol: this process's live object if it is current, else restored into
    ``fresh()`` (built from the pod's current policy)."""
    record = context.state.get(key)
    if record is None:
        return None
    text = str(record["state"])
    live = _LIVE.get((id(owner), context.node_id, key))
    if live is not None and live[0] == text:
        return live[1]
    protocol = fresh()
    protocol.restore_state({k: _decode(v) for k, v in json.loads(text).items()})
    return protocol
