"""Benchmark-only: ``fedplug pod start`` serving the benchmark's fixed-update pod app.

The process is fedplug's own pod process (``fedplug pod start``: a checked pod, a
``flower-supernode --isolation process`` child, the long-lived executor that acquires
the SuperNode's tasks through its Runtime API). Two things differ, for the benchmark
only, so that its rows compare with the plain ``flower-supernode`` ones on the same apps:
the executor answers with ``_apps.fedplug_client_app()`` (fedplug's real pod handlers,
a fixed update instead of training) rather than the pod's own app, and it accepts the
benchmark's app bundle (whose modules it imports from this directory, never from the
bundle). A real pod never does either.

    python benchmarks/_bench_pod.py POD.yaml --superlink HOST:PORT --insecure
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _apps import fedplug_client_app  # noqa: E402

from fedplug._flower import _pod_executor  # noqa: E402
from fedplug._flower._flower_internals import TaskInput  # noqa: E402
from fedplug.cli._main import main  # noqa: E402


class BenchExecutor(_pod_executor.PodExecutor):
    """fedplug's pod executor with the benchmark's app and bundle (see the module doc)."""

    def __init__(self, pod_file: Path, address: str, secret: bytes, port: int = 0) -> None:
        super().__init__(pod_file, address, secret, port)
        self.app = fedplug_client_app()

    def verdict(self, task: TaskInput) -> str | None:
        return None


if __name__ == "__main__":
    _pod_executor.PodExecutor = BenchExecutor  # type: ignore[misc]
    sys.exit(main(["pod", "start", *sys.argv[1:]]))
