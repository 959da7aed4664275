"""A pod's encoded update, kept for the one re-masking redo a round may need.

Kept in this process and spilled to a private file on the pod's own machine: a real
SuperNode runs each message in a fresh ClientApp process, and carrying the vector in
Flower's node state would ship it (8 bytes a parameter) with every message.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

_MEMORY: dict[str, tuple[str, np.ndarray, list[str]]] = {}


def _directory() -> Path:
    root = os.environ.get("FEDPLUG_CACHE_DIR") or os.path.join(
        tempfile.gettempdir(), f"fedplug-{os.getuid()}"
    )
    path = Path(root) / "updates"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def _slot(pod: str, run: str) -> str:
    return hashlib.sha256(f"{pod}\0{run}".encode()).hexdigest()[:24]


def remember(pod: str, run: str, seq: int, vector: np.ndarray, keys: list[str]) -> None:
    """Keep this exchange's encoded vector; it replaces the pod's previous one."""
    slot = _slot(pod, run)
    tag = f"{seq}:{json.dumps(keys)}"
    _MEMORY[slot] = (tag, vector, keys)
    target = _directory() / f"{slot}.npy"
    partial = target.with_suffix(".tmp")
    with open(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
        np.save(out, vector)
    partial.replace(target)
    (_directory() / f"{slot}.json").write_text(json.dumps({"seq": seq, "keys": keys}))


def recall(pod: str, run: str, seq: int) -> tuple[np.ndarray, list[str]] | None:
    """The vector kept for exchange ``seq``, or None if this pod holds none."""
    slot = _slot(pod, run)
    cached = _MEMORY.get(slot)
    if cached is not None and cached[0].split(":", 1)[0] == str(seq):
        return cached[1], cached[2]
    meta_file = _directory() / f"{slot}.json"
    if not meta_file.exists():
        return None
    meta = json.loads(meta_file.read_text())
    if int(meta["seq"]) != seq:
        return None
    return np.load(_directory() / f"{slot}.npy"), list(meta["keys"])
