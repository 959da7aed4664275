"""``resolve_pod``: from a pod name or path to the pod's YAML file."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from fedplug._errors import PodConfigError
from fedplug.data._text import did_you_mean, quoted

POD_DIR_ENV = "FEDPLUG_POD_DIR"
_SUFFIXES = (".yaml", ".yml")


def default_pod_dirs() -> list[Path]:
    """``$FEDPLUG_POD_DIR`` (may list several, separated by os.pathsep), then ``./pods``."""
    dirs = [Path(p) for p in os.environ.get(POD_DIR_ENV, "").split(os.pathsep) if p]
    return [*dirs, Path("pods")]


def _pods_in(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    names = []
    for path in sorted(directory.iterdir()):
        # Agreed schema files (*.schema.yaml) live next to the pods but are not pods.
        if path.suffix in _SUFFIXES and not path.stem.endswith(".schema") and path.is_file():
            names.append(path.stem)
    return names


def resolve_pod(identifier: str | Path, search_dirs: Sequence[Path] | None = None) -> Path:
    """The YAML file of a pod given by path or by name (``<name>.yaml`` in ``search_dirs``)."""
    if not isinstance(identifier, (str, Path)) or not str(identifier):
        raise PodConfigError(
            f"a pod is identified by its name or the path of its YAML file, got {identifier!r}"
        )
    path = Path(identifier).expanduser()
    looks_like_path = (
        isinstance(identifier, Path)
        or path.suffix in _SUFFIXES
        or (os.sep in str(identifier) or (os.altsep is not None and os.altsep in str(identifier)))
    )
    if looks_like_path:
        if path.is_file():
            return path
        raise PodConfigError(
            f"pod file '{path}' does not exist; check the path, or run "
            "`fedplug demo census-income` to write the demo pods"
        )
    name = str(identifier)
    dirs = [Path(d) for d in search_dirs] if search_dirs is not None else default_pod_dirs()
    for directory in dirs:
        for suffix in _SUFFIXES:
            candidate = directory / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
    existing = list(dict.fromkeys(p for d in dirs for p in _pods_in(d)))
    searched = ", ".join(f"'{d.absolute()}'" for d in dirs) or "(no directories)"
    raise PodConfigError(
        f"pod {name!r} not found{did_you_mean(name, existing)}: looked for {name}.yaml in "
        f"{searched} (set ${POD_DIR_ENV} to search elsewhere); pods there: {quoted(existing)}. "
        "Run `fedplug demo census-income` to write the demo pods, or pass the path of the "
        "pod's YAML file"
    )
