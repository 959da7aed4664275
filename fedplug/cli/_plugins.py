"""``fedplug plugins``: the installed plugins by kind, and where each came from."""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.table import Table

from ._tables import print_table

console = Console()


def plugins() -> int:
    """Print one table per plugin kind (name, target, distribution, version)."""
    from fedplug._plugins import KINDS, SUPPORTED_PLUGIN_APIS, group, list_plugins

    records = list_plugins()
    for kind in KINDS:
        mine = [r for r in records if r.kind == kind]
        claims = Counter(r.name for r in mine)
        table = Table(title=f"{kind} (entry-point group {group(kind)})", title_justify="left")
        for column in ("name", "target", "distribution", "version"):
            table.add_column(column)
        for record in mine:
            name = record.name
            if claims[name] > 1:
                name += " [red](claimed twice)[/]"
            table.add_row(name, record.target, record.distribution or "?", record.version or "?")
        if not mine:
            table.add_row("[dim](none installed)[/]", "", "", "")
        print_table(console, table)
    counts = Counter((r.kind, r.name) for r in records)
    conflicts = sorted(f"{_singular(k)} {n!r}" for (k, n), c in counts.items() if c > 1)
    if conflicts:
        console.print(
            f"[bold red]warning:[/] {', '.join(conflicts)}: claimed by several "
            "distributions; loading them fails until all but one are uninstalled.",
            highlight=False,
        )
    console.print(
        "plugin API version(s) supported: "
        + "; ".join(f"{k} {sorted(v)}" for k, v in SUPPORTED_PLUGIN_APIS.items())
        + ". "
        "Select a plugin by name (strategy.name=NAME) or by import path (_target_).",
        highlight=False,
    )
    return 0


def _singular(kind: str) -> str:
    return {"strategies": "strategy"}.get(kind, kind.rstrip("s"))
