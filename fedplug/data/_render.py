"""A rich table of a schema, for ``fedplug pod check``."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from fedplug.data._columns import Category
from fedplug.data._schema import Schema

_SHOWN_CATEGORIES = 6


def _categories(values: tuple[Category, ...] | None) -> str:
    if values is None:
        return ""
    shown = ", ".join(escape(str(v)) for v in values[:_SHOWN_CATEGORIES])
    more = len(values) - _SHOWN_CATEGORIES
    return f"{len(values)}: {shown}" + (f", ... (+{more})" if more > 0 else "")


def render_schema_table(schema: Schema) -> Table:
    """One row per column: name, stype, dtype, nullable, categories, description."""
    title = f"schema {escape(repr(schema.name))}" if schema.name else "schema"
    if schema.num_rows is not None:
        title += f" ({schema.num_rows:,} rows)"
    table = Table(title=title, title_justify="left")
    table.add_column("column", style="bold")
    table.add_column("stype")
    table.add_column("dtype")
    table.add_column("nullable")
    table.add_column("categories", overflow="fold")
    table.add_column("description", overflow="fold")
    for name, spec in schema.items():
        table.add_row(
            escape(name),
            spec.stype,
            spec.dtype,
            "yes" if spec.nullable else "no",
            _categories(spec.categories),
            escape(spec.description or ""),
        )
    return table
