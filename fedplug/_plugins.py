"""The plugin registry: one entry-point group per plugin kind, loaded lazily."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from fedplug._errors import PluginError

KINDS = ("strategies", "models", "datasources", "aggregators")


def _group(kind: str) -> str:
    if kind not in KINDS:
        raise PluginError(f"unknown plugin kind {kind!r}; kinds are {list(KINDS)}.")
    return f"fedplug.{kind}"


def available(kind: str) -> list[str]:
    return sorted({ep.name for ep in entry_points(group=_group(kind))})


def load_plugin(kind: str, name: str) -> Any:
    """Load a plugin by entry-point name, or by an import path ``pkg.module:attr``/``pkg.module.attr``."""
    group = _group(kind)
    matches = [ep for ep in entry_points(group=group) if ep.name == name]
    if matches:
        return matches[0].load()
    if "." in name or ":" in name:
        module, _, attr = name.replace(":", ".").rpartition(".")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise PluginError(f"cannot import {kind[:-1]} {name!r}: {exc}.") from exc
    raise PluginError(
        f"unknown {kind[:-1].replace('ie', 'y')} {name!r}; available: {available(kind)}. "
        f"Install the plugin that provides it, or use one of those names."
    )
