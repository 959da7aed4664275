"""fedplug's wire format: every message between the ServerApp and pods, in one place.

The message types, record names and keys; the builders of each message and reply; and
the readers that check a reply before anything uses it. A reader raises
:class:`MalformedMessage` (naming what is wrong) for a reply of the wrong layout, so no
``KeyError`` from deep inside a record reaches anyone. Pods build every reply from
:data:`REPLY_RECORD_KINDS`; nothing else leaves a pod.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict

from ._flower_internals import npy_array, npy_words

# Message types (Flower's "<category>.<action>").
SCHEMA_QUERY = "query.schema"
SECAGG_SETUP = "query.secaggsetup"
TRAIN = "train"
EVALUATE = "evaluate"
SECURE_TRAIN = "train.secure"
SECURE_EVALUATE = "evaluate.secure"
SECURE_SURVIVORS = "query.secaggsurvivors"
SECURE_UNMASK = "query.secaggunmask"
KNOWN_MESSAGE_TYPES = (
    SCHEMA_QUERY,
    SECAGG_SETUP,
    TRAIN,
    EVALUATE,
    SECURE_TRAIN,
    SECURE_EVALUATE,
    SECURE_SURVIVORS,
    SECURE_UNMASK,
)

# Record names. Flower's strategies send "config" and "arrays" and read "arrays" and
# "metrics"; the rest are fedplug's.
CONFIG = "config"
ARRAYS = "arrays"
METRICS = "metrics"
SCHEMA = "schema"
BUNDLE = "bundle"
MASKED = "masked"
LAYOUT = "layout"
SEALED = "sealed"  # an upload's shares of its self-mask seed, each sealed for one peer
UNMASK = "unmask"  # the unmask request: survivors, and the shares sealed for the recipient
UNMASKED = "unmasked"  # a survivor's answer: shares, and pair keys of dropped pods
RECEIPT = "receipt"  # a survivor's signature of the survivor set (the consistency step)
NUM_EXAMPLES = "num-examples"  # the weight Flower's strategies read from "metrics"

# Keys inside the "config" ConfigRecord that Flower strategies send.
TASK_KEY = "fedplug-task"
PODS_KEY = "fedplug-pods"  # the task's pods, so each pod checks them against its policy
PHASE_KEY = "fedplug-phase"
PHASE_STATS = "stats"
#: A model's own exchange: pods answer the request in REQUEST_KEY with a vector that is
#: summed over pods; BOUND_KEY bounds one pod's elements (a secure aggregator's clip).
PHASE_EXCHANGE = "exchange"
REQUEST_KEY = "fedplug-request"
BOUND_KEY = "fedplug-bound"
#: The task kind a model's exchange serves ("train" or "evaluate"), checked against the
#: pod's policy.accepted_tasks.
KIND_KEY = "fedplug-kind"
PHASE_FIT = "fit"

# The record that carries secure-aggregation parameters next to "config".
SECURE_KEY = "fedplug-secure"

# Reply records a pod may send, by name: model arrays, metric values, schema metadata,
# counts and key material. Never rows.
REPLY_RECORD_KINDS = {
    ARRAYS: "ArrayRecord",
    METRICS: "MetricRecord",
    SCHEMA: "ConfigRecord",
    MASKED: "ArrayRecord",
    BUNDLE: "ConfigRecord",
    LAYOUT: "ConfigRecord",
    SEALED: "ConfigRecord",
    UNMASKED: "ConfigRecord",
    RECEIPT: "ConfigRecord",
}

#: How a secure round meets a dropout: recover (double masking, one unmask exchange) or
#: abort (one exchange, a dropout ends the run).
DROPOUT_MODES = ("recover", "abort")

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


class MalformedMessage(ValueError):
    """A message whose layout is not fedplug's (another fedplug version, or a bug)."""


def _read(what: str, read: Any) -> Any:
    try:
        return read()
    except (
        MalformedMessage,
        KeyError,
        TypeError,
        ValueError,
        AttributeError,
        json.JSONDecodeError,
    ) as exc:
        detail = str(exc) if isinstance(exc, MalformedMessage) else f"{type(exc).__name__}: {exc}"
        raise MalformedMessage(
            f"{what} is malformed ({detail}); the pods and the server must run the same "
            "fedplug version"
        ) from exc


# -- what the server sends ------------------------------------------------------------
def with_pods(config: ConfigRecord, pods: Sequence[str]) -> ConfigRecord:
    """``config`` naming the task's pods (each pod checks them against its policy)."""
    config[PODS_KEY] = json.dumps(list(pods))
    return config


def task_pods(config: ConfigRecord, default: str) -> list[str]:
    """The pods a message's config names (``[default]`` when it names none)."""
    return list(
        _read("the task's pod list", lambda: json.loads(str(config.get(PODS_KEY, "[]"))))
    ) or [default]


def setup_request(run: str, q: int, pods: Sequence[str]) -> RecordDict:
    # ConfigRecord ints are signed 64-bit; q travels as text to allow any prime.
    return RecordDict({CONFIG: with_pods(ConfigRecord({"run": run, "q": str(q)}), pods)})


@dataclass(frozen=True)
class SetupRequest:
    run: str
    q: int
    pods: list[str]


def read_setup_request(message: Message, default_pod: str, default_q: int) -> SetupRequest:
    def read() -> SetupRequest:
        config = message.content.config_records[CONFIG]
        return SetupRequest(
            run=str(config["run"]),
            q=int(str(config.get("q", str(default_q)))),
            pods=task_pods(config, default_pod),
        )

    return _read("the key setup request", read)


@dataclass(frozen=True)
class SecureParams:
    """The secure-aggregation fields of a server message."""

    run: str
    seq: int
    participants: list[str]
    roster: list[dict]
    q: int
    clip: float
    stats_clip: float
    max_weight: int
    n_pods: int
    mode: str = "recover"
    threshold: int = 0
    graph: str = "all"

    @classmethod
    def from_message(cls, message: Message) -> SecureParams:
        return cls.from_record(
            _read("the secure-aggregation record", lambda: message.content[SECURE_KEY])
        )

    @classmethod
    def from_record(cls, record: ConfigRecord) -> SecureParams:
        def read() -> SecureParams:
            return cls(
                run=str(record["run"]),
                seq=as_int(record["seq"]),
                participants=[str(p) for p in json.loads(str(record["participants"]))],
                roster=[dict(b) for b in json.loads(str(record["roster"]))],
                q=int(str(record["q"])),
                clip=as_float(record["clip"]),
                stats_clip=as_float(record["stats-clip"]),
                max_weight=as_int(record["max-weight"]),
                n_pods=as_int(record["n-pods"]),
                mode=_mode(str(record["mode"])),
                threshold=as_int(record["threshold"]),
                graph=str(record["graph"]),
            )

        return _read("the secure-aggregation parameters", read)

    def to_record(self) -> ConfigRecord:
        return ConfigRecord(
            {
                "run": self.run,
                "seq": self.seq,
                "participants": json.dumps(self.participants),
                "roster": json.dumps(self.roster),
                "q": str(self.q),  # text: see setup_request
                "clip": float(self.clip),
                "stats-clip": float(self.stats_clip),
                "max-weight": int(self.max_weight),
                "n-pods": int(self.n_pods),
                "mode": self.mode,
                "threshold": int(self.threshold),
                "graph": self.graph,
            }
        )


def _mode(value: str) -> str:
    if value not in DROPOUT_MODES:
        raise MalformedMessage(f"dropout mode {value!r} is not one of {DROPOUT_MODES}")
    return value


def _names_to_text(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise MalformedMessage("a mapping of pod names was expected")
    return {str(k): str(v) for k, v in value.items()}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _bytes_by_pod(text: object) -> dict[str, bytes]:
    return {pod: unb64(v) for pod, v in _names_to_text(json.loads(str(text))).items()}


def _text_by_pod(values: Mapping[str, bytes]) -> str:
    return json.dumps({pod: b64(v) for pod, v in values.items()})


def secure_message(template: Message, params: SecureParams, message_type: str) -> Message:
    """``template``'s content plus the secure-aggregation parameters, to the same node."""
    content = RecordDict(dict(template.content.items()))
    content[SECURE_KEY] = params.to_record()
    return Message(content, dst_node_id=template.metadata.dst_node_id, message_type=message_type)


# -- what a pod reads from a task message ---------------------------------------------
def task_config(message: Message) -> ConfigRecord:
    return _read("the task's config", lambda: message.content.config_records[CONFIG])


def global_arrays(message: Message) -> list[np.ndarray]:
    return _read(
        "the global model", lambda: message.content.array_records[ARRAYS].to_numpy_ndarrays()
    )


# -- what a pod replies ---------------------------------------------------------------
def schema_reply(
    message: Message,
    pod: str,
    schema: dict,
    require_secure: bool,
    min_pods: int,
    accepted_models: Sequence[str] = (),
) -> Message:
    record = ConfigRecord(
        {
            "pod": pod,
            "schema": json.dumps(schema),
            "require-secure": bool(require_secure),
            "min-pods": int(min_pods),
            "accepted-models": json.dumps(list(accepted_models)),
        }
    )
    return Message(RecordDict({SCHEMA: record}), reply_to=message)


def bundle_reply(message: Message, bundle: dict) -> Message:
    return Message(
        RecordDict({BUNDLE: ConfigRecord({"bundle": json.dumps(bundle)})}), reply_to=message
    )


def train_content(arrays: Sequence[np.ndarray], metrics: dict[str, float], n: int) -> RecordDict:
    """What Flower's strategies read from a train reply (also the secure sum's stand-in)."""
    return RecordDict(
        {
            ARRAYS: ArrayRecord([np.asarray(a) for a in arrays]),
            METRICS: MetricRecord({**metrics, NUM_EXAMPLES: n}),
        }
    )


def evaluate_content(metrics: dict[str, float], n: int) -> RecordDict:
    return RecordDict({METRICS: MetricRecord({**metrics, NUM_EXAMPLES: n})})


def upload_reply(
    message: Message,
    packed: np.ndarray,
    length: int,
    keys: list[str],
    sealed: Mapping[str, bytes] | None = None,
) -> Message:
    content = RecordDict(
        {
            MASKED: ArrayRecord({"0": npy_array(packed)}),
            LAYOUT: ConfigRecord({"metric-keys": json.dumps(keys), "length": int(length)}),
        }
    )
    if sealed is not None:
        content[SEALED] = ConfigRecord({"shares": _text_by_pod(sealed)})
    return Message(content, reply_to=message)


def survivors_request(run: str, seq: int, survivors: Sequence[str], node: int) -> Message:
    """Ask a survivor to sign the survivor set of exchange ``seq`` (after a dropout)."""
    record = ConfigRecord({"run": run, "seq": int(seq), "survivors": json.dumps(sorted(survivors))})
    return Message(RecordDict({UNMASK: record}), dst_node_id=node, message_type=SECURE_SURVIVORS)


def receipt_reply(message: Message, receipt: bytes) -> Message:
    return Message(RecordDict({RECEIPT: ConfigRecord({"receipt": b64(receipt)})}), reply_to=message)


def read_receipt_reply(reply: Message) -> bytes:
    return _read(
        "a survivor's receipt", lambda: unb64(str(reply.content.config_records[RECEIPT]["receipt"]))
    )


def unmask_request(
    run: str,
    seq: int,
    survivors: Sequence[str],
    sealed: Mapping[str, bytes],
    node: int,
    receipts: Mapping[str, bytes] | None = None,
) -> Message:
    """Ask a survivor to unmask exchange ``seq``; ``sealed``: the shares sealed for it;
    ``receipts``: every survivor's signature of the set (after a dropout)."""
    record = ConfigRecord(
        {
            "run": run,
            "seq": int(seq),
            "survivors": json.dumps(sorted(survivors)),
            "sealed": _text_by_pod(sealed),
            "receipts": _text_by_pod(receipts or {}),
        }
    )
    return Message(RecordDict({UNMASK: record}), dst_node_id=node, message_type=SECURE_UNMASK)


@dataclass(frozen=True)
class UnmaskRequest:
    run: str
    seq: int
    survivors: list[str]
    sealed: dict[str, bytes]
    receipts: dict[str, bytes]


def read_unmask_request(message: Message) -> UnmaskRequest:
    """The survivors request (no shares, no receipts) or the unmask request."""

    def read() -> UnmaskRequest:
        record = message.content.config_records[UNMASK]
        survivors = json.loads(str(record["survivors"]))
        if not isinstance(survivors, list):
            raise MalformedMessage("its survivors are not a list")
        return UnmaskRequest(
            run=str(record["run"]),
            seq=as_int(record["seq"]),
            survivors=[str(p) for p in survivors],
            sealed=_bytes_by_pod(record.get("sealed", "{}")),
            receipts=_bytes_by_pod(record.get("receipts", "{}")),
        )

    return _read("the unmask request", read)


def unmask_reply(
    message: Message, shares: Mapping[str, bytes], pair_keys: Mapping[str, bytes]
) -> Message:
    record = ConfigRecord({"shares": _text_by_pod(shares), "pair-keys": _text_by_pod(pair_keys)})
    return Message(RecordDict({UNMASKED: record}), reply_to=message)


def read_unmask_reply(reply: Message) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """A survivor's shares (by seed owner) and pair keys (by dropped pod)."""

    def read() -> tuple[dict[str, bytes], dict[str, bytes]]:
        record = reply.content.config_records[UNMASKED]
        return _bytes_by_pod(record["shares"]), _bytes_by_pod(record["pair-keys"])

    return _read("an unmask answer", read)


# -- what the server reads from replies -----------------------------------------------
@dataclass(frozen=True)
class PodInfo:
    """What a pod publishes about itself: metadata only."""

    pod: str
    schema: dict
    require_secure: bool
    min_pods: int
    #: The model plugins its policy accepts (``None``: a pod that does not say).
    accepted_models: tuple[str, ...] | None = None


def read_schema_reply(reply: Message) -> PodInfo:
    def read() -> PodInfo:
        record = reply.content.config_records[SCHEMA]
        schema = json.loads(str(record["schema"]))
        if not isinstance(schema, dict):
            raise MalformedMessage("the published schema is not a mapping")
        return PodInfo(
            pod=str(record["pod"]),
            schema=schema,
            require_secure=bool(record["require-secure"]),
            min_pods=as_int(record["min-pods"]),
            accepted_models=_models(record.get("accepted-models")),
        )

    return _read("a pod's schema reply", read)


def _models(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    models = json.loads(str(value))
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise MalformedMessage("the accepted models are not a list of names")
    return tuple(models)


def read_bundle_reply(reply: Message) -> dict:
    def read() -> dict:
        bundle = json.loads(str(reply.content.config_records[BUNDLE]["bundle"]))
        if not isinstance(bundle, dict):
            raise MalformedMessage("the key bundle is not a mapping")
        return bundle

    return _read("a pod's key bundle", read)


@dataclass(frozen=True)
class Upload:
    """A pod's masked upload: packed words (a read-only view, never a copy), the vector's
    length and the names of the metrics it carries."""

    words: np.ndarray
    length: int
    metric_keys: list[str]
    sealed: dict[str, bytes] = field(default_factory=dict)  # by recipient (recover mode)


def read_upload(reply: Message) -> Upload:
    def read() -> Upload:
        (array,) = reply.content.array_records[MASKED].values()
        layout = reply.content.config_records[LAYOUT]
        keys = json.loads(str(layout["metric-keys"]))
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise MalformedMessage("its metric keys are not a list of names")
        sealed_record = reply.content.config_records.get(SEALED)
        sealed = _bytes_by_pod(sealed_record["shares"]) if sealed_record is not None else {}
        return Upload(npy_words(array), as_int(layout["length"]), keys, sealed)

    return _read("a masked upload", read)


def check_plain_reply(reply: Message, train: bool) -> None:
    """A plaintext reply holds what Flower's strategies read: arrays (training) and
    metrics with a non-negative example count."""

    def read() -> None:
        if train and not reply.content.array_records.get(ARRAYS):
            raise MalformedMessage(f"it has no {ARRAYS!r} record")
        n = as_float(reply.content.metric_records[METRICS][NUM_EXAMPLES])
        if not n >= 0:
            raise MalformedMessage(f"its {NUM_EXAMPLES} is {n}")

    _read("a pod's reply", read)
