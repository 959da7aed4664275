"""An example third-party fedplug model plugin: a federated ridge classifier.

``RidgeClassifier`` is the server half (entry-point group ``fedplug.models``), ``RidgePod``
the pod half (``fedplug.pod_models``), both named ``ridge-classifier``.
"""

from __future__ import annotations

from ._design import CLIP, Design
from ._pod import RidgePod
from ._server import RidgeClassifier

__all__ = ["CLIP", "Design", "RidgeClassifier", "RidgePod"]
