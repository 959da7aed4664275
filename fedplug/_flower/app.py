"""The Flower App behind ``flwr run . <connection>``: fedplug's ServerApp and pod ClientApp.

The ServerApp composes the same Hydra config as ``fedplug run`` from the run config's
``overrides`` string, asks the connected SuperNodes for the pods the config names, builds
the task from the schemas those pods publish, trains, and writes ``model.pt``,
``history.json``, ``config.yaml`` and ``metrics.png`` to the run config's ``output-dir``.

This module is a front end that happens to live next to the adapters (Flower loads it by
import path from ``pyproject.toml``); it imports the front-end layer and the server loops
lazily, inside the ServerApp, so importing it stays cheap.

``client_app`` is what Flower's own ``flwr-clientapp`` loads on a SuperNode started with
plain ``flower-supernode``: such a SuperNode runs whatever code an app bundle names, so a
pod there refuses every message. Pods run with ``fedplug pod start``, whose executor never
loads a bundle's component (see ``_pod_executor``).
"""

from __future__ import annotations

import logging
import shlex
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from fedplug._errors import ConfigError, FedplugError, PodConfigError

from ._session import GridView

if TYPE_CHECKING:
    from ._wire import PodInfo

logger = logging.getLogger("fedplug.server")

#: Run-config keys (``[tool.flwr.app.config]`` in pyproject.toml).
OVERRIDES_KEY = "overrides"
OUTPUT_DIR_KEY = "output-dir"
DEFAULT_OUTPUT_ROOT = Path("outputs") / "flwr-run"
#: Seconds between polls for replies (Flower's own grid waits 3 s between polls).
POLL_INTERVAL = 0.25


class PollingGrid(GridView):
    """A SuperLink grid that polls for replies every :data:`POLL_INTERVAL` seconds.

    A run is a chain of short exchanges (schema query, key setup, statistics, a train
    and an evaluate exchange per round); waiting up to 3 s after each one's last reply
    adds seconds to every exchange and nothing else. Given ``nodes``, it shows only
    those SuperNodes (the run's pods), so no exchange ever waits on another node.
    """

    def __init__(
        self, grid: Grid, interval: float = POLL_INTERVAL, nodes: Sequence[int] | None = None
    ) -> None:
        super().__init__(grid, nodes)
        self._interval = interval

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        pending = set(self.push_messages(messages))
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        while pending:
            got = list(self.pull_messages(pending))
            replies.extend(got)
            pending.difference_update(m.metadata.reply_to_message_id for m in got)
            if not pending or (deadline is not None and time.monotonic() >= deadline):
                break
            time.sleep(self._interval)
        return replies


@contextmanager
def console_logging() -> Iterator[None]:
    """fedplug's INFO logs on stderr for the run, which Flower streams to ``flwr log``."""
    root = logging.getLogger("fedplug")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)-8s fedplug: %(message)s"))
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _config_dir(grid: Grid) -> Path:
    """The FAB's ``conf/`` (the modeller's configs travel with ``flwr run``), else fedplug's."""
    from fedplug._task_builder import conf_dir

    from ._flower_internals import fab_project_dir

    project = fab_project_dir(grid.run)
    shipped = project / "conf" if project is not None else None
    if shipped is not None and (shipped / "config.yaml").is_file():
        return shipped
    return conf_dir()


def output_dir(run_config: Any) -> Path:
    value = str(run_config.get(OUTPUT_DIR_KEY, "") or "")
    if value:
        return Path(value).expanduser()
    return DEFAULT_OUTPUT_ROOT / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def find_pods(
    grid: Grid, wanted: Sequence[str], timeout: float, interval: float = 0.25
) -> tuple[dict[int, str], dict[str, PodInfo]]:
    """Which SuperNode serves each wanted pod (``_server.discover_pods``, imported lazily)."""
    from ._server import discover_pods

    return discover_pods(grid, wanted, timeout, interval)


def pod_names(identifiers: list[Any]) -> list[str]:
    """Pod names as SuperNodes serve them; a pod file given instead is read for its name."""
    from fedplug.data import Pod

    names = []
    for identifier in identifiers:
        text = str(identifier)
        if text.endswith((".yaml", ".yml")):
            path = Path(text).expanduser()
            if not path.is_file():
                raise PodConfigError(
                    f"pods.identifiers names the pod file {text!r}, which does not exist "
                    "where the ServerApp runs; on a SuperLink name pods by their names "
                    "(e.g. pods.identifiers=[hospital-a,hospital-b])."
                )
            names.append(Pod.from_yaml(path).name)
        else:
            names.append(text)
    if len(set(names)) != len(names):
        raise PodConfigError(f"pods {names} name a pod more than once; list each pod once.")
    return names


def _progress(rounds: int):  # noqa: ANN202
    def on_round(server_round: int, train: dict, evaluate: dict) -> None:
        parts = [f"round {server_round}/{rounds}"]
        if "train_loss" in train:
            parts.append(f"train_loss={train['train_loss']:.4f}")
        parts += [
            f"{k}={evaluate[k]:.4f}" for k in ("loss", "accuracy", "auc", "f1") if k in evaluate
        ]
        logger.info("  ".join(parts))

    return on_round


def run_deployed(grid: Grid, context: Context) -> Path:
    """The ServerApp's work; returns the output directory."""
    from fedplug._flower._server import run_plan
    from fedplug._run_outputs import write_outputs
    from fedplug._task_builder import (
        attach_result,
        build_plan,
        check_aggregator,
        compose_config,
        objects_from_config,
    )
    from fedplug.data import Schema, combine_pod_schemas

    raw = context.run_config.get(OVERRIDES_KEY, "") or ""
    try:
        overrides = shlex.split(str(raw))
    except ValueError as exc:
        raise ConfigError(
            f"run config {OVERRIDES_KEY}={raw!r} is not a valid list of Hydra overrides "
            f"({exc}); quote it as --run-config \"overrides='aggregator=secure model.epochs=2'\"."
        ) from exc
    conf = _config_dir(grid)
    cfg = compose_config(overrides, conf)
    composed = objects_from_config(cfg)
    model = composed.model
    if isinstance(getattr(model, "schema", None), str):
        # fit(federation=...) sends the model's schema as JSON (fedplug._federation).
        from fedplug._federation import schema_from_text

        model.schema = schema_from_text(model.schema)
    names = pod_names(list(composed.pods.get("identifiers") or []))
    if not names:
        raise PodConfigError("pods.identifiers is empty; name the pods to train on.")
    fed = composed.federation
    connect_timeout = float(fed.get("connect_timeout", 120.0))
    round_timeout = float(fed.get("round_timeout", 300.0))
    out_dir = output_dir(context.run_config)
    logger.info(
        "fedplug run %s on pods %s | aggregator=%s strategy=%s rounds=%s seed=%s | "
        "overrides %s | configs %s | outputs %s",
        type(model).__name__,
        names,
        composed.aggregator_ref,
        composed.strategy_ref,
        model.progress_total(),
        cfg.seed,
        overrides,
        conf,
        out_dir,
    )
    # A config error fails before any pod is contacted.
    model.check_params()
    check_aggregator(composed.aggregator)
    # The model is built from the schemas the pods publish: the modeller needs no pod file.
    nodes, infos = find_pods(grid, names, connect_timeout)
    logger.info("pods found: %s", {name: node for node, name in nodes.items()})
    schema = getattr(model, "schema", None) or combine_pod_schemas(
        {n: Schema.from_dict(infos[n].schema) for n in names}
    )
    plan = build_plan(
        model,
        names,
        schema,
        composed.aggregator,
        composed.strategy_ref,
        composed.strategy_params,
        round_timeout=round_timeout,
        connect_timeout=connect_timeout,
        on_round=_progress(model.progress_total()),
        found=(nodes, infos),
    )
    started = time.monotonic()
    result = run_plan(PollingGrid(grid, nodes=list(nodes)), plan)
    seconds = time.monotonic() - started
    attach_result(model, result)
    write_outputs(out_dir, model, result.history, seconds, composed.config)
    logger.info("done in %.1fs; model, history and plot in %s", seconds, out_dir.resolve())
    # One line of JSON for fit(federation=...): the history, and where the model is.
    from fedplug._federation import result_line

    logger.info("%s", result_line(context.run_id, out_dir.resolve(), result.history))
    return out_dir


server_app = ServerApp()


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    with console_logging():
        try:
            run_deployed(PollingGrid(grid), context)
        except FedplugError as exc:
            # Raised on: Flower marks the run failed, with this message as its details.
            logger.error("fedplug run failed: %s", exc)
            raise


#: The refusal reason of a pod served by plain flower-supernode.
UNSAFE_LAUNCH = "unsafe-launch"


def _served_pod_name(context: Context) -> str:
    """The pod's name from the file its node config names (best effort, for the message)."""
    path = context.node_config.get("pod")
    try:
        import yaml

        name = yaml.safe_load(Path(str(path)).expanduser().read_text())["name"]
        return str(name)
    except Exception:  # noqa: BLE001 - only a label; fall back to the node
        return f"node {context.node_id}"


class UnsafeLaunchApp(ClientApp):
    """Answers every message with a refusal: this SuperNode runs code from app bundles."""

    def __call__(self, message: Message, context: Context) -> Message:
        from ._pod_errors import refusal

        name = _served_pod_name(context)
        logging.getLogger("fedplug.pod").error(
            "pod %r refuses every message: it was started with plain flower-supernode, which "
            "runs whatever code an app bundle names; stop it and start it with `fedplug pod "
            "start POD.yaml --superlink HOST:PORT ...`, which runs only the fedplug installed "
            "here.",
            name,
        )
        return refusal(message, name, UNSAFE_LAUNCH)


client_app = UnsafeLaunchApp()
