"""Pods: a data owner's datasource, schema, split and policy, as written in its YAML file."""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fedplug._errors import (
    ConfigError,
    DataSourceError,
    DataStructureError,
    DataValidationError,
    PodConfigError,
    SchemaError,
)
from fedplug._validation import check_known_keys, int_at_least, positive_int
from fedplug.data._schema import Schema
from fedplug.data._sources import (
    DataFrameSource,
    Datasource,
    SQLSource,
    datasource_from_config,
)
from fedplug.data._splits import PercentageSplit, Split, split_from_config
from fedplug.data._text import did_you_mean, quoted, short_value, type_name
from fedplug.data._yaml import read_yaml

TASK_KINDS: tuple[str, ...] = ("train", "evaluate")
POD_KEYS: tuple[str, ...] = (
    "name",
    "datasource",
    "schema",
    "split",
    "approved_pods",
    "other_pods",
    "policy",
    "identity",
)
SCHEMA_KEYS: tuple[str, ...] = ("file", "infer")
INFER_KEYS: tuple[str, ...] = ("force_stypes", "ignore_cols", "descriptions", "max_categories")
POLICY_KEYS: tuple[str, ...] = (
    "require_secure_aggregation",
    "min_pods",
    "accepted_tasks",
    "min_threshold",
    "accepted_models",
    "accepted_modules",
)
IDENTITY_KEYS: tuple[str, ...] = ("key_file", "pinned_keys")
#: The model plugins fedplug ships, which a pod accepts unless its policy says otherwise.
BUILTIN_MODELS: tuple[str, ...] = (
    "tabular-classifier",
    "gradient-boosted-trees",
    "torch-module",
    "tabular-regressor",
)
_POD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _unknown_keys(d: Mapping[str, Any], valid: Sequence[str], where: str) -> None:
    check_known_keys(d, valid, where=where, error=PodConfigError)


def _mapping(value: Any, where: str, example: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PodConfigError(
            f"{where} must be a mapping (e.g. {example}), got {short_value(value)}"
        )
    return value


def _names(
    value: Any, where: str, what: str = "pod names", example: str = "[pod-a, pod-b]"
) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise PodConfigError(
            f"{where} must be a list of {what} (e.g. {example}), got {short_value(value)}"
        )
    bad = [v for v in value if not isinstance(v, str) or not v]
    if bad:
        raise PodConfigError(f"{where}: entries must be {what} (strings), got {quoted(bad)}")
    return tuple(value)


@dataclass(frozen=True)
class PodPolicy:
    """What a pod's owner allows, enforced by the pod whatever the server asks."""

    require_secure_aggregation: bool = False
    # Two: a "sum" over one pod is that pod's update.
    min_pods: int = 2
    accepted_tasks: tuple[str, ...] = TASK_KINDS
    # The least number of pods whose shares recover a self-mask (beyond a majority of the
    # run's pods, which every pod requires): a higher bar for a server colluding with pods.
    min_threshold: int = 0
    # Model plugins (entry-point names in fedplug.pod_models) this pod runs: the server
    # names one as data; the pod loads it from what its owner installed, never from a path.
    accepted_models: tuple[str, ...] = BUILTIN_MODELS
    # Import paths of torch modules (package.module:Class) the owner trusts this pod to run
    # with the torch-module model; none by default.
    accepted_modules: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.require_secure_aggregation, bool):
            raise PodConfigError(
                "policy.require_secure_aggregation must be true or false, got "
                f"{short_value(self.require_secure_aggregation)}"
            )
        min_pods = positive_int(
            self.min_pods,
            name="policy.min_pods",
            error=PodConfigError,
            fix="write e.g. `min_pods: 2`",
        )
        object.__setattr__(self, "min_pods", min_pods)
        min_threshold = int_at_least(
            self.min_threshold,
            0,
            name="policy.min_threshold",
            error=PodConfigError,
            fix="write e.g. `min_threshold: 3` (0: a majority of the run's pods)",
        )
        object.__setattr__(self, "min_threshold", min_threshold)
        tasks = _names(
            self.accepted_tasks, "policy.accepted_tasks", "task kinds", "[train, evaluate]"
        )
        unknown = [t for t in tasks if t not in TASK_KINDS]
        if unknown:
            raise PodConfigError(
                f"policy.accepted_tasks: unknown task kind(s) {quoted(unknown)}"
                f"{did_you_mean(unknown[0], TASK_KINDS)}; known kinds: {quoted(TASK_KINDS)}"
            )
        object.__setattr__(self, "accepted_tasks", tuple(dict.fromkeys(tasks)))
        models = _names(
            self.accepted_models,
            "policy.accepted_models",
            "model plugin names",
            "[tabular-classifier, gradient-boosted-trees]",
        )
        object.__setattr__(self, "accepted_models", tuple(dict.fromkeys(models)))
        modules = _names(
            self.accepted_modules,
            "policy.accepted_modules",
            "import paths package.module:Class",
            "[mypkg.nets:Net]",
        )
        object.__setattr__(self, "accepted_modules", tuple(dict.fromkeys(modules)))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> PodPolicy:
        d = _mapping(d, "policy", "{min_pods: 2}")
        _unknown_keys(d, POLICY_KEYS, "policy")
        return cls(**dict(d))

    def to_dict(self) -> dict[str, Any]:
        return {
            "require_secure_aggregation": self.require_secure_aggregation,
            "min_pods": self.min_pods,
            "accepted_tasks": list(self.accepted_tasks),
            "min_threshold": self.min_threshold,
            "accepted_models": list(self.accepted_models),
            "accepted_modules": list(self.accepted_modules),
        }


@dataclass
class LoadedPod:
    """A pod's validated data: its schema and its train / validation parts."""

    name: str
    schema: Schema
    train: pd.DataFrame = field(repr=False)
    validation: pd.DataFrame = field(repr=False)


def _check_infer_options(infer: Any, where: str) -> dict[str, Any]:
    options = dict(_mapping(infer, f"{where}: schema.infer", "{max_categories: 50}"))
    _unknown_keys(options, INFER_KEYS, f"{where}: schema.infer")
    for key in ("force_stypes", "descriptions"):
        if key in options:
            value = _mapping(options[key], f"{where}: schema.infer.{key}", "{age: categorical}")
            bad = [k for k, v in value.items() if not isinstance(k, str) or not isinstance(v, str)]
            if bad:
                raise PodConfigError(
                    f"{where}: schema.infer.{key} must map column names to strings; check "
                    f"{quoted(bad)}"
                )
            options[key] = dict(value)
    if "ignore_cols" in options:
        cols = options["ignore_cols"]
        if (
            isinstance(cols, str)
            or not isinstance(cols, (list, tuple))
            or not all(isinstance(c, str) for c in cols)
        ):
            raise PodConfigError(
                f"{where}: schema.infer.ignore_cols must be a list of column names, got "
                f"{short_value(cols)}"
            )
        options["ignore_cols"] = list(cols)
    if "max_categories" in options:
        options["max_categories"] = positive_int(
            options["max_categories"],
            name=f"{where}: schema.infer.max_categories",
            error=PodConfigError,
            fix="write e.g. `max_categories: 50`",
        )
    return options


class Pod:
    """A data owner's pod. ``__init__`` only stores; ``check()`` / ``load()`` validate."""

    def __init__(
        self,
        name: str,
        datasource: Datasource | None = None,
        schema: Schema | str | Path | None = None,
        schema_options: Mapping[str, Any] | None = None,
        split: Split | None = None,
        approved_pods: Sequence[str] | None = None,
        policy: PodPolicy | None = None,
        identity_key: str | Path | None = None,
        pinned_keys: Mapping[str, str] | None = None,
        source_path: str | Path | None = None,
        *,
        data: pd.DataFrame | None = None,
    ) -> None:
        if (datasource is None) == (data is None):
            raise PodConfigError(
                f"pod {name!r}: give its data as exactly one of datasource= (e.g. "
                "CSVSource('data.csv')) and data= (a pandas DataFrame held in memory)"
            )
        self.name = name
        # data=frame is DataFrameSource(frame): the pod reads a copy, never the frame itself.
        self.datasource = datasource if datasource is not None else DataFrameSource(data)
        self.schema = schema
        self.schema_options = schema_options
        self.split = split
        self.approved_pods = approved_pods
        # None means the owner's defaults; storing them spares every reader a None check.
        self.policy = policy if policy is not None else PodPolicy()
        self.identity_key = identity_key
        self.pinned_keys = pinned_keys
        self.source_path = source_path

    def __repr__(self) -> str:
        return f"Pod(name={self.name!r}, datasource={self.datasource!r})"

    # -- construction from YAML -----------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path) -> Pod:
        path = Path(path)
        data = read_yaml(
            path,
            what="pod file",
            error=PodConfigError,
            fix="check the path, or run `fedplug demo census-income` to write the demo pods",
        )
        return cls.from_dict(data, path.parent, source_path=path)

    @classmethod
    def from_dict(
        cls,
        d: Mapping[str, Any],
        base_dir: str | Path | None = None,
        *,
        source_path: str | Path | None = None,
    ) -> Pod:
        """Build from the YAML form; relative paths resolve against ``base_dir``."""
        where = f"pod file '{source_path}'" if source_path is not None else "pod definition"
        if not isinstance(d, Mapping):
            raise PodConfigError(
                f"{where}: expected a mapping with keys {quoted(POD_KEYS)}, got {short_value(d)}"
            )
        _unknown_keys(d, POD_KEYS, where)
        for key in ("name", "datasource"):
            if d.get(key) is None:
                raise PodConfigError(
                    f"{where}: missing required key {key!r}; a pod needs at least `name:` and "
                    "`datasource: {type: csv, path: data.csv}`"
                )
        name = d["name"]
        if not isinstance(name, str) or not _POD_NAME.match(name):
            raise PodConfigError(
                f"{where}: name must be letters, digits, '.', '_' or '-' (starting with a "
                f"letter or digit), got {short_value(name)}"
            )
        where = f"{where} (pod {name!r})"
        base = Path(base_dir) if base_dir is not None else None

        try:
            datasource = datasource_from_config(d["datasource"], base)
            split = split_from_config(d.get("split"))
            policy = PodPolicy.from_dict(d.get("policy"))
        except (ConfigError, DataSourceError) as exc:
            raise PodConfigError(f"{where}: {exc}") from exc

        schema: Path | None = None
        schema_options: dict[str, Any] | None = None
        schema_cfg = _mapping(d.get("schema"), f"{where}: schema", "{file: schema.yaml}")
        _unknown_keys(schema_cfg, SCHEMA_KEYS, f"{where}: schema")
        if "file" in schema_cfg and "infer" in schema_cfg:
            raise PodConfigError(
                f"{where}: schema has both 'file' and 'infer'; give one: `file:` to load an "
                "agreed schema, or `infer:` to infer it from the data"
            )
        if "file" in schema_cfg:
            file = schema_cfg["file"]
            if not isinstance(file, str) or not file:
                raise PodConfigError(
                    f"{where}: schema.file must be a path, got {short_value(file)}"
                )
            schema = Path(file).expanduser()
            if base is not None and not schema.is_absolute():
                schema = base / schema
        else:
            schema_options = _check_infer_options(schema_cfg.get("infer"), where)

        if "approved_pods" in d and "other_pods" in d:
            raise PodConfigError(
                f"{where}: both 'approved_pods' and 'other_pods' are given; they are the same "
                "setting (other_pods is an alias), keep only approved_pods"
            )
        approved_cfg = d.get("approved_pods", d.get("other_pods"))
        key = "approved_pods" if "approved_pods" in d else "other_pods"
        approved = None if approved_cfg is None else _names(approved_cfg, f"{where}: {key}")

        identity = _mapping(d.get("identity"), f"{where}: identity", "{key_file: pod.pem}")
        _unknown_keys(identity, IDENTITY_KEYS, f"{where}: identity")
        key_file = identity.get("key_file")
        if key_file is not None:
            if not isinstance(key_file, str) or not key_file:
                raise PodConfigError(
                    f"{where}: identity.key_file must be a path, got {short_value(key_file)}"
                )
            key_file = Path(key_file).expanduser()
            if base is not None and not key_file.is_absolute():
                key_file = base / key_file
        pinned = identity.get("pinned_keys")
        if pinned is not None:
            pinned = dict(
                _mapping(pinned, f"{where}: identity.pinned_keys", "{pod-b: <base64 key>}")
            )

        return cls(
            name=name,
            datasource=datasource,
            schema=schema,
            schema_options=schema_options,
            split=split,
            approved_pods=approved,
            policy=policy,
            identity_key=key_file,
            pinned_keys=pinned,
            source_path=source_path,
        )

    # -- checks ---------------------------------------------------------------------------
    @property
    def _where(self) -> str:
        origin = f" ({self.source_path})" if self.source_path is not None else ""
        return f"pod {self.name!r}{origin}"

    def check(self) -> None:
        """Validate the configuration without reading the data.

        Raises PodConfigError, or SchemaError for a missing or malformed schema file.
        """
        self._check()

    def _check(self) -> Schema | None:
        if not isinstance(self.name, str) or not _POD_NAME.match(self.name):
            raise PodConfigError(
                f"pod name must be letters, digits, '.', '_' or '-' (starting with a letter or "
                f"digit), got {short_value(self.name)}"
            )
        where = self._where
        if not isinstance(self.datasource, Datasource):
            raise PodConfigError(
                f"{where}: datasource must be a Datasource (e.g. CSVSource('data.csv')), got "
                f"{type_name(self.datasource)}"
            )
        if self.schema is not None and not isinstance(self.schema, (Schema, str, Path)):
            raise PodConfigError(
                f"{where}: schema must be a Schema or the path of a schema file, got "
                f"{type_name(self.schema)}"
            )
        if self.schema is not None and self.schema_options:
            raise PodConfigError(
                f"{where}: give either a schema or schema_options (inference options), not both"
            )
        _check_infer_options(self.schema_options, where)
        if self.split is not None and not isinstance(self.split, Split):
            raise PodConfigError(
                f"{where}: split must be a Split (PercentageSplit or ColumnSplit), got "
                f"{type_name(self.split)}"
            )
        if self.policy is not None and not isinstance(self.policy, PodPolicy):
            raise PodConfigError(
                f"{where}: policy must be a PodPolicy, got {type_name(self.policy)}"
            )
        approved = None
        if self.approved_pods is not None:
            approved = _names(list(self.approved_pods), f"{where}: approved_pods")
        policy = self.policy or PodPolicy()
        if approved is not None:
            others = {p for p in approved if p != self.name}
            if len(others) + 1 < policy.min_pods:
                raise PodConfigError(
                    f"{where}: policy.min_pods is {policy.min_pods} but approved_pods allows "
                    f"only {len(others)} other pod(s) ({quoted(sorted(others))}), so this pod "
                    "could never take part; approve more pods or lower min_pods"
                )
        self._check_identity(where, approved)
        if policy.require_secure_aggregation:
            self._check_secure_identity(where, approved)
        return self._schema_file_schema()  # a missing or malformed schema file fails here

    def _check_secure_identity(self, where: str, approved: tuple[str, ...] | None) -> None:
        """A pod that requires secure aggregation must know who its peers are.

        A key bundle proves only possession of the key it carries, so without a pinned
        identity key for every approved pod the server could invent a peer and unmask this
        pod's update.
        """
        problems = []
        if approved is None:
            problems.append("approved_pods is not set (which pods may it be summed with?)")
        if self.identity_key is None:
            problems.append("identity.key_file is not set (this pod's own identity key)")
        pinned = self.pinned_keys if isinstance(self.pinned_keys, Mapping) else {}
        unpinned = [p for p in approved or () if p != self.name and p not in pinned]
        if unpinned:
            problems.append(
                f"identity.pinned_keys has no key for approved pod(s) {quoted(unpinned)}"
            )
        if problems:
            pod_file = self.source_path or "POD.yaml"
            raise PodConfigError(
                f"{where}: policy.require_secure_aggregation needs approved_pods, this pod's "
                f"identity key and a pinned identity key for every approved pod, but "
                + "; ".join(problems)
                + f". Run `fedplug pod keys {pod_file}` on each pod's machine: it creates the "
                "pod's identity key and prints the lines its peers paste into their pod files."
            )

    def _check_identity(self, where: str, approved: tuple[str, ...] | None) -> None:
        if self.identity_key is not None:
            key = Path(self.identity_key)
            if not key.is_file():
                raise PodConfigError(
                    f"{where}: identity.key_file '{key}' does not exist; create it with "
                    f"`fedplug pod keys {self.source_path or 'POD.yaml'}` or fix the path"
                )
            info = key.stat()
            if info.st_mode & 0o077:
                raise PodConfigError(
                    f"{where}: identity.key_file '{key}' is readable or writable by other "
                    f"users; make it private: chmod 600 '{key}'"
                )
            if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
                raise PodConfigError(
                    f"{where}: identity.key_file '{key}' belongs to another user; the pod's "
                    "identity key must be its owner's own file (create one with "
                    f"`fedplug pod keys {self.source_path or 'POD.yaml'}`)"
                )
        if not self.pinned_keys:
            return
        if not isinstance(self.pinned_keys, Mapping):
            raise PodConfigError(
                f"{where}: identity.pinned_keys must map pod names to base64 public keys"
            )
        if approved is not None:
            strangers = [p for p in self.pinned_keys if p not in approved]
            if strangers:
                raise PodConfigError(
                    f"{where}: identity.pinned_keys names pod(s) {quoted(strangers)} that are "
                    f"not in approved_pods ({quoted(approved)}); approve them or remove the keys"
                )
        for pod, value in self.pinned_keys.items():
            try:
                if not isinstance(value, str):
                    raise TypeError(type_name(value))
                base64.b64decode(value, validate=True)
            except (binascii.Error, TypeError, ValueError) as exc:
                raise PodConfigError(
                    f"{where}: identity.pinned_keys[{pod!r}] is not a base64 public key "
                    f"({short_value(value)}); paste the key the pod's owner published"
                ) from exc

    # -- the table a task names -----------------------------------------------------------
    def table_names(self) -> tuple[str, ...]:
        """The names of the one table this pod serves: its own name, and for a SQL table
        (``datasource.table``) that table's name."""
        names = [self.name]
        if isinstance(self.datasource, SQLSource) and isinstance(self.datasource.table, str):
            names.append(self.datasource.table)
        return tuple(dict.fromkeys(names))

    def check_table(self, table: object) -> None:
        """Refuse a datastructure's ``table`` for this pod unless it names the pod's table.

        A pod serves one table, the one its owner configured and its schema describes;
        a task cannot make it read another (even another table of the same database).
        ``None`` (no table named) is always fine.
        """
        if table is None:
            return
        names = self.table_names()
        if table in names:
            return
        if isinstance(self.datasource, SQLSource) and self.datasource.table is not None:
            held = f"its datasource reads SQL table {self.datasource.table!r} only"
        else:
            held = (
                f"its datasource ({_describe(self.datasource)}) is one table, named after the pod"
            )
        raise DataStructureError(
            f"datastructure: table {short_value(table)} for pod {self.name!r} is not a table "
            f"this pod serves: {held}, and a pod serves only the table its owner configured "
            f"(validated against its schema). Tables of pod {self.name!r}: {quoted(names)}. "
            f"Write table={{{self.name!r}: {names[-1]!r}}} (datastructure.table), or leave "
            "table out"
        )

    def _schema_file_schema(self) -> Schema | None:
        if isinstance(self.schema, Schema) or self.schema is None:
            return self.schema
        try:
            return Schema.from_yaml(self.schema)
        except SchemaError as exc:
            raise SchemaError(f"{self._where}: {exc}") from exc

    # -- loading --------------------------------------------------------------------------
    def load(self) -> LoadedPod:
        """Read the datasource, validate it against the schema, split it.

        Raises DataSourceError / SchemaError / DataValidationError naming the pod; the
        source is never modified.
        """
        given = self._check()
        split = self.split or PercentageSplit()
        try:
            frame = self.datasource.load()
        except DataSourceError as exc:
            raise DataSourceError(f"pod {self.name!r}: {exc}") from exc
        consumed = [c for c in split.consumed_columns if c in frame.columns]
        if given is None:
            options = dict(self.schema_options or {})
            options["ignore_cols"] = list(
                dict.fromkeys([*options.get("ignore_cols", ()), *consumed])
            )
            try:
                schema = Schema.infer(frame, name=self.name, warn_as=self._where, **options)
            except SchemaError as exc:
                raise SchemaError(
                    f"{self._where}: cannot infer the schema: {exc} (options go under "
                    "schema.infer in the pod YAML)"
                ) from exc
        else:
            keep = [c for c in given.columns if c not in consumed]
            schema = Schema([given[c] for c in keep], name=given.name, num_rows=len(frame))
        schema.validate(frame, pod=self.name)
        try:
            train, validation = split.apply(frame)
        except DataValidationError as exc:
            raise DataValidationError(
                f"pod {self.name!r}: {exc}", exc.violations, pod=self.name, columns=exc.columns
            ) from exc
        return LoadedPod(name=self.name, schema=schema, train=train, validation=validation)

    # -- display --------------------------------------------------------------------------
    def summary(self) -> str:
        """A few lines describing the pod's configuration (the data is not read)."""
        lines = [f"pod {self.name!r}" + (f" ({self.source_path})" if self.source_path else "")]
        lines.append(f"  datasource: {_describe(self.datasource)}")
        if isinstance(self.schema, Schema):
            lines.append(f"  schema: given in code (schema {self.schema.name!r})")
        elif self.schema is not None:
            lines.append(f"  schema: file '{self.schema}'")
        else:
            options = ", ".join(f"{k}={v!r}" for k, v in (self.schema_options or {}).items())
            lines.append(f"  schema: inferred from the data{f' ({options})' if options else ''}")
        lines.append(f"  split: {(self.split or PercentageSplit()).describe()}")
        approved = "any pod" if self.approved_pods is None else quoted(self.approved_pods)
        lines.append(f"  approved pods: {approved}")
        policy = self.policy or PodPolicy()
        lines.append(
            "  policy: secure aggregation "
            f"{'required' if policy.require_secure_aggregation else 'not required'}; "
            f"min pods {policy.min_pods}; accepted tasks {', '.join(policy.accepted_tasks)}"
        )
        identity = f"key file '{self.identity_key}'" if self.identity_key else "no key file"
        if self.pinned_keys:
            identity += f"; pinned keys for {quoted(self.pinned_keys)}"
        lines.append(f"  identity: {identity}")
        return "\n".join(lines)


def _describe(datasource: Any) -> str:
    if isinstance(datasource, Datasource):
        return datasource.describe()
    return f"(not a Datasource: {type_name(datasource)})"
