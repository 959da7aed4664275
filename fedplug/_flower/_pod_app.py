"""The pod ClientApp: schema queries, training, evaluation, secure aggregation."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from fedplug._errors import PodConfigError

from . import _wire as wire
from ._pod_compute import plaintext_metrics, plaintext_update
from ._pod_errors import failure, reply_for
from ._pod_runtime import PodRuntime, load_runtime, pod_file_for
from ._secure_pod import handle_secure, handle_setup, handle_survivors, handle_unmask

logger = logging.getLogger("fedplug.pod")

Handler = Callable[[Message, Context, PodRuntime], Message]


Locate = Callable[[Context], Path]
Load = Callable[[Path], PodRuntime]


def _guard(
    handler: Handler, locate: Locate, load: Load = load_runtime
) -> Callable[[Message, Context], Message]:
    """Turn every failure into a Flower error reply naming the pod: a pod never crashes.

    The reply carries a reason from a fixed set, never the exception's text, which stays in
    the pod's log (see ``_pod_errors``).
    """

    def wrapped(message: Message, context: Context) -> Message:
        name = "?"
        try:
            path = locate(context)
        except PodConfigError as exc:
            logger.warning("%s", exc)
            return failure(message, name, "no-pod")
        try:
            name = path.stem
            runtime = load(path)
            name = runtime.name
            reply = handler(message, context, runtime)
            if not reply.has_error():
                wire.check_reply_content(reply.content)
            return reply
        except Exception as exc:  # noqa: BLE001 - a pod answers, it does not crash
            return reply_for(message, name, exc)

    return wrapped


def handle_schema(message: Message, context: Context, runtime: PodRuntime) -> Message:
    policy = runtime.pod.policy
    metadata = runtime.data.schema.metadata()
    # Row counts stay private: in secure mode the server must not learn any pod's count.
    metadata.pop("num_rows", None)
    return wire.schema_reply(
        message,
        runtime.name,
        metadata,
        require_secure=bool(policy.require_secure_aggregation),
        min_pods=int(policy.min_pods),
        accepted_models=policy.accepted_models,
    )


def handle_train(message: Message, context: Context, runtime: PodRuntime) -> Message:
    runtime.require_plaintext_allowed()
    arrays, metrics, n = plaintext_update(runtime, message)
    return Message(wire.train_content(arrays, metrics, n), reply_to=message)


def handle_evaluate(message: Message, context: Context, runtime: PodRuntime) -> Message:
    runtime.require_plaintext_allowed()
    metrics, n = plaintext_metrics(runtime, message)
    return Message(wire.evaluate_content(metrics, n), reply_to=message)


class PodClientApp(ClientApp):
    """A ClientApp that answers message types it does not handle with an error reply.

    Flower's ClientApp raises for an unregistered type before any mod runs; a pod
    answers instead, naming what it does handle.
    """

    def __call__(self, message: Message, context: Context) -> Message:
        if message.metadata.message_type not in wire.KNOWN_MESSAGE_TYPES:
            logger.warning(
                "a pod got a message of type %r; it handles %s",
                message.metadata.message_type,
                list(wire.KNOWN_MESSAGE_TYPES),
            )
            return failure(message, "?", "unknown-message", wire.BAD_REQUEST)
        return super().__call__(message, context)


def build_client_app(
    pod_files: Sequence[str] | None = None,
    *,
    pod_file: str | Path | None = None,
    load: Load = load_runtime,
) -> ClientApp:
    """The pod ClientApp.

    ``pod_files`` maps simulated SuperNodes (by partition id) to pod files; ``pod_file``
    is the one pod a long-lived pod process serves (``fedplug pod start``); otherwise the
    node config's ``pod`` key names the file (in-process grids). ``load`` turns the
    located path into the pod's runtime (the in-process backend also serves pods held
    in memory).
    """
    app = PodClientApp()
    if pod_file is not None:
        served = Path(pod_file)

        def locate(context: Context) -> Path:
            return served

    else:
        files = list(pod_files) if pod_files else None

        def locate(context: Context) -> Path:
            return pod_file_for(context, files)

    app.query("schema")(_guard(handle_schema, locate, load))
    app.query("secaggsetup")(_guard(handle_setup, locate, load))
    app.train()(_guard(handle_train, locate, load))
    app.evaluate()(_guard(handle_evaluate, locate, load))
    app.train("secure")(_guard(lambda m, c, r: handle_secure(m, c, r, "train"), locate, load))
    app.evaluate("secure")(_guard(lambda m, c, r: handle_secure(m, c, r, "evaluate"), locate, load))
    app.query("secaggsurvivors")(_guard(handle_survivors, locate, load))
    app.query("secaggunmask")(_guard(handle_unmask, locate, load))
    return app
