"""The README's Python examples run as pasted: every ```python block, read at test time.

The blocks run in a fresh directory holding what the README tells a user to make first,
the census demo pods (`fedplug demo census-income`), one after another in one namespace,
as a user pasting them into one Python session would. One change, for speed: `rounds=N`
becomes `rounds=1` (the test checks that the code runs, not how well the model learns).
A block that cannot run there (one that needs a real SuperLink, say) is not a ```python
block: write it as ```text or make it runnable.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fedplug.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """Each ```python block of ``text`` with the line its code starts on."""
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in BLOCK.finditer(text)]


def test_python_blocks_are_found_with_their_lines() -> None:
    text = "intro\n```python\nx = 1\n```\ntext\n```bash\nls\n```\n```python\ny = x\n```\n"
    assert python_blocks(text) == [(3, "x = 1\n"), (10, "y = x\n")]


def test_the_readme_python_blocks_run_as_pasted(tmp_path, monkeypatch) -> None:
    blocks = python_blocks(README.read_text())
    assert blocks, "the README has no ```python block"
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FEDPLUG_POD_DIR", raising=False)  # pod names resolve in ./pods
    assert main(["demo", "census-income"]) == 0
    namespace: dict[str, object] = {"__name__": "__main__"}
    for line, code in blocks:
        fast = re.sub(r"\brounds=\d+", "rounds=1", code)
        try:
            exec(compile(fast, f"README.md, block at line {line}", "exec"), namespace)
        except Exception as exc:  # noqa: BLE001 - reported with the block's place
            pytest.fail(f"README.md, the ```python block at line {line} fails: {exc!r}")
