"""The message vocabulary between the fedplug ServerApp and pods.

Pods build every reply from :data:`REPLY_RECORD_KINDS`; nothing else leaves a pod.
"""

from __future__ import annotations

import json
from typing import Any

from flwr.app import Error, Message, RecordDict

# Message types (Flower's "<category>.<action>").
SCHEMA_QUERY = "query.schema"
SECAGG_SETUP = "query.secaggsetup"
TRAIN = "train"
EVALUATE = "evaluate"
SECURE_TRAIN = "train.secure"
SECURE_EVALUATE = "evaluate.secure"
KNOWN_MESSAGE_TYPES = (SCHEMA_QUERY, SECAGG_SETUP, TRAIN, EVALUATE, SECURE_TRAIN, SECURE_EVALUATE)

# Keys inside the "config" ConfigRecord that Flower strategies send.
TASK_KEY = "fedplug-task"
PHASE_KEY = "fedplug-phase"
PHASE_STATS = "stats"
PHASE_FIT = "fit"

# The record that carries secure-aggregation parameters next to "config".
SECURE_KEY = "fedplug-secure"

# Reply records a pod may send, by name: model arrays, metric values, schema metadata,
# counts and key material. Never rows.
REPLY_RECORD_KINDS = {
    "arrays": "ArrayRecord",
    "metrics": "MetricRecord",
    "schema": "ConfigRecord",
    "masked": "ArrayRecord",
    "bundle": "ConfigRecord",
    "layout": "ConfigRecord",
}

# Error codes of fedplug's error replies (Flower reserves small numbers).
POLICY_REFUSAL = 4101
BAD_REQUEST = 4102
POD_FAILURE = 4103


def error_reply(message: Message, code: int, reason: str) -> Message:
    return Message(Error(code=code, reason=reason), reply_to=message)


def refusal_reply(
    message: Message, reason: str, text: str, pods: list[str] | tuple[str, ...] = ()
) -> Message:
    """A pod's policy refusal: a reason key, the pods concerned and a message for the modeller.

    ``text`` must hold no data (no cell value, row number or count): the server reads it.
    """
    payload = {"reason": reason, "pods": list(pods), "message": text}
    return error_reply(message, POLICY_REFUSAL, json.dumps(payload))


def as_int(value: Any) -> int:
    """``int(value)`` of a value read from a message, whatever its kind.

    A record value may be any ConfigRecord or MetricRecord kind, lists included: int() is
    the check, and its TypeError or ValueError marks the message as malformed.
    """
    return int(value)


def as_float(value: Any) -> float:
    """``float(value)`` of a value read from a message; float() is the check (see as_int)."""
    return float(value)


def check_reply_content(content: RecordDict) -> None:
    """Raise if a reply holds a record outside the allow-list (a pod bug, never data)."""
    for name in content:
        if name not in REPLY_RECORD_KINDS:
            raise RuntimeError(f"refusing to send record {name!r}: not an allowed reply kind")
