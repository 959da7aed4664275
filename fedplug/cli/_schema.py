"""``fedplug schema agree``: one schema file for pods that inferred their own, from metadata."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from fedplug.data import Schema

err = Console(stderr=True)


@contextmanager
def schema_warnings_printed(to: Console) -> Iterator[None]:
    """Print each ``SchemaWarning`` raised inside as a ``warning:`` line on ``to``.

    Other warnings pass on unchanged. The lines are printed even when the block fails, since
    a warning may explain the failure (a numeric column read as strings, say).
    """
    from fedplug.data import SchemaWarning

    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SchemaWarning)
            yield
    finally:
        for item in caught:
            if issubclass(item.category, SchemaWarning):
                # soft_wrap: the force_stypes line must stay whole, to be copied.
                to.print(
                    f"[bold yellow]warning:[/] {escape(str(item.message))}",
                    highlight=False,
                    soft_wrap=True,
                )
            else:
                warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)


def _widened(agreed: Schema, schemas: Mapping[str, Schema]) -> list[str]:
    """One line per categorical column whose agreed vocabulary some pod does not hold."""
    lines = []
    for column in agreed.categorical():
        values = set(agreed[column].categories or ())
        lacking = {
            pod: len(values - set(schema[column].categories or ()))
            for pod, schema in schemas.items()
        }
        short = {pod: n for pod, n in lacking.items() if n}
        if short:
            held = ", ".join(f"{pod!r} lacks {n}" for pod, n in short.items())
            lines.append(f"  {column!r}: {len(values)} values ({held})")
    return lines


def schema_agree(
    pods: Sequence[str],
    output: str | None,
    vocabularies: str = "union",
    pod_dir: str | None = None,
) -> int:
    """Combine the pods' published schemas; write the agreed schema to ``output`` (or print it).

    Each pod's schema is read pod by pod (its schema file, or the schema it infers from
    its own data); only those schemas are combined.
    """
    from fedplug.data import combine_pod_schemas, published_schemas
    from fedplug.data._yaml import dump_yaml

    search = [Path(pod_dir)] if pod_dir else None
    with schema_warnings_printed(err):
        schemas = published_schemas(list(pods), search)
    agreed = combine_pod_schemas(schemas, vocabularies=vocabularies)
    if output is None:
        sys.stdout.write(dump_yaml(agreed.to_dict()))  # plain text: no markup, no wrapping
        return 0
    path = agreed.to_yaml(Path(output).expanduser())
    err.print(
        f"[bold green]agreed[/]: {len(agreed)} columns from pods {escape(str(list(schemas)))} "
        f"(vocabularies: {vocabularies}); wrote {escape(str(path))}",
        highlight=False,
        soft_wrap=True,
    )
    widened = _widened(agreed, schemas)
    if widened:
        err.print(
            "vocabularies combined (a pod may hold a subset of the agreed one):\n"
            + escape("\n".join(widened)),
            highlight=False,
            soft_wrap=True,
        )
    err.print(
        f"each pod adopts it with `schema: {{file: {escape(path.name)}}}` in its YAML (a "
        "path relative to the pod file; copy the file next to each pod), in place of "
        "`schema: {infer: ...}`",
        highlight=False,
        soft_wrap=True,
    )
    return 0
