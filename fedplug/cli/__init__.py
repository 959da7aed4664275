"""The ``fedplug`` command: ``run`` (Hydra), ``demo``, ``pod``, ``evaluate``, ``plugins``,
``report``."""

from __future__ import annotations

from ._main import main

__all__ = ["main"]
