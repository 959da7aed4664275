"""A pod's encoded update, kept for the one re-masking redo a round may need.

Kept in a private file on the pod's own machine, not in memory: a real SuperNode runs each
message in a fresh ClientApp process, the simulation engine may run a pod's next message in
another worker, and carrying the vector in Flower's node state would ship it (8 bytes a
parameter) with every message. The caller may overwrite its array once ``remember`` returns
(the pod masks it in place); a redo, which is rare, reads the file back.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np


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
    words = np.ascontiguousarray(vector, dtype="<u8").reshape(-1)
    # Two files per slot, taken in turn and overwritten in place: the previous exchange's
    # file stays intact until the metadata points at the new one, and rewriting allocated
    # blocks avoids the unlink (and, on discard-mounted disks, the TRIM) that replacing a
    # multi-megabyte file each round costs.
    target = _directory() / f"{slot}.{seq % 2}.bin"
    with open(os.open(target, os.O_RDWR | os.O_CREAT, 0o600), "r+b", buffering=0) as out:
        out.write(memoryview(words).cast("B"))
    meta = {"seq": seq, "keys": keys, "file": target.name, "length": int(words.size)}
    final = _directory() / f"{slot}.json"
    partial = final.with_suffix(".tmp")
    partial.write_text(json.dumps(meta))
    partial.replace(final)


def recall(pod: str, run: str, seq: int) -> tuple[np.ndarray, list[str]] | None:
    """The vector kept for exchange ``seq``, or None if this pod holds none."""
    slot = _slot(pod, run)
    meta_file = _directory() / f"{slot}.json"
    if not meta_file.exists():
        return None
    meta = json.loads(meta_file.read_text())
    if int(meta["seq"]) != seq:
        return None
    words = np.fromfile(_directory() / meta["file"], dtype="<u8", count=int(meta["length"]))
    return words.astype(np.uint64, copy=False), list(meta["keys"])
