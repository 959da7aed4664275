"""Keeping a pod's protocol state in Flower's node state between messages.

A SuperNode may run each message in a fresh ClientApp process, so the pod's exchange key,
roster and used rounds live in ``context.state`` (which stays on the SuperNode).
"""

from __future__ import annotations

import json

from flwr.app import ConfigRecord, Context

from fedplug.secagg import PodProtocol


def save_protocol(context: Context, key: str, protocol: PodProtocol) -> None:
    context.state[key] = ConfigRecord({"state": json.dumps(protocol.export_state())})


def load_protocol(context: Context, key: str, fresh: PodProtocol) -> PodProtocol | None:
    """Restore the saved state into ``fresh`` (built from the pod's policy), or None."""
    record = context.state.get(key)
    if record is None:
        return None
    fresh.restore_state(json.loads(str(record["state"])))
    return fresh
