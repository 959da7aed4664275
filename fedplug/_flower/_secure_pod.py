"""A pod's side of secure aggregation: key setup, policy checks, encoding and masking.

Everything a pod uploads in secure mode is a masked field vector, its length, the names
of its metrics and (recover mode) shares of its self-mask seed sealed for its peers:
never a plaintext update, count or metric value. Nothing of an exchange is kept on disk;
the protocol's state (keys, the current exchange's self-mask seed) stays in the pod
process's memory.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
from flwr.app import ConfigRecord, Context, Message

from fedplug._errors import PolicyRefusal, SecureAggregationError
from fedplug.secagg import FixedPointCodec, IdentityKey, PodProtocol, Q
from fedplug.secagg._field import pack, padded_size

from . import _wire as wire
from ._pod_compute import (
    is_model_exchange,
    is_stats_exchange,
    plaintext_metrics,
    plaintext_update,
    task_kind,
)
from ._pod_runtime import PodRuntime
from ._secure_state import load_protocol, save_protocol
from ._wire import SecureParams

if TYPE_CHECKING:
    from flwr.app.typing import ConfigRecordValues

logger = logging.getLogger("fedplug.pod")

STATE_KEY = "fedplug-secagg"
SETTINGS_KEY = STATE_KEY + "-settings"


def identity_for(runtime: PodRuntime, context: Context) -> IdentityKey:
    """The pod's long-term key: its key file, else one kept in the node's state."""
    key_file = runtime.pod.identity_key
    if key_file:
        # Its owner and mode were checked at load; checked again on the open file here.
        return IdentityKey.load_private(key_file)
    record = context.state.get(STATE_KEY + "-identity")
    if record is not None:
        return IdentityKey.from_pem(str(record["pem"]).encode())
    identity = IdentityKey.generate()
    context.state[STATE_KEY + "-identity"] = ConfigRecord({"pem": identity.to_pem().decode()})
    return identity


def _new_protocol(runtime: PodRuntime, context: Context, q: int) -> PodProtocol:
    policy = runtime.pod.policy
    return PodProtocol(
        runtime.name,
        identity_for(runtime, context),
        approved_pods=runtime.pod.approved_pods,
        pinned_keys=runtime.pod.pinned_keys,
        min_pods=int(policy.min_pods),
        q=q,
        require_pins=bool(policy.require_secure_aggregation),
        min_threshold=int(policy.min_threshold),
    )


def handle_setup(message: Message, context: Context, runtime: PodRuntime) -> Message:
    """Publish a signed, fresh exchange key for this run: once per Flower run."""
    runtime.require_task_kind("train")
    request = wire.read_setup_request(message, runtime.name, Q)
    # Refuse before publishing a key for a task with pods this pod has not approved.
    runtime.require_peers_allowed(request.pods)
    if STATE_KEY in context.state:
        # The state is this Flower run's, kept by the pod process itself (fedplug pod
        # start) or by the simulation: nothing the server sends resets it.
        raise PolicyRefusal(
            f"pod {runtime.name!r} refuses a second key setup in Flower run {context.run_id}",
            reason="setup-repeated",
            pods=[runtime.name],
        )
    protocol = _new_protocol(runtime, context, request.q)
    bundle = protocol.start_run(request.run)
    save_protocol(context, STATE_KEY, protocol, runtime)
    return wire.bundle_reply(message, bundle.to_dict())


def _protocol(runtime: PodRuntime, context: Context, params: SecureParams) -> PodProtocol:
    protocol = load_protocol(
        context, STATE_KEY, lambda: _new_protocol(runtime, context, params.q), runtime
    )
    if protocol is None or protocol.run_id != params.run:
        raise SecureAggregationError(
            f"pod {runtime.name!r} has no key setup for run {params.run!r}; the server must "
            "run key setup (query.secaggsetup) before secure rounds."
        )
    if not protocol.roster_pods:
        try:
            protocol.accept_roster(params.run, params.roster)  # the pod's policy checks
        finally:
            save_protocol(context, STATE_KEY, protocol, runtime)
    elif sorted(b["pod"] for b in params.roster) != protocol.roster_pods:
        raise SecureAggregationError(
            f"pod {runtime.name!r}: the roster changed during run {params.run!r}; restart the run."
        )
    return protocol


def _encode(
    runtime: PodRuntime, message: Message, params: SecureParams, kind: str
) -> tuple[np.ndarray, int, list[str]]:
    """This pod's padded field buffer, its length and metric keys.

    The vector is the weighted values, then the metrics, the count and clipped count;
    the padding after ``length`` is zeros.
    """
    stats = is_stats_exchange(message)
    if kind == "train":
        arrays, metrics, n = plaintext_update(runtime, message)
        current = wire.global_arrays(message)
    else:
        metrics, n = plaintext_metrics(runtime, message)
        arrays, current = [], []
    keys = sorted(metrics)
    sizes = [int(np.size(a)) for a in arrays]
    cut = sum(sizes)
    # One float64 buffer: the update, the metrics, then two slots the counts overwrite
    # (zeros encode to zero), so the vector is built without concatenating copies. It is
    # padded for packing: encoding, masking and packing then all work in this memory.
    length = cut + len(keys) + 2
    buffer = np.empty(padded_size(length, params.q), dtype=np.float64)
    buffer[cut:] = 0.0  # metrics and counts are set below; the padding must be zero
    values = buffer[:length]
    offset = 0
    for a, c, size in zip(arrays, current, sizes, strict=True):
        # Updates are sent relative to the global model: small numbers, fine precision.
        np.subtract(
            np.asarray(a).reshape(-1),
            np.asarray(c).reshape(-1),
            out=values[offset : offset + size],
            dtype=np.float64,
        )
        offset += size
    values[cut : cut + len(keys)] = [metrics[k] for k in keys]
    # A model's exchange weighs every pod one (no count is sent), so its encoding needs no
    # room for max_weight: the sum keeps that factor more precision.
    weight_bound = 1 if is_model_exchange(message) else params.max_weight
    codec = FixedPointCodec(
        params.stats_clip if stats else params.clip, weight_bound, params.n_pods, params.q
    )
    # Encoded in place: the float64 buffer becomes the field vector (no second copy).
    # A count above max_weight is capped, never refused: a refusal would tell the server,
    # one bit per run, whether this pod's count exceeds a bound of its choosing. The cap
    # is counted with the clipped values (summed, so reported for the federation only).
    weight = min(int(n), int(weight_bound))
    if weight < n:
        logger.warning(
            "pod %s: %d examples exceed the aggregator's max_weight=%d; weighted as %d",
            runtime.name,
            n,
            params.max_weight,
            weight,
        )
    encoded, clipped = codec.encode_weighted(values, weight, out=values.view(np.uint64))
    encoded[-2] = codec.encode_count(weight)
    # The clipped count is capped the same way (it only ever reports that clipping happened).
    encoded[-1] = codec.encode_count(min(int(clipped) + int(weight < n), int(weight_bound)))
    return buffer.view(np.uint64), length, keys


def _bind_settings(
    runtime: PodRuntime, context: Context, protocol: PodProtocol, params: SecureParams
) -> None:
    """The encoding's settings are fixed for a session, and sized for its roster.

    Otherwise a server could vary ``max_weight`` from exchange to exchange and learn a
    pod's example count by bisection from which exchanges it could encode; ``n_pods``
    below the roster size would let the sum wrap around the field. The recovery threshold
    and the dropout mode are fixed too.
    """
    settings: dict[str, ConfigRecordValues] = {
        "max-weight": int(params.max_weight),
        "n-pods": int(params.n_pods),
        "threshold": int(params.threshold),
        "recover": int(params.mode == "recover"),
    }
    bound = context.state.get(SETTINGS_KEY)
    if bound is None:
        if params.n_pods < len(protocol.roster_pods):
            raise PolicyRefusal(
                f"pod {runtime.name!r}: n_pods={params.n_pods} is smaller than the roster",
                reason="settings-changed",
                pods=[runtime.name],
            )
        context.state[SETTINGS_KEY] = ConfigRecord(settings)
    elif {k: int(str(v)) for k, v in bound.items()} != settings:
        raise PolicyRefusal(
            f"pod {runtime.name!r}: the aggregator's settings changed mid-run "
            f"({dict(bound)} -> {settings})",
            reason="settings-changed",
            pods=[runtime.name],
        )


def handle_secure(message: Message, context: Context, runtime: PodRuntime, kind: str) -> Message:
    runtime.require_task_kind(task_kind(message, kind))
    params = SecureParams.from_message(message)
    protocol = _protocol(runtime, context, params)
    _bind_settings(runtime, context, protocol, params)
    # Every policy check first, and the exchange recorded as used (in the pod's memory)
    # before anything is computed: no failure after this can make it reusable.
    if params.mode == "recover":
        protocol.admit_upload(
            round=params.seq,
            participants=params.participants,
            threshold=params.threshold,
            graph=params.graph,
        )
    else:
        protocol.admit(round=params.seq, attempt=0, participants=params.participants)
    save_protocol(context, STATE_KEY, protocol, runtime)
    buffer, length, keys = _encode(runtime, message, params, kind)
    sealed = None
    if params.mode == "recover":
        # Double masking: a fresh self-mask, whose seed only reaches the server as shares
        # from the survivors, and per-exchange pair masks.
        _, sealed = protocol.upload(
            buffer[:length],
            round=params.seq,
            participants=params.participants,
            threshold=params.threshold,
            graph=params.graph,
            in_place=True,
        )
    else:
        protocol.mask(
            buffer[:length],
            round=params.seq,
            attempt=0,
            participants=params.participants,
            in_place=True,
        )
    save_protocol(context, STATE_KEY, protocol, runtime)
    # Field elements use 61 of 64 bits: packing them saves 4.5% of the upload.
    packed = pack(buffer, params.q, in_place=True)
    return wire.upload_reply(message, packed, length, keys, sealed)


def _recovering(context: Context, runtime: PodRuntime, run: str) -> PodProtocol:
    protocol = load_protocol(
        context, STATE_KEY, lambda: _new_protocol(runtime, context, Q), runtime
    )
    if protocol is None or protocol.run_id != run:
        raise SecureAggregationError(
            f"pod {runtime.name!r} has no key setup for run {run!r} to unmask."
        )
    return protocol


def handle_survivors(message: Message, context: Context, runtime: PodRuntime) -> Message:
    """The consistency step after a dropout: commit to the survivor set and sign it (see
    :meth:`PodProtocol.sign_survivors`)."""
    request = wire.read_unmask_request(message)
    protocol = _recovering(context, runtime, request.run)
    try:
        receipt = protocol.sign_survivors(round=request.seq, survivors=request.survivors)
    finally:
        save_protocol(context, STATE_KEY, protocol, runtime)
    return wire.receipt_reply(message, receipt)


def handle_unmask(message: Message, context: Context, runtime: PodRuntime) -> Message:
    """Release what removes the masks of the exchange just uploaded, once (see
    :meth:`PodProtocol.unmask`): shares for survivors, pair keys for dropped pods.

    No task-kind check: a pod only unmasks an exchange it uploaded, which passed it."""
    request = wire.read_unmask_request(message)
    protocol = _recovering(context, runtime, request.run)
    try:
        answer = protocol.unmask(
            round=request.seq,
            survivors=request.survivors,
            sealed=request.sealed,
            receipts=request.receipts,
        )
    finally:
        save_protocol(context, STATE_KEY, protocol, runtime)
    return wire.unmask_reply(message, answer.shares, answer.pair_keys)
