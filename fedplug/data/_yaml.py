"""Reading and writing the human-edited YAML files of the data layer (schemas, pods)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fedplug._errors import FedplugError


def read_yaml(path: Path, *, what: str, error: type[FedplugError], fix: str) -> Any:
    """Parse a YAML file, turning every I/O or syntax problem into ``error``.

    ``what`` names the file's role ("schema file", "pod file") and ``fix`` says what the
    user should do when the file is missing.
    """
    if not path.exists():
        raise error(f"{what} '{path}' does not exist; {fix}")
    if not path.is_file():
        raise error(f"{what} '{path}' is not a file; {fix}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(
            f"{what} '{path}' cannot be read ({exc}); make it a readable UTF-8 text file"
        ) from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(
            f"{what} '{path}' is not valid YAML{where}: {problem}; fix the YAML syntax "
            "(indentation, colons after keys, quotes around values with special characters)"
        ) from exc


class _FlowListDumper(yaml.SafeDumper):
    """Writes lists of scalars on one line so vocabularies stay readable."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flow = all(not isinstance(v, (list, dict)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_FlowListDumper.add_representer(list, _represent_list)


def dump_yaml(data: Any) -> str:
    """Readable YAML: keys in insertion order, short lists inline, wrapped at 100 columns."""
    return yaml.dump(
        data,
        Dumper=_FlowListDumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=88,
    )


def write_text(path: Path, text: str, *, what: str, error: type[FedplugError]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise error(
            f"cannot write {what} '{path}' ({exc.strerror or exc}); choose a writable location"
        ) from exc
