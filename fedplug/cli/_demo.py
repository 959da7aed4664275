"""``fedplug demo census-income``: write the tutorial's two pods."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console

console = Console()


def demo(name: str, directory: str | None) -> int:
    from fedplug.data import write_census_demo

    target = Path(directory or os.environ.get("FEDPLUG_POD_DIR") or "pods")
    paths = write_census_demo(target)
    console.print(f"wrote the {name} pods to {target}/:")
    for path in paths:
        console.print(f"  {path}")
    console.print("train on them with: fedplug run")
    return 0
