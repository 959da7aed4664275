"""Tables that lose nothing: folded in a terminal, plain full-width text in a pipe or file.

Rich cuts a cell that does not fit its column to ``aggregat…``, and a pipe counts as an
80-column terminal; a plugin's import path or a sweep's overrides must stay readable
(and greppable) in both.
"""

from __future__ import annotations

from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text


def folded(table: Table) -> Table:
    """``table`` with every column wrapping a long value onto more lines instead of cutting it."""
    for column in table.columns:
        column.overflow = "fold"
        column.no_wrap = False
    return table


def _plain(cell: RenderableType) -> str:
    if isinstance(cell, Text):
        return cell.plain
    if isinstance(cell, str):
        return Text.from_markup(cell).plain
    return str(cell)


def plain_text(table: Table) -> str:
    """The table as lines of text, each row on one line, columns padded, nothing cut."""
    headers = [_plain(c.header) for c in table.columns]
    cells = [[_plain(cell) for cell in column.cells] for column in table.columns]
    rows = list(zip(*cells, strict=True)) if cells else []
    widths = [
        max([len(h), *(len(v) for v in column)]) for h, column in zip(headers, cells, strict=True)
    ]

    def line(values: list[str] | tuple[str, ...]) -> str:
        parts = [
            v.rjust(w) if column.justify == "right" else v.ljust(w)
            for v, w, column in zip(values, widths, table.columns, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = []
    if table.title:
        out.append(_plain(table.title))
    out += [line(headers), line(["-" * w for w in widths])]
    out += [line(row) for row in rows]
    return "\n".join(out)


def print_table(console: Console, table: Table) -> None:
    """Print ``table`` folded in a terminal, as :func:`plain_text` otherwise."""
    if console.is_terminal:
        console.print(folded(table))
    else:
        console.out(plain_text(table) + "\n", highlight=False)  # a blank line after each
