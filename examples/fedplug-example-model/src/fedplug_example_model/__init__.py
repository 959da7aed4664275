"""An example third-party fedplug model plugin: a federated ridge classifier.

``RidgeClassifier`` is the server half (entry-point group ``fedplug.models``), ``RidgePod``
the pod half (``fedplug.pod_models``), both named ``ridge-classifier``.

The names load on first use: Hydra imports this package to find ``conf/`` on every
``fedplug run``, which must not pay for torch unless the model is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "CLIP": "._design",
    "Design": "._design",
    "RidgePod": "._pod",
    "RidgeClassifier": "._server",
}

__all__ = ["CLIP", "Design", "RidgeClassifier", "RidgePod"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name], __name__), name)


if TYPE_CHECKING:
    from ._design import CLIP, Design
    from ._pod import RidgePod
    from ._server import RidgeClassifier
