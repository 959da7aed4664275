"""``fedplug demo census-income``: write the tutorial's two pods."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console

console = Console(soft_wrap=True)  # paths stay whole, to be copied


def demo(name: str, directory: str | None) -> int:
    from fedplug.data._census import write_census_demo_files

    target = Path(directory or os.environ.get("FEDPLUG_POD_DIR") or "pods")
    done = write_census_demo_files(target)
    # An existing file may hold its user's edits: it is kept, and the user is told which.
    if done.written:
        console.print(f"wrote the {name} demo to {target}/:", highlight=False)
        for path in done.written:
            console.print(f"  {path}", highlight=False)
    if done.kept:
        console.print(
            f"kept {len(done.kept)} file(s) already in {target}/, unchanged (delete one to have "
            "it written afresh):",
            highlight=False,
        )
        for path in done.kept:
            console.print(f"  {path}", highlight=False)
    console.print("train on the demo pods with: fedplug run", highlight=False)
    return 0
