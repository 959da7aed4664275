"""Benchmark-only Flower App components for ``superlink_round.py`` (a real SuperLink).

Wraps the apps of ``_apps.py``: the ServerApp reads ``mode``, ``k``, ``d``, ``rounds``
and ``out`` from the run config, runs the same timed loop as benchmark 1 and writes the
:class:`_apps.Outcome` as JSON to ``out``. ``fedplug_client`` serves plain and secure
runs (fedplug's real pod handlers, fixed update); ``secaggplus_client`` serves SecAgg+.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from _apps import (
    Outcome,
    fedplug_client_app,
    fedplug_server_app,
    secaggplus_client_app,
    secaggplus_server_app,
)
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

server_app = ServerApp()


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    mode, k, d, rounds = str(cfg["mode"]), int(cfg["k"]), int(cfg["d"]), int(cfg["rounds"])
    out = Outcome()
    if mode == "secaggplus":
        from fedplug._flower.app import PollingGrid

        # The same server grid and polling as fedplug's rows: fair to SecAgg+.
        inner, grid = secaggplus_server_app(k, d, rounds, out), PollingGrid(grid)
    else:
        inner = fedplug_server_app(mode, k, d, rounds, out, deployed=True)
    start = time.perf_counter()
    inner._main(grid, context)  # noqa: SLF001 - the wrapped app's main, in this process
    record = {**asdict(out), "serverapp_s": time.perf_counter() - start}
    Path(str(cfg["out"])).write_text(json.dumps(record))


fedplug_client = fedplug_client_app()
secaggplus_client = secaggplus_client_app(0)
