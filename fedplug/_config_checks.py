"""Checks of a composed Hydra config, group by group, before anything starts.

:func:`check_config` refuses what the groups' own objects would only notice late (a Ray
worker dividing by ``federation.cpus_per_pod=0`` two minutes in) or with a bare
``TypeError`` (an unknown ``datastructure`` key), naming the key and the valid ones.
:func:`explain_compose_error` turns Hydra's composition errors (``Key 'epoch' is not in
struct``) into the same kind of message. The model, aggregator and strategy plugins check
their own parameters (``_task_builder.only_known`` and the plugins' ``validate``).
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Sequence
from typing import Any

from fedplug._errors import ConfigError
from fedplug._validation import check_known_keys, did_you_mean, quoted, short_value

#: The config groups of conf/config.yaml, and its one plain key.
GROUPS = ("datastructure", "model", "aggregator", "strategy", "pods", "federation")
TOP_LEVEL = (*GROUPS, "seed")
POD_KEYS = ("identifiers", "dirs", "create_demo")
DEMOS = ("census-income",)
#: federation keys holding a number of seconds or CPUs that must be above zero.
FEDERATION_POSITIVE = ("cpus_per_pod", "round_timeout", "connect_timeout")
FEDERATION_KEYS = ("backend", *FEDERATION_POSITIVE, "verbose", "connection", "run_timeout")


def check_config(cfg: Any) -> None:
    """Raise a :class:`ConfigError` for the first group of ``cfg`` with an invalid key or value.

    ``cfg`` is the composed config (an OmegaConf ``DictConfig`` or a plain mapping).
    """
    data = _plain(cfg)
    if not isinstance(data, dict):
        raise ConfigError(f"the composed config is {type(data).__name__}, not a mapping.")
    check_known_keys(
        [k for k in data if k != "hydra"],
        TOP_LEVEL,
        where="config",
        fix=f"the top level holds the groups {quoted(GROUPS)} and 'seed' (e.g. seed=7)",
    )
    data = {"federation": {}, **data}  # an app's config may leave the federation out
    data["federation"] = data["federation"] or {}
    for group in GROUPS:
        if not isinstance(data.get(group), dict):
            raise ConfigError(
                f"config group {group!r} is {short_value(data.get(group))}, not a mapping of "
                f"keys; choose one of its options (`fedplug run --help` lists them)."
            )
    _integer(data.get("seed"), "seed", "e.g. seed=7")
    _check_datastructure(data["datastructure"])
    _check_pods(data["pods"])
    _check_federation(data["federation"])


def _plain(cfg: Any) -> Any:
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if not isinstance(cfg, DictConfig):
        return cfg
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:  # e.g. an ${oc.env:...} that cannot be resolved
        key = getattr(exc, "full_key", None) or "a value"
        raise ConfigError(
            f"config: {key} cannot be resolved: {str(exc).splitlines()[0]}. Fix the "
            "interpolation in the config file or override the key with a plain value."
        ) from exc


def _integer(value: object, name: str, example: str) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise ConfigError(f"{name} must be an integer, got {short_value(value)}; {example}.")


def _strings(value: object, name: str, *, allow_none: bool, example: str) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(
            f"{name} must be a list of names{' or null' if allow_none else ''}, got "
            f"{short_value(value)}; e.g. {example}."
        )


def _check_datastructure(group: dict) -> None:
    from fedplug.learning import DataStructure

    valid = [p for p in inspect.signature(DataStructure).parameters]
    check_known_keys(
        group,
        valid,
        where="datastructure config",
        fix=f"DataStructure takes {quoted(valid)}",
    )
    target = group.get("target")
    if not isinstance(target, str) or not target:
        raise ConfigError(
            f"datastructure.target must be a column name, got {short_value(target)}; "
            "e.g. datastructure.target=TARGET."
        )
    table = group.get("table")
    if table is not None and not (
        isinstance(table, str)
        or (isinstance(table, dict) and all(isinstance(v, str) for v in table.values()))
    ):
        raise ConfigError(
            f"datastructure.table must be null, a table name, or a mapping of pod name to "
            f"table name, got {short_value(table)}; e.g. "
            "'datastructure.table={census-income-demo: adult}'."
        )
    _strings(
        group.get("selected_cols"),
        "datastructure.selected_cols",
        allow_none=True,
        example="datastructure.selected_cols=[age,education]",
    )
    _strings(
        group.get("ignore_cols", []),
        "datastructure.ignore_cols",
        allow_none=False,
        example="datastructure.ignore_cols=[fnlwgt]",
    )


def _check_pods(group: dict) -> None:
    check_known_keys(group, POD_KEYS, where="pods config")
    identifiers = group.get("identifiers")
    _strings(
        identifiers,
        "pods.identifiers",
        allow_none=False,
        example="pods.identifiers=[hospital-a,hospital-b]",
    )
    assert isinstance(identifiers, list)
    if not identifiers:
        raise ConfigError(
            "pods.identifiers is empty; name the pods to train on, e.g. "
            "pods.identifiers=[hospital-a,hospital-b]."
        )
    twice = sorted({i for i in identifiers if identifiers.count(i) > 1})
    if twice:
        raise ConfigError(f"pods.identifiers names {quoted(twice)} more than once; list each once.")
    _strings(group.get("dirs"), "pods.dirs", allow_none=True, example="pods.dirs=[pods]")
    demo = group.get("create_demo")
    if demo not in (None, False) and demo not in DEMOS:
        raise ConfigError(
            f"pods.create_demo must be null (write no demo pods) or one of {quoted(DEMOS)}, "
            f"got {short_value(demo)}{did_you_mean(demo, DEMOS)}."
        )


def _check_federation(group: dict) -> None:
    check_known_keys(group, FEDERATION_KEYS, where="federation config")
    for key in (*FEDERATION_POSITIVE, "run_timeout"):
        if key not in group or (key == "run_timeout" and group[key] is None):
            continue
        value = group[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not float(value) > 0
            or value != value  # NaN
        ):
            raise ConfigError(
                f"federation.{key} must be a number above 0, got {short_value(value)}; "
                f"e.g. federation.{key}={1 if key == 'cpus_per_pod' else 60}."
            )
    connection = group.get("connection", "")  # federation=superlink: the SuperLink to use
    if "connection" in group and not (isinstance(connection, str) and connection):
        raise ConfigError(
            "federation.connection must name a SuperLink connection of Flower's config.toml, "
            f"got {short_value(connection)}; e.g. federation.connection=fedplug-local."
        )
    if "verbose" in group and not isinstance(group["verbose"], bool):
        raise ConfigError(
            f"federation.verbose must be true or false, got {short_value(group['verbose'])}."
        )


def explain_compose_error(exc: BaseException, overrides: Sequence[str]) -> ConfigError:
    """A :class:`ConfigError` for a Hydra composition error, naming the valid keys or options.

    ``overrides`` are the command-line overrides that were being composed.
    """
    from hydra.errors import MissingConfigException
    from omegaconf import DictConfig

    given = " ".join(o for o in overrides if not o.startswith("-")) or "(none)"
    if isinstance(exc, MissingConfigException) and exc.missing_cfg_file and exc.options:
        group, _, option = str(exc.missing_cfg_file).rpartition("/")
        options = sorted(str(o) for o in exc.options)
        return ConfigError(
            f"{group}={option}: no such {group} option{did_you_mean(option, options)}; the "
            f"options are {quoted(options)} (override given: {given})."
        )
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    parent = getattr(cause, "parent_node", None)
    key = getattr(cause, "key", None)
    full_key = str(getattr(cause, "full_key", "") or "")
    if isinstance(parent, DictConfig) and key is not None and full_key:
        where, _, _ = full_key.rpartition(".")
        valid = [str(k) for k in parent if str(k) != "hydra"]
        if not where:
            return ConfigError(
                f"{key!r} is neither a config group nor a key{did_you_mean(key, valid)}: the "
                f"config holds {quoted(valid)} (override given: {given})."
            )
        has = f"has {quoted(valid)}" if valid else "has no keys"
        return ConfigError(
            f"{where}: unknown key {str(key)!r}{did_you_mean(key, valid)}; the {where} config "
            f"{has}. Fix the override (given: {given}); to add a key the "
            f"plugin takes but the config does not declare, write +{full_key}=VALUE."
        )
    text = " ".join(str(exc).split())
    return ConfigError(
        f"the overrides do not compose with fedplug's configs: {text} (given: {given}). "
        "Write each override as key=value (e.g. aggregator=secure model.epochs=2)."
    )
