"""What a pod tells the server when it refuses or fails: a code, a reason, pod names.

An error reply is free text that bypasses the reply allow-list, so it carries only a reason
from the fixed set below, its fixed explanation, and pod names the server itself sent (the
task's pods, the roster). Never the exception's own message: it may hold a cell value, a
row number or a figure computed from the data. The full detail goes to the pod's local log,
where its owner reads it.
"""

from __future__ import annotations

import json
import logging

from flwr.app import Message

from fedplug._errors import (
    DataSourceError,
    DataStructureError,
    DataValidationError,
    EncodingError,
    FedplugError,
    PodConfigError,
    PolicyRefusal,
    SchemaError,
    SecureAggregationError,
)

from . import _wire as wire

logger = logging.getLogger("fedplug.pod")

LOG_HINT = "the pod's owner finds the details in the pod's log"

#: Policy refusals (code POLICY_REFUSAL): reason -> what it means and what to do.
REFUSALS: dict[str, str] = {
    "task-kind": "its policy does not accept this kind of task (policy.accepted_tasks); "
    "ask the pod's owner to accept it, or leave the pod out",
    "secure-aggregation-required": "it requires secure aggregation and never sends a "
    "plaintext update; rerun with aggregator=secure (Hydra) or "
    "aggregator=SecureAggregator() (Python)",
    "unapproved-pod": "the task includes pods that are not in its approved_pods; remove them "
    "from the task, or ask the pod's owner to approve them",
    "too-few-pods": "the task has fewer pods than its policy.min_pods (secure aggregation "
    "never sums fewer than 2); add pods to the task",
    "duplicate-pod": "the roster lists a pod twice or two pods share an exchange key; "
    "restart the run",
    "own-key-missing": "the roster lacks or alters this pod's own key bundle; the server "
    "must return every bundle unchanged",
    "bad-signature": "a key bundle is not validly signed for this run; restart the run",
    "pinned-key-mismatch": "a pod presents an identity key other than the one pinned for it; "
    "if its key really changed, its owner sends the new public key to be pinned",
    "unpinned-pod": "it requires secure aggregation and accepts only peers whose identity "
    "key it pins; pin every approved pod (identity.pinned_keys, see `fedplug pod keys`)",
    "setup-repeated": "key setup happens once per run; start a new run",
    "roster-repeated": "a run's roster is accepted once; start a new run",
    "replayed-round": "this exchange was already used, or is a re-run; masks are never reused "
    "and no round is re-run over a subset of its pods",
    "participants-grew": "the exchange includes pods that dropped out earlier in the run; "
    "the pods of a secure run only ever shrink (no client sampling); start a new run",
    "unknown-pod": "the exchange lists pods that are not in the run's roster; pods join at "
    "key setup only",
    "settings-changed": "the aggregator's max_weight, number of pods, threshold or dropout "
    "mode changed during the run (or n_pods is smaller than the roster); they are fixed for a "
    "run: start a new run",
    "threshold-too-low": "the recovery threshold is below a majority of the pods holding its "
    "shares, or below the pod's policy.min_threshold; raise SecureAggregator(threshold=...)",
    "survivors-inconsistent": "the server told the pods different survivor sets, or asked "
    "for an unmask without every survivor's signature of the set, or relayed a share from a "
    "pod it says dropped out; nothing was released: start a new run",
    "unmask-repeated": "an exchange is unmasked once, right after its uploads; the request is "
    "for another exchange or a second time",
    "bundle-refused": "the run's app bundle carries code or names components other than "
    "fedplug's; a pod runs only the fedplug installed on its machine: run fedplug's own app",
    "model-not-accepted": "its policy does not accept this model plugin "
    "(policy.accepted_models); ask the pod's owner to install the plugin and add it to "
    "policy.accepted_models, or pick a model the pods accept",
    "module-not-accepted": "the task names a torch module its policy does not list "
    "(policy.accepted_modules); ask the pod's owner to install it and add its import path, "
    "or pick a module the pods accept",
    "unsafe-launch": "the pod was started with plain flower-supernode, which runs whatever "
    "code an app bundle names; its owner must start it with `fedplug pod start POD.yaml`",
}

#: Failures (code POD_FAILURE or BAD_REQUEST): reason -> what it means and what to do.
FAILURES: dict[str, str] = {
    "pod-data": "its data or pod file fails its own checks (run `fedplug pod check POD.yaml` "
    "on the pod's machine)",
    "no-pod": "this SuperNode serves no pod; its owner starts it with `fedplug pod start POD.yaml`",
    "secure-aggregation": "it could not take part in this secure exchange (its key setup, "
    "roster or settings do not fit the message); restart the run",
    "encoding": "its update does not fit the aggregator's fixed-point settings or is not "
    "finite; check clip, stats_clip and max_weight, or the model's learning rate",
    "bad-request": "it could not read the message (a field is missing or malformed); the "
    "server and the pods must run the same fedplug version",
    "unknown-message": "it does not handle this message type; it handles "
    + ", ".join(wire.KNOWN_MESSAGE_TYPES),
    "task-mismatch": "the task does not fit the pod's data (a column or type its schema "
    "lacks); build the task from the pods' published schemas",
    "training": "its local training or evaluation failed",
    "internal-error": "it failed unexpectedly",
}


def _text(pod: str, verb: str, reason: str, explanation: str, named: str = "") -> str:
    return f"pod {pod!r} {verb} ({reason}){named}: {explanation}; {LOG_HINT}."


def refusal(message: Message, pod: str, reason: str, pods: list[str] | None = None) -> Message:
    """A policy refusal naming the pod, a reason from :data:`REFUSALS` and the pods concerned."""
    if reason not in REFUSALS:
        raise ValueError(f"unknown refusal reason {reason!r}")  # a fedplug bug, not data
    names = sorted({p for p in (pods or []) if p != pod})
    text = _text(pod, "refuses", reason, REFUSALS[reason], f" (pods {names})" if names else "")
    return wire.refusal_reply(message, reason, text, [pod, *names])


def failure(
    message: Message,
    pod: str,
    reason: str,
    code: int = wire.POD_FAILURE,
    columns: list[str] | None = None,
) -> Message:
    """A failure naming the pod, a reason from :data:`FAILURES` and at most the names of
    the pod's schema columns concerned, nothing else."""
    named = f" (columns {columns})" if columns else ""
    text = _text(pod, "failed", reason, FAILURES[reason], named)
    payload: dict[str, object] = {"reason": reason, "message": text}
    if pod != "?":  # its own name, which its schema reply would give anyway
        payload["pods"] = [pod]
    return wire.error_reply(message, code, json.dumps(payload))


def _failure_reason(exc: BaseException) -> tuple[str, int]:
    if isinstance(exc, DataStructureError):
        return "task-mismatch", wire.POD_FAILURE
    if isinstance(exc, (DataValidationError, DataSourceError, SchemaError, PodConfigError)):
        return "pod-data", wire.POD_FAILURE
    if isinstance(exc, EncodingError):
        return "encoding", wire.POD_FAILURE
    if isinstance(exc, SecureAggregationError):
        return "secure-aggregation", wire.POD_FAILURE
    if isinstance(exc, FedplugError):
        return "training", wire.POD_FAILURE
    if isinstance(exc, (KeyError, ValueError, TypeError)):
        return "bad-request", wire.BAD_REQUEST
    return "internal-error", wire.POD_FAILURE


def reply_for(message: Message, pod: str, exc: BaseException) -> Message:
    """The error reply for ``exc``; its full text goes to the pod's log only."""
    if isinstance(exc, PolicyRefusal) and exc.reason in REFUSALS:
        logger.warning("pod %s refused a %s message: %s", pod, _kind(message), exc)
        return refusal(message, pod, exc.reason, list(exc.pods))
    reason, code = _failure_reason(exc)
    if reason in ("internal-error", "bad-request"):
        logger.error("pod %s failed on a %s message", pod, _kind(message), exc_info=exc)
    else:
        logger.warning("pod %s failed on a %s message: %s", pod, _kind(message), exc)
    columns = exc.columns if isinstance(exc, DataValidationError) else None
    return failure(message, pod, reason, code, columns)


def _kind(message: Message) -> str:
    return str(message.metadata.message_type)
