"""Keeping a pod's protocol state in Flower's node state between messages.

A SuperNode may run each message in a fresh ClientApp process, so the pod's exchange key,
roster and used rounds live in ``context.state``, which stays on the SuperNode and is
never sent.
"""

from __future__ import annotations

import base64
import json
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


def save_protocol(context: Context, key: str, protocol: PodProtocol) -> None:
    state = {k: _encode(v) for k, v in protocol.export_state().items()}
    context.state[key] = ConfigRecord({"state": json.dumps(state)})


def load_protocol(context: Context, key: str, fresh: PodProtocol) -> PodProtocol | None:
    """Restore the saved state into ``fresh`` (built from the pod's current policy)."""
    record = context.state.get(key)
    if record is None:
        return None
    fresh.restore_state({k: _decode(v) for k, v in json.loads(str(record["state"])).items()})
    return fresh
