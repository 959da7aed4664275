"""What a run knows about its pods, shared by the strategies that drive it."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from flwr.app import Message
from flwr.serverapp import Grid

from fedplug._errors import PolicyRefusal, TrainingError

from . import _wire as wire


@dataclass
class PodSession:
    """The pods of one run and the SuperNodes serving them."""

    pods: dict[int, str]  # node id -> pod name
    round_timeout: float = 300.0

    @property
    def node_ids(self) -> list[int]:
        return list(self.pods)

    @property
    def pod_names(self) -> list[str]:
        return [self.pods[n] for n in self.pods]

    def names(self, node_ids: Iterable[int]) -> list[str]:
        return [self.pods.get(n, f"node {n}") for n in node_ids]


class GridView(Grid):
    """A Grid that delegates to another, showing only ``nodes`` when given.

    The base of fedplug's grid adapters: subclasses change one behaviour (which nodes a
    strategy sees, how replies are polled) and inherit the rest.
    """

    def __init__(self, grid: Grid, nodes: Sequence[int] | None = None) -> None:
        self._grid = grid
        self._nodes = list(nodes) if nodes is not None else None

    def set_run(self, run) -> None:  # noqa: ANN001
        self._grid.set_run(run)

    @property
    def run(self):  # noqa: ANN201
        return self._grid.run

    def create_message(self, *args, **kwargs) -> Message:  # noqa: ANN002, ANN003
        return self._grid.create_message(*args, **kwargs)

    def get_node_ids(self) -> Iterable[int]:
        return list(self._nodes) if self._nodes is not None else self._grid.get_node_ids()

    def get_nodes(self):  # noqa: ANN201
        nodes = self._grid.get_nodes()
        return nodes if self._nodes is None else [n for n in nodes if n.node_id in self._nodes]

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self._grid.pull_messages(message_ids)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return self._grid.send_and_receive(messages, timeout=timeout)


class PodGrid(GridView):
    """A view of a Grid restricted to a run's pods, so inner strategies sample only them.

    Flower's strategies wait for ``min_available_nodes`` without a timeout; a fixed view
    of nodes already seen keeps that wait from ever starting.
    """

    def __init__(self, grid: Grid, session: PodSession) -> None:
        super().__init__(grid, session.node_ids)


def split_replies(
    session: PodSession, replies: Iterable[Message], what: str, sent: Sequence[Message] = ()
) -> tuple[list[Message], dict[str, str]]:
    """Separate good replies from failures; raise at once on a policy refusal.

    A refusal is the pod owner's decision, so the run stops and the modeller sees the
    pod's own words rather than a silently smaller aggregate. Error replies that the
    SuperLink makes itself (a node gone, say) come from node 0; ``sent`` names their pod.
    """
    addressed = {m.metadata.message_id: m.metadata.dst_node_id for m in sent}
    good: list[Message] = []
    failed: dict[str, str] = {}
    refusals: list[tuple[str, str, list[str]]] = []
    for reply in replies:
        node = reply.metadata.src_node_id
        if node not in session.pods:
            node = addressed.get(reply.metadata.reply_to_message_id, node)
        pod = session.pods.get(node, f"node {node}")
        if not reply.has_error():
            good.append(reply)
            continue
        if reply.error.code == wire.POLICY_REFUSAL:
            try:
                payload = json.loads(reply.error.reason or "{}")
            except json.JSONDecodeError:
                payload = {"message": reply.error.reason, "reason": "refused", "pods": [pod]}
            # The refusing pod is named too, so the modeller sees both sides of a refusal.
            pods = [pod, *payload.get("pods", [])]
            refusals.append((payload.get("message", ""), payload.get("reason", ""), pods))
        else:
            failed[pod] = failure_text(str(reply.error.reason))
    if refusals:
        pods = sorted({p for _, _, ps in refusals for p in ps})
        text = "; ".join(m for m, _, _ in refusals)
        raise PolicyRefusal(f"{what} was refused: {text}", reason=refusals[0][1], pods=pods)
    return good, failed


def failure_text(reason: str) -> str:
    """A pod's failure message (JSON from fedplug pods; plain text from Flower itself)."""
    try:
        payload = json.loads(reason)
    except json.JSONDecodeError:
        return reason
    return str(payload.get("message", reason)) if isinstance(payload, dict) else reason


def missing_pods(
    session: PodSession, sent: Sequence[Message], replies: Sequence[Message]
) -> list[str]:
    answered = {r.metadata.src_node_id for r in replies}
    return [
        session.pods.get(m.metadata.dst_node_id, "?")
        for m in sent
        if m.metadata.dst_node_id not in answered
    ]


def raise_if_all_failed(
    what: str, failed: dict[str, str], missing: Sequence[str], good: int
) -> None:
    if good:
        return
    parts = [f"pod {p!r}: {reason}" for p, reason in failed.items()]
    parts += [f"pod {p!r} did not answer in time" for p in missing]
    raise TrainingError(f"{what} failed on every pod: " + "; ".join(parts or ["no pod answered"]))


def refuse_by_policy(
    require_secure: Mapping[str, bool],
    accepted_models: Mapping[str, Sequence[str] | None],
    secure: bool,
    model: str,
) -> None:
    """The pods' policy refusals a run meets before any pod computes: plaintext asked of a
    pod that requires secure aggregation, or a model plugin a pod does not accept. From
    the pods' published policies (a run), or their pod files (a local simulation)."""
    needing = [p for p, required in require_secure.items() if required]
    if needing and not secure:
        raise PolicyRefusal(
            f"pod(s) {needing} require secure aggregation; rerun with aggregator=secure "
            "(Hydra) or aggregator=SecureAggregator() (Python).",
            reason="secure-aggregation-required",
            pods=needing,
        )
    refusing = sorted(
        pod for pod, models in accepted_models.items() if models is not None and model not in models
    )
    if refusing:
        accepted = {p: list(accepted_models[p] or ()) for p in refusing}
        raise PolicyRefusal(
            f"pod(s) {refusing} do not accept model plugin {model!r}: their "
            f"policy.accepted_models is {accepted}. Pick a model every pod accepts, or ask "
            f"the pods' owners to install the plugin and add {model!r} to "
            "policy.accepted_models in the pod YAML.",
            reason="model-not-accepted",
            pods=refusing,
        )
