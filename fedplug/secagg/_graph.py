"""Which peers a pod masks with: every other pod, or its neighbours in a Harary graph.

With ``"all"`` (the default) every pair of pods shares a mask: O(K * D) work per pod, and
a pod's update stays hidden unless the server colludes with ``threshold`` pods. With
``"harary"`` (Bell et al., CCS 2020) each pod masks with ``k = 2 * ceil(log2 K)`` peers
only (O(log K * D) work), its neighbours in the Harary graph H(k, K) over the roster in
an order every pod derives from the session id: a hash of every pod's fresh nonce, so the
server cannot choose it. A pod's self-mask shares go to its neighbours, and ``threshold``
counts among them. What the server learns still needs the collusion of ``threshold`` of
a pod's neighbours; since the order is random, a colluding fraction of the pods holds
that many of one pod's neighbours only with a probability that falls exponentially in k.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

from fedplug._errors import SecureAggregationError

GRAPHS = ("all", "harary")
_ORDER_DOMAIN = b"fedplug/secagg/harary-order/v1"


def harary_degree(n: int) -> int:
    """The degree of a pod in the Harary graph over ``n`` pods: even, 2 * ceil(log2 n)."""
    return min(n - 1, 2 * max(1, math.ceil(math.log2(max(n, 2)))))


def neighbours(graph: str, roster: Iterable[str], session: str) -> dict[str, frozenset[str]]:
    """Each roster pod's masking peers under ``graph`` (symmetric, never the pod itself)."""
    pods = sorted(set(roster))
    if graph == "all":
        everyone = frozenset(pods)
        return {p: everyone - {p} for p in pods}
    if graph != "harary":
        raise SecureAggregationError(f"graph {graph!r} is not one of {list(GRAPHS)}")
    n = len(pods)
    k = harary_degree(n)
    if k >= n - 1:
        return neighbours("all", pods, session)

    def place(pod: str) -> bytes:
        return hashlib.sha256(_ORDER_DOMAIN + session.encode() + b"\0" + pod.encode()).digest()

    order = sorted(pods, key=place)
    half = k // 2
    return {
        order[i]: frozenset(order[(i + step) % n] for j in range(1, half + 1) for step in (j, -j))
        for i in range(n)
    }
