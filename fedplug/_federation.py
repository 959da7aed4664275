"""Running a task on a SuperLink: ``fit(..., federation=CONNECTION)``, ``fedplug run
federation=superlink`` and ``fedplug submit``.

All go through Flower's own run submission, ``flwr run APP CONNECTION --stream``, with the
fedplug Flower App (the Hydra configs, no code) and the task as Hydra overrides in the run
config. The ServerApp of ``flwr run`` (:mod:`fedplug._flower.app`) composes those overrides
with the same configs and builds the plan with the same ``build_plan`` as a simulation, so
one code path builds the task whichever way it runs.

What travels is data: the model plugin's name and its parameters, the datastructure, the
aggregator plugin's name and parameters, the strategy's name and parameters and the pods'
names. Anything that is code (a model or aggregator class defined here rather than
installed as a plugin, a Flower strategy object, an ``on_round`` callback, an in-memory
pod) is refused with the reason. Before submitting, the overrides are composed here exactly
as the ServerApp will compose them, and the resulting objects must equal the caller's:
a value that cannot travel is an error, never a different task.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import queue
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from fedplug._errors import ConfigError, FedplugError, PodConfigError, TrainingError
from fedplug._validation import check_known_keys, quoted, short_value

#: What `flwr run` prints once the SuperLink accepted the run.
STARTED = "Successfully started run "
COMPLETED = "finished:completed"
#: Seconds for one `flwr ls`/`flwr stop` call, and to wait for a streamed run's final status.
CLI_TIMEOUT = 60.0
STATUS_WAIT = 30.0
#: The ServerApp logs one line starting with this (after the logger's prefix) when a run
#: completes: JSON with the run id, the output directory and the history.
RESULT_MARKER = "fedplug-result: "
#: What fedplug's own log lines carry in the streamed log (``app.console_logging``).
FEDPLUG_LOG = " fedplug: "
#: Keys of ``federation`` when it is a mapping (the Hydra ``federation`` group).
FEDERATION_KEYS = ("connection", "connect_timeout", "run_timeout", "round_timeout", "verbose")
DEFAULT_CONNECT_TIMEOUT = 120.0


class RunFailed(TrainingError):
    """The run on the SuperLink did not complete."""


# -- Flower's CLI, its connections and the app bundle -------------------------------------


def flwr_executable() -> str:
    found = shutil.which("flwr") or shutil.which("flwr", path=str(Path(sys.executable).parent))
    if found is None:
        raise ConfigError(
            "the Flower CLI `flwr` is not on PATH; install fedplug (it installs flwr)."
        )
    return found


def _is_flower_app(directory: Path) -> bool:
    pyproject = directory / "pyproject.toml"
    return pyproject.is_file() and "[tool.flwr.app" in pyproject.read_text(errors="replace")


def app_dir(given: str | None) -> Path:
    """The Flower App to submit: ``given`` (``--app``), else the fedplug checkout holding
    the configs. An installed fedplug (no checkout) gets its app from :func:`packaged_app`."""
    from fedplug._task_builder import conf_dir

    directory = Path(given).expanduser() if given else conf_dir().parent
    if not _is_flower_app(directory):
        raise ConfigError(
            f"{str(directory)!r} is not a Flower App (no pyproject.toml with [tool.flwr.app]); "
            "run from a fedplug checkout or pass its root with --app DIR."
        )
    return directory.resolve()


#: The app's pyproject.toml when fedplug is installed without its source tree: the same
#: components and run config as the checkout's, and only the Hydra configs in the bundle.
_APP_PYPROJECT = """\
[project]
name = "fedplug"
version = "{version}"
description = "fedplug's Flower App: the Hydra configs of a task (the code is installed)"
license = {{ text = "Apache-2.0" }}

[tool.flwr.app]
publisher = "fedplug"
fab-include = ["conf/**/*.yaml"]

[tool.flwr.app.components]
serverapp = "fedplug._flower.app:server_app"
clientapp = "fedplug._flower.app:client_app"

[tool.flwr.app.config]
overrides = ""
output-dir = ""
"""


def _checkout(given: str | None) -> bool:
    """Whether the app to submit is a directory (``given``, or the source checkout)."""
    from fedplug._task_builder import conf_dir

    conf = conf_dir()
    return bool(given) or (conf.name == "conf" and _is_flower_app(conf.parent))


def app_label(given: str | None) -> str:
    """The app directory to show in messages."""
    if _checkout(given):
        return str(app_dir(given))
    return "APP"  # an installed fedplug: a temporary app holding its configs


@contextlib.contextmanager
def packaged_app(given: str | None = None) -> Iterator[Path]:
    """The Flower App to submit, as a directory: ``given``, the checkout's root, or (for
    an installed fedplug) a temporary app holding its configs and a pyproject.toml."""
    from fedplug._task_builder import conf_dir
    from fedplug._version import __version__

    conf = conf_dir()
    if _checkout(given):
        yield app_dir(given)
        return
    with tempfile.TemporaryDirectory(prefix="fedplug-app-") as tmp:
        root = Path(tmp)
        shutil.copytree(conf, root / "conf", ignore=shutil.ignore_patterns("__*"))
        (root / "pyproject.toml").write_text(_APP_PYPROJECT.format(version=__version__))
        yield root


def flower_config_path() -> Path:
    """Flower's configuration file: ``$FLWR_HOME/config.toml`` (default ``~/.flwr``)."""
    home = os.environ.get("FLWR_HOME")
    return (Path(home) if home else Path.home() / ".flwr") / "config.toml"


def connections() -> list[str]:
    """The SuperLink connections Flower's configuration file names."""
    import tomli

    path = flower_config_path()
    try:
        data = tomli.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, tomli.TOMLDecodeError) as exc:
        raise ConfigError(
            f"Flower's configuration file {str(path)!r} cannot be read: {exc}. Fix it (TOML)."
        ) from exc
    table = data.get("superlink")
    return (
        sorted(k for k, v in table.items() if isinstance(v, dict))
        if isinstance(table, dict)
        else []
    )


def check_connection(name: object) -> str:
    """``name`` when Flower's configuration file defines that SuperLink connection."""
    path = flower_config_path()
    example = '[superlink.NAME]\naddress = "HOST:9093"\ninsecure = true  # or root-certificates'
    if not isinstance(name, str) or not name:
        raise ConfigError(
            f"federation={name!r} is not a SuperLink connection name; pass the name of a "
            f"[superlink.NAME] table in {str(path)!r}, e.g. federation='fedplug-local'."
        )
    known = connections()
    if name not in known:
        raise ConfigError(
            f"no SuperLink connection {name!r} in Flower's configuration file {str(path)!r} "
            f"(connections there: {quoted(known)}). Add it there:\n{example}\n"
            "($FLWR_HOME chooses another file; README, Deploy)."
        )
    return name


def expand_federation(argv: Sequence[str], conf: Path) -> list[str]:
    """``fedplug run federation=NAME``, for a SuperLink connection NAME that is no
    federation config's name, as ``federation=superlink federation.connection=NAME``."""
    out: list[str] = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if (
            key == "federation"
            and sep
            and value
            and not (conf / "federation" / f"{value}.yaml").is_file()
            and value in connections()
        ):
            out += ["federation=superlink", f"federation.connection={_quote(value)}"]
        else:
            out.append(arg)
    return out


# -- the task as Hydra overrides -----------------------------------------------------------

#: Characters a key of a mapping may hold in a Hydra override (the grammar's dictKey,
#: some escaped); letters outside ASCII cannot be written there.
_KEY_CHARS = re.compile(r"[A-Za-z0-9_\-/+.$%*@?|\\()\[\]{}:=, \t]+")


def _hydra_key(key: object, where: str) -> str:
    from hydra._internal.grammar.utils import escape_special_characters

    if not isinstance(key, str) or not _KEY_CHARS.fullmatch(key):
        raise ConfigError(
            f"{where}: the key {short_value(key)} cannot travel to a SuperLink in a Hydra "
            "override (a key holds ASCII letters, digits, spaces and _-./+$%*@?|()[]{}:=,); "
            "rename it, or run the task in a simulation."
        )
    return escape_special_characters(key)


def _quote(text: str) -> str:
    """``text`` as a single-quoted Hydra value (backslashes before a quote doubled)."""
    body = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", text)
    body = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, body)
    return f"'{body}'"


def hydra_value(value: object, where: str) -> str:
    """``value`` written in Hydra's override grammar, or a ConfigError naming ``where``.

    Only plain data travels: None, booleans, numbers, strings, and lists and mappings of
    them. Strings are always quoted, so ``'1'`` stays a string and ``1`` a number.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value))  # inf, -inf and nan are Hydra floats too
    if isinstance(value, str):
        if "${" in value:
            raise ConfigError(
                f"{where} = {short_value(value)}: a value holding '${{' cannot travel to a "
                "SuperLink (Hydra would read it as an interpolation); remove it."
            )
        return _quote(value)
    if isinstance(value, Mapping):
        items = [
            f"{_hydra_key(k, where)}:{hydra_value(v, f'{where}.{k}')}" for k, v in value.items()
        ]
        return "{" + ",".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v, f"{where}[{i}]") for i, v in enumerate(value)) + "]"
    raise ConfigError(
        f"{where} is a {type(value).__name__} ({short_value(value)}): only plain data "
        "(None, booleans, numbers, strings, and lists and mappings of them) can travel to a "
        "SuperLink, never an object or code; pass the value as plain data."
    )


def schema_text(schema: Any) -> str:
    """A schema as one JSON string without a single quote or a dollar sign (both escaped
    as JSON \\u escapes), so it travels as one quoted Hydra value whatever its columns hold."""
    text = json.dumps(schema.to_dict(), ensure_ascii=False, separators=(",", ":"))
    return text.replace("'", "\\u0027").replace("$", "\\u0024")


def schema_from_text(text: str) -> Any:
    """Inverse of :func:`schema_text` (in the ServerApp): a Schema, or a ConfigError."""
    from fedplug.data import Schema

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"model.schema must be a schema as JSON (fit(federation=...) writes it), got "
            f"{short_value(text)}: {exc}."
        ) from exc
    return Schema.from_dict(data, source="model.schema (run config)")


def plugin_name(kind: str, obj: object, what: str) -> str:
    """The installed plugin name under which ``obj`` (a class or factory) is registered."""
    from fedplug._plugins import available, load_plugin

    for name in available(kind):
        try:
            if load_plugin(kind, name) is obj:
                return name
        except Exception:  # noqa: BLE001, S112 - another plugin that fails to import
            continue
    label = getattr(obj, "__qualname__", None) or type(obj).__name__
    raise ConfigError(
        f"{what} {label} ({getattr(obj, '__module__', '?')}) is not an installed fedplug "
        f"{kind} plugin, so it cannot run on a SuperLink: code never travels with a run. "
        f"Install it as a plugin (entry point in fedplug.{kind}) on the SuperLink's machine "
        f"and here, or use an installed one ({quoted(available(kind))})."
    )


def pod_names(identifiers: Sequence[Any]) -> list[str]:
    """The names the pods' SuperNodes serve: names as given, pod files read for theirs."""
    from fedplug.data import Pod, resolve_pod

    if isinstance(identifiers, (str, Path, Pod)) or not identifiers:
        raise PodConfigError(
            "pod_identifiers must be a non-empty list of pod names, got "
            f"{short_value(identifiers)}."
        )
    names = []
    for identifier in identifiers:
        if isinstance(identifier, Pod):
            raise PodConfigError(
                f"pod {identifier.name!r} is a fedplug.Pod held in this process: it cannot "
                "take part in a run on a SuperLink. Name the pods their owners serve with "
                "`fedplug pod start` (e.g. ['hospital-a', 'hospital-b'])."
            )
        text = str(identifier)
        looks_like_file = isinstance(identifier, Path) or text.endswith((".yaml", ".yml"))
        names.append(Pod.from_yaml(resolve_pod(identifier)).name if looks_like_file else text)
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise PodConfigError(f"pod(s) {twice} listed more than once; list each pod once.")
    return names


def _param_values(obj: object, names: Sequence[str], what: str) -> dict[str, Any]:
    values = {}
    for name in names:
        if not hasattr(obj, name):
            raise ConfigError(
                f"{what} {type(obj).__name__} takes a parameter {name!r} but keeps no "
                f"attribute {name!r}, so its value cannot be sent to a SuperLink; a plugin's "
                "__init__ stores each parameter under its own name."
            )
        values[name] = getattr(obj, name)
    return values


@dataclass
class Task:
    """What a run on a SuperLink trains, as plain data, and its Hydra overrides."""

    model_plugin: str
    model_params: dict[str, Any]  # without datastructure, schema, optimizer and seed
    optimizer: dict[str, Any] | None
    schema: Any  # a Schema, or None (the ServerApp combines the pods' published ones)
    datastructure: dict[str, Any]
    seed: Any
    aggregator_plugin: str
    aggregator_params: dict[str, Any]
    strategy: str
    strategy_params: dict[str, Any]
    pods: list[str]
    federation: dict[str, Any] = field(default_factory=dict)

    def overrides(self) -> list[str]:
        """Each group replaced whole (``~group`` then ``+group.key=value``), so nothing of
        the configs' defaults survives that the caller did not set."""
        ref = "_target_" if ":" in self.strategy or "." in self.strategy else "name"
        out = ["~datastructure"]
        out += [
            f"+datastructure.{k}={hydra_value(v, f'datastructure.{k}')}"
            for k, v in self.datastructure.items()
        ]
        out += ["~model", f"+model.name={hydra_value(self.model_plugin, 'model')}"]
        out += [
            f"+model.{k}={hydra_value(v, f'model parameter {k!r}')}"
            for k, v in self.model_params.items()
        ]
        if self.optimizer is not None:
            out.append(f"+model.optimizer={hydra_value(self.optimizer, 'model.optimizer')}")
        if self.schema is not None:
            out.append(f"+model.schema={_quote(schema_text(self.schema))}")
        out.append(f"seed={hydra_value(self.seed, 'model parameter seed')}")
        out += [
            "~aggregator",
            f"+aggregator.name={hydra_value(self.aggregator_plugin, 'aggregator')}",
        ]
        out.append(
            f"+aggregator.params={hydra_value(self.aggregator_params, 'aggregator parameter')}"
        )
        out += ["~strategy", f"+strategy.{ref}={hydra_value(self.strategy, 'strategy')}"]
        out.append(f"+strategy.params={hydra_value(self.strategy_params, 'strategy_params')}")
        out += ["~pods", f"+pods.identifiers={hydra_value(self.pods, 'pod_identifiers')}"]
        out += [
            f"++federation.{k}={hydra_value(v, f'federation.{k}')}"
            for k, v in self.federation.items()
        ]
        return out


def describe(
    model: Any,
    pod_identifiers: Sequence[Any],
    aggregator: Any,
    strategy: Any,
    strategy_params: Mapping[str, Any] | None,
    federation: Mapping[str, Any] | None = None,
) -> Task:
    """The task as data, or a ConfigError naming what cannot travel to a SuperLink."""
    from fedplug._flower import FedAvg
    from fedplug._plugins import load_plugin
    from fedplug._task_builder import check_aggregator, check_model, parameter_names

    model = check_model(model)
    cls = type(model)
    name = getattr(cls, "plugin_name", "")
    installed = None
    with contextlib.suppress(Exception):
        installed = load_plugin("models", name) if name else None
    if installed is not cls:
        where = f"the installed {name!r} is {installed!r}" if installed else "none is installed"
        raise ConfigError(
            f"model class {cls.__qualname__} ({cls.__module__}) is not the installed model "
            f"plugin of its name {name!r} ({where}): a model class defined here cannot run "
            "on a SuperLink, code never travels with a run. Install it as a model plugin "
            "(entry points in fedplug.models and fedplug.pod_models) on the SuperLink's and "
            "the pods' machines, or use an installed model."
        )
    special = {"datastructure", "schema", "optimizer", "seed"}
    params = _param_values(model, parameter_names(cls), "model")
    optimizer = params.get("optimizer")
    if optimizer is not None:
        if not hasattr(optimizer, "to_dict"):
            raise ConfigError(
                f"model parameter 'optimizer' is {short_value(optimizer)}; pass a "
                "fedplug.Optimizer (e.g. Optimizer('Adam', {'lr': 1e-3})) or None."
            )
        optimizer = optimizer.to_dict()
    aggregator = check_aggregator(aggregator if aggregator is not None else FedAvg())
    agg_cls = type(aggregator)
    if not isinstance(strategy, str) or not strategy:
        raise ConfigError(
            f"strategy={short_value(strategy)} cannot travel to a SuperLink: a Flower "
            "strategy object or factory is code. Pass an installed strategy plugin's name "
            "(e.g. strategy='fedadam') and its parameters as strategy_params={...}."
        )
    if strategy_params is not None and not isinstance(strategy_params, Mapping):
        raise ConfigError(
            f"strategy_params must be a mapping of parameter name to value, got "
            f"{short_value(strategy_params)}."
        )
    return Task(
        model_plugin=name,
        model_params={k: v for k, v in params.items() if k not in special},
        optimizer=optimizer,
        schema=params.get("schema"),
        datastructure=model.datastructure.to_dict(),
        seed=params.get("seed", 42),
        aggregator_plugin=plugin_name("aggregators", agg_cls, "aggregator"),
        aggregator_params=_param_values(aggregator, parameter_names(agg_cls), "aggregator"),
        strategy=strategy,
        strategy_params=dict(strategy_params or {}),
        pods=pod_names(pod_identifiers),
        federation=dict(federation or {}),
    )


def _plain(value: Any) -> Any:
    """A comparable, plain form of a parameter value (tuples as lists, objects as dicts)."""
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return _plain(value.to_dict())
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return "nan" if math.isnan(number) else number
    return value


@contextlib.contextmanager
def _hydra_of_our_own() -> Iterator[None]:
    """Compose even inside ``fedplug run``'s ``@hydra.main``: its global Hydra is set
    aside for the composition and put back after."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    backup = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        yield
    finally:
        restore_gh_from_backup(backup)


def check_round_trip(task: Task, conf: Path) -> Any:
    """Compose the task's overrides as the ServerApp will, and require the same objects.

    Returns the composed run (``ComposedRun``). A value that would arrive changed is a
    ConfigError naming it: nothing runs that differs from what the caller asked for.
    """
    from fedplug._task_builder import compose_config, objects_from_config, parameter_names

    try:
        with _hydra_of_our_own():
            cfg = compose_config(task.overrides(), conf)
        composed = objects_from_config(cfg)
    except FedplugError:
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin's constructor may fail any way
        raise ConfigError(
            f"the task does not compose with fedplug's configs in {str(conf)!r} as the "
            f"SuperLink would compose it: {type(exc).__name__}: {exc}"
        ) from exc
    model = composed.model
    if isinstance(getattr(model, "schema", None), str):
        model.schema = schema_from_text(model.schema)
    expected = {
        **task.model_params,
        "datastructure": task.datastructure,
        "schema": task.schema,
        "optimizer": task.optimizer,
        "seed": task.seed,
    }
    got = {k: getattr(model, k, None) for k in parameter_names(type(model))}
    pairs = [(f"model parameter {k!r}", expected.get(k), got.get(k)) for k in sorted(set(got))]
    pairs += [
        (f"aggregator parameter {k!r}", v, getattr(composed.aggregator, k, None))
        for k, v in task.aggregator_params.items()
    ]
    pairs += [
        ("model plugin", task.model_plugin, getattr(type(model), "plugin_name", None)),
        ("aggregator", task.aggregator_plugin, composed.aggregator_ref),
        ("strategy", task.strategy, composed.strategy_ref),
        ("strategy_params", task.strategy_params, composed.strategy_params),
        ("pods", task.pods, composed.pods.get("identifiers")),
    ]
    for what, want, have in pairs:
        if _plain(want) != _plain(have):
            raise ConfigError(
                f"{what} = {short_value(want, 80)} would arrive on the SuperLink as "
                f"{short_value(have, 80)}: it cannot travel in a Hydra override. Pass it as "
                "plain data of another form, or run the task in a simulation."
            )
    return composed


# -- submitting a run and following it -----------------------------------------------------


@dataclass
class Submitted:
    """A run that completed on a SuperLink."""

    run_id: int
    connection: str
    status: str
    lines: list[str]
    #: The ServerApp's result record (run_id, output_dir, history), if it logged one.
    result: dict[str, Any] | None


def run_status(flwr: str, run_id: int, connection: str) -> tuple[str, str]:
    """The run's status (e.g. ``finished:failed``) and Flower's status details."""
    done = None
    try:
        done = subprocess.run(
            [flwr, "ls", "--run-id", str(run_id), connection, "--format", "json"],
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        run = json.loads(done.stdout)["runs"][0]
    except subprocess.TimeoutExpired:
        return "", f"`flwr ls` did not answer within {CLI_TIMEOUT:.0f}s"
    except (json.JSONDecodeError, KeyError, IndexError, TypeError):
        return "", ((done.stdout + done.stderr).strip() if done is not None else "")
    return str(run.get("status", "")), str(run.get("status-details", ""))


def run_id_of(lines: Sequence[str]) -> int | None:
    for line in lines:
        if STARTED in line:
            word = line.split(STARTED, 1)[1].split()
            if word and word[0].isdigit():
                return int(word[0])
    return None


def result_line(run_id: int, output_dir: Path, history: list[dict]) -> str:
    """The ServerApp's last log line: where the outputs are and the history, as JSON."""
    record = {"run_id": run_id, "output_dir": str(output_dir), "history": history}
    return RESULT_MARKER + json.dumps(record, separators=(",", ":"))


def parse_result(lines: Sequence[str], run_id: int) -> dict[str, Any] | None:
    for line in reversed(lines):
        if RESULT_MARKER in line:
            with contextlib.suppress(json.JSONDecodeError, AttributeError):
                record = json.loads(line.split(RESULT_MARKER, 1)[1])
                if isinstance(record, dict) and record.get("run_id") == run_id:
                    return record
    return None


def _stop(flwr: str, run_id: int | None, connection: str) -> None:
    if run_id is not None:
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            subprocess.run(
                [flwr, "stop", str(run_id), connection],
                capture_output=True,
                timeout=CLI_TIMEOUT,
                stdin=subprocess.DEVNULL,
            )


def submit_run(
    connection: str,
    overrides: Sequence[str],
    *,
    output_dir: str = "",
    app: str | None = None,
    timeout: float,
    show: Callable[[str], None] | None = None,
    timeout_hint: str = "Raise --timeout for longer runs.",
) -> Submitted:
    """Run the task on the SuperLink ``connection`` names and wait for it to end.

    ``flwr run APP CONNECTION --stream`` with the overrides and output directory in a run
    config file (any character travels), each streamed line passed to ``show``; then the
    run's final status from the SuperLink (``flwr run`` exits 0 after a failed run).
    Returns the completed run, else raises :class:`RunFailed` with Flower's status and the
    run's error. Past ``timeout`` seconds, or on Ctrl-C, the run is stopped (``flwr stop``).
    """
    import tomli_w

    if not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ConfigError(
            f"the run's timeout must be a number of seconds above 0, got {timeout!r}."
        )
    flwr = flwr_executable()
    lines: list[str] = []
    with packaged_app(app) as directory, tempfile.TemporaryDirectory(prefix="fedplug-run-") as tmp:
        config_file = Path(tmp) / "run-config.toml"
        config = {"overrides": shlex.join(overrides), "output-dir": output_dir}
        config_file.write_text(tomli_w.dumps(config))
        command = [flwr, "run", str(directory), connection, "--stream"]
        command += ["--run-config", str(config_file)]
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        pending: queue.Queue[str | None] = queue.Queue()

        def relay() -> None:  # the run's log, as flwr streams it; None at its end
            assert proc.stdout is not None
            for line in proc.stdout:
                pending.put(line)
            pending.put(None)

        reader = threading.Thread(target=relay, daemon=True)
        reader.start()
        deadline = time.monotonic() + timeout
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                try:
                    line = pending.get(timeout=min(remaining, 1.0))
                except queue.Empty:
                    continue
                if line is None:
                    break
                lines.append(line)
                if show is not None and RESULT_MARKER not in line:
                    show(line)
            code = proc.wait(timeout=CLI_TIMEOUT)
        except (TimeoutError, subprocess.TimeoutExpired, KeyboardInterrupt) as exc:
            proc.kill()
            proc.wait(timeout=CLI_TIMEOUT)
            reader.join(timeout=CLI_TIMEOUT)
            while not pending.empty():  # lines read but not yet handled: the run id, say
                rest = pending.get_nowait()
                lines += [rest] if rest is not None else []
            run_id = run_id_of(lines)
            _stop(flwr, run_id, connection)
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise RunFailed(
                f"run {run_id if run_id is not None else '(not started)'} on {connection!r} "
                f"did not end within {timeout:.0f}s; it was stopped (`flwr stop`). "
                f"{timeout_hint}"
            ) from None
        finally:
            reader.join(timeout=CLI_TIMEOUT)
            if proc.stdout is not None:
                proc.stdout.close()
    run_id = run_id_of(lines)
    if run_id is None:
        tail = "".join(lines[-20:]).strip()
        raise RunFailed(
            f"`flwr run` did not start a run on {connection!r} (exit code {code}):\n{tail}\n"
            f"Check the connection in {str(flower_config_path())!r} and that the SuperLink "
            "is up."
        )
    status, details = run_status(flwr, run_id, connection)
    wait_until = time.monotonic() + STATUS_WAIT
    while not status.startswith("finished") and time.monotonic() < wait_until:
        time.sleep(1.0)  # the stream can end a moment before the SuperLink records the end
        status, details = run_status(flwr, run_id, connection)
    if status != COMPLETED:
        raise RunFailed(
            f"run {run_id} on {connection!r} ended {status or 'with an unknown status'}: "
            f"{details.rstrip('.') or '(no details)'}. Its whole log: "
            f"`flwr log {run_id} {connection}` "
            f"(flwr run itself exited with code {code})."
        )
    return Submitted(run_id, connection, status, lines, parse_result(lines, run_id))


# -- fit(..., federation=CONNECTION) -------------------------------------------------------


def federation_settings(federation: object) -> dict[str, Any]:
    """``{connection, connect_timeout, run_timeout}`` from a connection name or the
    Hydra ``federation`` group (a mapping with ``connection``)."""
    if isinstance(federation, Mapping):
        settings = dict(federation)
        check_known_keys(
            settings,
            FEDERATION_KEYS,
            where="federation",
            fix="give the connection and, optionally, connect_timeout and run_timeout",
        )
    else:
        settings = {"connection": federation}
    settings["connection"] = check_connection(settings.get("connection"))
    for key in ("connect_timeout", "run_timeout"):
        value = settings.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value) > 0
        ):
            raise ConfigError(
                f"federation.{key} must be a number of seconds above 0, got {short_value(value)}."
            )
    return settings


def run_timeout(steps: int, round_timeout: float, connect_timeout: float) -> float:
    """How long fit waits for a run by default: a bound the ServerApp's own waits (the
    connect timeout, then at most 16 exchanges of ``round_timeout`` per step, two steps of
    set-up) never reach, so only a SuperLink that stops answering meets it."""
    return connect_timeout + round_timeout * 16 * (steps + 2)


def _refuse_simulation_only(
    pod_dirs: object, cpus_per_pod: object, backend: object, on_round: object
) -> None:
    if on_round is not None:
        raise ConfigError(
            "on_round cannot travel to a SuperLink: it is code, and the rounds run there. "
            "Follow the rounds with verbose=True (a line per round, from the run's log) or "
            "read the history fit returns; on_round works in a simulation."
        )
    if backend != "auto" or cpus_per_pod != 1.0:
        raise ConfigError(
            f"backend={backend!r} and cpus_per_pod={cpus_per_pod!r} choose how a simulation "
            "runs; with federation=... the pods run on their own machines. Leave them out."
        )
    if pod_dirs is not None:
        raise ConfigError(
            "pod_dirs locates pod files for a simulation; on a SuperLink the pods are found "
            "by the names their SuperNodes serve. Leave pod_dirs out and name the pods."
        )


def fit_on_superlink(
    model: Any,
    federation: str | Mapping[str, Any],
    pod_identifiers: Sequence[Any],
    aggregator: Any = None,
    strategy: Any = "fedavg",
    *,
    strategy_params: Mapping[str, Any] | None = None,
    pod_dirs: Sequence[Path] | None = None,
    round_timeout: float = 300.0,
    cpus_per_pod: float = 1.0,
    backend: str = "auto",
    verbose: bool | int = True,
    on_round: Callable[[int, dict, dict], None] | None = None,
) -> list[dict]:
    """Train ``model`` on the SuperLink ``federation`` names; return the run's history.

    On a SuperLink on this machine (the ServerApp's output directory is readable here)
    ``model`` becomes the trained model. Otherwise the trained model stays in the output
    directory on the SuperLink's machine: a warning names it, and ``model`` keeps only the
    history (``model.history_``).
    """
    from fedplug._api import build_strategy
    from fedplug._flower._simulation import verbosity
    from fedplug._task_builder import check_model, conf_dir

    level = verbosity(verbose)
    _refuse_simulation_only(pod_dirs, cpus_per_pod, backend, on_round)
    settings = federation_settings(federation)
    connection = settings["connection"]
    connect_timeout = float(settings.get("connect_timeout") or DEFAULT_CONNECT_TIMEOUT)
    check_model(model).check_params()  # fail fast, here, before anything is sent
    task = describe(
        model,
        pod_identifiers,
        aggregator,
        strategy,
        strategy_params,
        {"round_timeout": float(round_timeout), "connect_timeout": connect_timeout},
    )
    model.datastructure.check_pods(task.pods)
    composed = check_round_trip(task, conf_dir())
    build_strategy(task.strategy, len(task.pods), task.strategy_params, composed.aggregator)
    timeout = float(
        settings.get("run_timeout")
        or run_timeout(model.progress_total(), float(round_timeout), connect_timeout)
    )
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    output_dir = f"outputs/flwr-run/{stamp}_{secrets.token_hex(3)}"
    out = _write
    if level:
        out(
            f"fedplug: training {type(model).__name__} on pods {task.pods} through the "
            f"SuperLink {connection!r}\n"
        )
    if level >= 2:
        out(f"equivalent command: fedplug submit {connection} {shlex.join(task.overrides())}\n")
    submitted = submit_run(
        connection,
        task.overrides(),
        output_dir=output_dir,
        timeout=timeout,
        show=_stream_filter(level, out),
        timeout_hint="Raise the limit: federation={'connection': ..., 'run_timeout': SECONDS} "
        "(in Hydra: federation.run_timeout=SECONDS).",
    )
    result = submitted.result
    if result is None:
        raise RunFailed(
            f"run {submitted.run_id} on {connection!r} completed, but its log holds no "
            "fedplug result line: the SuperLink runs a fedplug older than this one. Install "
            "the same fedplug version on the SuperLink's machine and here."
        )
    history = list(result.get("history") or [])
    where = Path(str(result.get("output_dir", "")))
    loaded = _load_here(where / "model.pt", type(model), history)
    if loaded is not None:
        _adopt(model, loaded)
        if level:
            out(f"run {submitted.run_id}: {submitted.status}; outputs in {where}\n")
        return history
    model.history_ = history
    warnings.warn(
        f"run {submitted.run_id} on {connection!r} completed, but its model file "
        f"{str(where / 'model.pt')!r} is on the SuperLink's machine (not readable here): "
        "fit returns the history and this model stays untrained. Copy that file here and "
        "load it with fedplug.load_model(path).",
        stacklevel=4,
    )
    return history


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _stream_filter(level: int, out: Callable[[str], None]) -> Callable[[str], None] | None:
    """verbose=1: fedplug's own lines of the run's log (pods found, rounds, the outcome);
    2: every line Flower streams; 0: none."""
    if level == 0:
        return None
    if level >= 2:
        return out

    def show(line: str) -> None:
        if FEDPLUG_LOG in line:
            message = line.split(FEDPLUG_LOG, 1)[1]
            # The ServerApp's first line repeats every override (the schema too): fit
            # already said what runs, so keep its summary.
            message = message.split(" | overrides ", 1)[0].rstrip("\n") + "\n"
            out("  " + (message if len(message) <= 500 else message[:496] + "...\n"))

    return show


def _load_here(path: Path, cls: type, history: list[dict]) -> Any:
    """The run's model file when it is readable here and is this run's, else None."""
    from fedplug._model_base import load_model

    try:
        if not path.is_absolute() or not path.is_file():
            return None
    except OSError:
        return None
    loaded = load_model(path)
    # The output directory's name is unique to the run; the model and history confirm it.
    if type(loaded) is not cls or _plain(getattr(loaded, "history_", None)) != _plain(history):
        raise TrainingError(
            f"the model file {str(path)!r} is not the one this run wrote (its model or "
            "history differs from the run's); load the run's model from the SuperLink's "
            "output directory with fedplug.load_model(path)."
        )
    return loaded


def _adopt(model: Any, loaded: Any) -> None:
    """Make ``model`` the trained ``loaded``: its fitted state, the caller's parameters."""
    from fedplug._task_builder import parameter_names

    params = set(parameter_names(type(model)))
    for key, value in vars(loaded).items():
        if key not in params:
            setattr(model, key, value)
