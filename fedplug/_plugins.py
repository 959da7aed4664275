"""The plugin registry: one entry-point group per plugin kind, loaded lazily.

A plugin is named either by its entry-point name in the group ``fedplug.<kind>`` (how
the project's own plugins register too) or by an import path ``pkg.module:attr`` /
``pkg.module.attr`` (a Hydra ``_target_``). Listing reads only the distributions'
metadata; a plugin's module is imported when the plugin is loaded.

Every loaded plugin must declare the plugin API it was written for in an attribute
``fedplug_plugin_api`` (an int in :data:`SUPPORTED_PLUGIN_APIS` for its kind).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points, packages_distributions, version
from typing import Any

from fedplug._errors import PluginError
from fedplug._validation import did_you_mean

#: The plugin API this fedplug defines (what a new plugin should declare).
PLUGIN_API_VERSION = 2
#: The plugin API versions this fedplug can load, by plugin kind. Version 2 changed the
#: aggregator and model contracts (see :data:`CHANGES`); strategies and datasources
#: written for 1 still load.
SUPPORTED_PLUGIN_APIS: dict[str, frozenset[int]] = {
    "strategies": frozenset({1, 2}),
    "models": frozenset({2}),
    "datasources": frozenset({1, 2}),
    "aggregators": frozenset({2}),
    "pod_models": frozenset({2}),
}
#: What a plugin of a kind written for an older plugin API must change, by (kind, version).
CHANGES = {
    ("models", 1): (
        "in plugin API 2, a model plugin is two halves under one name: its class subclasses "
        "fedplug.plugins.Model (check_params, training_task, set_trained, to_payload, "
        "from_payload, predict, evaluate), and its pod half, a fedplug.plugins.PodModel, is "
        "registered in the entry-point group fedplug.pod_models; see docs/writing-a-plugin.md"
    ),
    ("aggregators", 1): (
        "in plugin API 2, setup(grid, session) returns the run's state instead of storing it "
        "on the aggregator, wrap(inner, session, state, on_round) takes that state and "
        "returns a fedplug.plugins.PodStrategy, and validate() is a method of the base "
        "class; see docs/writing-a-plugin.md"
    ),
}
#: The attribute a plugin declares its plugin API version in.
API_ATTRIBUTE = "fedplug_plugin_api"

KINDS = ("strategies", "models", "datasources", "aggregators", "pod_models")
_SINGULAR = {
    "strategies": "strategy",
    "models": "model",
    "datasources": "datasource",
    "aggregators": "aggregator",
    "pod_models": "pod model",
}


@dataclass(frozen=True)
class PluginInfo:
    """One installed plugin, as its distribution's metadata declares it."""

    kind: str
    name: str
    target: str
    distribution: str | None
    version: str | None

    def origin(self) -> str:
        """``distribution version``, for messages."""
        if self.distribution is None:
            return "an unknown distribution"
        return f"distribution {self.distribution!r} {self.version or '(version unknown)'}"


def group(kind: str) -> str:
    """The entry-point group of a plugin kind, e.g. ``fedplug.strategies``."""
    if kind not in KINDS:
        raise PluginError(f"unknown plugin kind {kind!r}; the plugin kinds are {list(KINDS)}.")
    return f"fedplug.{kind}"


def _info(kind: str, ep: EntryPoint) -> PluginInfo:
    dist = getattr(ep, "dist", None)
    name = dist.metadata["Name"] if dist is not None else None
    return PluginInfo(
        kind=kind,
        name=ep.name,
        target=ep.value,
        distribution=name,
        version=dist.version if dist is not None else None,
    )


def _entries(kind: str) -> dict[str, list[tuple[PluginInfo, EntryPoint]]]:
    """Entry points of one kind by name; a name may be claimed by several distributions."""
    found: dict[str, list[tuple[PluginInfo, EntryPoint]]] = {}
    seen: set[tuple[str, str | None]] = set()
    for ep in entry_points(group=group(kind)):
        info = _info(kind, ep)
        # The same distribution visible twice on sys.path is one claim, not a conflict.
        key = (ep.name, info.distribution)
        if key in seen:
            continue
        seen.add(key)
        found.setdefault(ep.name, []).append((info, ep))
    return found


def list_plugins(kind: str | None = None) -> list[PluginInfo]:
    """Every installed plugin (of one kind, or of all kinds), without importing any."""
    if kind is not None:
        group(kind)  # an unknown kind is an error
    kinds: Iterable[str] = KINDS if kind is None else (kind,)
    records: list[PluginInfo] = []
    for k in kinds:
        for claims in _entries(k).values():
            records.extend(info for info, _ in claims)
    return sorted(records, key=lambda r: (KINDS.index(r.kind), r.name, r.distribution or ""))


def available(kind: str) -> list[str]:
    """The names of the installed plugins of one kind."""
    return sorted(_entries(kind))


def _is_import_path(name: str) -> bool:
    return ":" in name or "." in name


def _split_dotted(path: str) -> tuple[str, str]:
    """``pkg.mod.Class.attr`` -> (``pkg.mod``, ``Class.attr``): the longest importable module."""
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:i])
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module.startswith(exc.name):
                continue  # that module does not exist: try a shorter prefix
            break  # it exists but imports something missing: report that below
        except Exception:  # noqa: BLE001 - reported when imported for real below
            break
        return module, ".".join(parts[i:])
    return path.rpartition(".")[0], path.rpartition(".")[2]


def _import(kind: str, path: str) -> tuple[Any, PluginInfo]:
    if ":" in path:
        module, _, attr = path.partition(":")
    else:
        module, attr = _split_dotted(path)
    what = _SINGULAR[kind]
    if not module or not attr:
        raise PluginError(
            f"{what} {path!r} is not an import path; write it as 'package.module:attribute' "
            f"or 'package.module.attribute', or use a plugin name: {available(kind)}."
        )
    try:
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise PluginError(
            f"cannot import {what} {path!r}: {exc}. Check the import path (is its package "
            f"installed?), or use an installed {what} plugin name: {available(kind)}."
        ) from exc
    except Exception as exc:  # noqa: BLE001 - a third party's module may fail any way
        raise PluginError(
            f"{what} {path!r}: importing {module!r} failed: {type(exc).__name__}: {exc}. "
            "Fix or reinstall the package that provides it."
        ) from exc
    dists = packages_distributions().get(module.split(".")[0]) or []
    dist = dists[0] if dists else None
    try:
        dist_version = version(dist) if dist else None
    except Exception:  # noqa: BLE001 - metadata of a broken install: the version is optional
        dist_version = None
    return obj, PluginInfo(kind, path, f"{module}:{attr}", dist, dist_version)


def check_api(obj: Any, info: PluginInfo) -> None:
    """Refuse a plugin that does not declare a supported plugin API version."""
    what = _SINGULAR[info.kind]
    declared = getattr(obj, API_ATTRIBUTE, None)
    supported = sorted(SUPPORTED_PLUGIN_APIS[info.kind])
    where = f"{what} plugin {info.name!r} ({info.target}, from {info.origin()})"
    if declared is None:
        raise PluginError(
            f"{where} does not declare which fedplug plugin API it was written for; fedplug "
            f"supports plugin API version(s) {supported}. Its author must set "
            f"`{API_ATTRIBUTE} = {PLUGIN_API_VERSION}` on it."
        )
    if isinstance(declared, bool) or not isinstance(declared, int):
        raise PluginError(
            f"{where} declares {API_ATTRIBUTE}={declared!r}, which is not an integer; fedplug "
            f"supports plugin API version(s) {supported}. Its author must set "
            f"`{API_ATTRIBUTE} = {PLUGIN_API_VERSION}`."
        )
    if declared not in SUPPORTED_PLUGIN_APIS[info.kind]:
        change = CHANGES.get((info.kind, declared))
        why = f" ({change})" if change else ""
        raise PluginError(
            f"{where} was written for fedplug plugin API version {declared}, but this fedplug "
            f"supports {what} plugin API version(s) {supported}{why}. Install a release of "
            f"{info.distribution or 'the plugin'} built for plugin API {PLUGIN_API_VERSION}, "
            "or a fedplug release that supports its version."
        )
    if not callable(obj):
        raise PluginError(
            f"{where} is a {type(obj).__name__}, not a class or factory; point its entry "
            "point at the plugin's class or factory function."
        )


def resolve(kind: str, name: str) -> tuple[Any, PluginInfo]:
    """Load and check a plugin; return it with where it came from."""
    group(kind)  # an unknown kind is an error
    what = _SINGULAR[kind]
    if not isinstance(name, str) or not name:
        raise PluginError(
            f"a {what} must be named by a plugin name or an import path, got {name!r}; "
            f"installed {kind}: {available(kind)}."
        )
    claims = _entries(kind).get(name)
    if claims:
        if len(claims) > 1:
            origins = "; ".join(f"{info.target} from {info.origin()}" for info, _ in claims)
            raise PluginError(
                f"{what} plugin name {name!r} is claimed by several distributions: {origins}. "
                "Uninstall all but one of them, or name the plugin by its import path "
                "(e.g. _target_: package.module:attribute)."
            )
        info, ep = claims[0]
        try:
            obj = ep.load()
        except Exception as exc:  # noqa: BLE001 - a third party's import may fail any way
            raise PluginError(
                f"{what} plugin {name!r} ({info.target}, from {info.origin()}) failed to "
                f"import: {type(exc).__name__}: {exc}. Reinstall {info.distribution or 'it'} "
                "or fix its entry point."
            ) from exc
    elif _is_import_path(name):
        obj, info = _import(kind, name)
    else:
        names = available(kind)
        hint = did_you_mean(name, names)
        raise PluginError(
            f"unknown {what} {name!r}{hint}; installed {kind}: {names}. Use one of those "
            f"names, install the package that provides {name!r} (run `fedplug plugins` to see "
            "what is installed), or give an import path package.module:attribute."
        )
    check_api(obj, info)
    return obj, info


def load_plugin(kind: str, name: str) -> Any:
    """Load a plugin by entry-point name, or by an import path (``pkg.mod:attr``)."""
    return resolve(kind, name)[0]


def load_pod_model(name: str, accepted: Iterable[str], pod: str) -> Any:
    """The pod half of model plugin ``name``, as a pod loads it for a task the server sent.

    The server names the model as data: only an installed entry-point name that the pod's
    policy accepts loads, never an import path (which would let a server pick any code on
    the pod's machine to run).
    """
    from fedplug._errors import PolicyRefusal

    accepted = list(accepted)
    if not isinstance(name, str) or name not in accepted:
        raise PolicyRefusal(
            f"pod {pod!r} refuses model plugin {name!r}: its policy.accepted_models is "
            f"{accepted}. Its owner adds {name!r} to policy.accepted_models in the pod YAML "
            "(after installing the plugin), or the modeller picks an accepted model.",
            reason="model-not-accepted",
            pods=[pod],
        )
    if name not in _entries("pod_models"):
        raise PluginError(
            f"pod {pod!r} accepts model plugin {name!r} but no installed distribution provides "
            f"its pod half (entry point {name!r} in group fedplug.pod_models); installed: "
            f"{available('pod_models')}. Install the model plugin's package on the pod's machine."
        )
    return load_plugin("pod_models", name)
