"""``SchemaWarning``: a schema was inferred, but one of its columns is probably mistyped."""

from __future__ import annotations

import re

__all__ = ["SchemaWarning", "yaml_key"]


class SchemaWarning(UserWarning):
    """An inferred column type that is valid but probably not what the data means.

    Raised (as a warning, never an error) by ``Schema.infer`` and so by every pod whose
    schema is inferred; ``fedplug pod check`` prints it. Each message names the column and
    gives the ``force_stypes`` line that settles the type, which also silences it.
    """


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def yaml_key(name: str) -> str:
    """``name`` as a YAML flow-mapping key: bare when it can be, else double-quoted."""
    if _PLAIN_KEY.match(name) and name.lower() not in ("true", "false", "yes", "no", "null"):
        return name
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
