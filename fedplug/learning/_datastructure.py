"""Which columns of a pod's table a task uses: the target and the features."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from fedplug._errors import DataStructureError
from fedplug._validation import check_known_keys

if TYPE_CHECKING:
    from fedplug.data import Schema


class PodTables(Protocol):
    """What :meth:`DataStructure.check_pods` needs of a pod (``fedplug.Pod`` has it)."""

    name: str

    def check_table(self, table: object) -> None: ...


_KEYS = ("target", "table", "selected_cols", "ignore_cols")
#: What :meth:`DataStructure.resolve` can check a target for.
TASKS = ("classification", "regression", "auto")


@dataclass(frozen=True)
class ResolvedColumns:
    """The columns a datastructure uses on a given schema, in schema order."""

    target: str
    categorical: list[str] = field(default_factory=list)
    continuous: list[str] = field(default_factory=list)
    classes: tuple = ()
    #: "classification" (a categorical target, ``classes`` its values) or "regression"
    #: (a continuous target).
    task: str = "classification"

    @property
    def features(self) -> list[str]:
        """Categorical then continuous feature columns (the encoder's order)."""
        return [*self.categorical, *self.continuous]

    @property
    def scaled(self) -> list[str]:
        """The columns scaled by cross-pod statistics: the continuous features, then a
        regression's target (standardized like a feature, so losses and updates are of
        order one whatever the target's units)."""
        if self.task == "regression":
            return [*self.continuous, self.target]
        return list(self.continuous)


def _names(value: object, what: str) -> list[str]:
    # A bare string would silently iterate over its characters.
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise DataStructureError(
            f"datastructure: {what} must be a list of column names, got {value!r}; "
            f"write e.g. {what}=['age', 'workclass']"
        )
    names = list(value)
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise DataStructureError(
            f"datastructure: {what} must contain column names (strings), got {bad!r}; "
            "quote the column names"
        )
    return names


def _as_list(value: Any) -> Any:
    # Strings and scalars are kept as they are so resolve() reports them clearly.
    if value is None or isinstance(value, str) or not isinstance(value, Iterable):
        return value
    return list(value)


class DataStructure:
    """The target column and the feature columns of a task.

    ``table`` names the table each pod reads: one name for all pods, or a mapping
    ``{pod name: table name}``. ``__init__`` only stores; :meth:`resolve` and
    :meth:`check_pods` validate against a schema and a set of pods.
    """

    def __init__(
        self,
        target: str,
        table: str | Mapping[str, str] | None = None,
        selected_cols: Sequence[str] | None = None,
        ignore_cols: Sequence[str] = (),
    ) -> None:
        self.target = target
        self.table = table
        self.selected_cols = selected_cols
        self.ignore_cols = ignore_cols

    def resolve(self, schema: Schema, task: str = "classification") -> ResolvedColumns:
        """Check the datastructure against ``schema`` and list the columns it uses.

        ``task`` is what the model predicts: "classification" needs a categorical target
        with at least two classes, "regression" a continuous one; "auto" takes the one the
        target's semantic type calls for (how a task already checked by its model is read
        back). Text columns are left out silently (the tabular models cannot use them).
        """
        if task not in TASKS:
            raise DataStructureError(
                f"datastructure: task must be one of {list(TASKS)}, got {task!r}"
            )
        available = list(schema.columns)
        categorical = set(schema.categorical())
        if task == "auto" and isinstance(self.target, str) and self.target in schema:
            task = "regression" if schema[self.target].stype == "continuous" else "classification"
        regression = task == "regression"
        # The columns the model can predict, named in every error about the target.
        kind, usable = (
            ("continuous", sorted(schema.continuous()))
            if regression
            else ("categorical", sorted(categorical))
        )
        if not isinstance(self.target, str) or not self.target:
            raise DataStructureError(
                f"datastructure: target must be a column name, got {self.target!r}; "
                f"pick one of the {kind} columns {usable}"
            )
        if self.target not in schema:
            raise DataStructureError(
                f"datastructure: target column {self.target!r} is not in the schema; "
                f"pick one of the {kind} columns {usable}"
            )
        stype = schema[self.target].stype
        if regression and stype != "continuous":
            raise DataStructureError(
                f"datastructure: target column {self.target!r} is {stype}, but a regressor "
                f"needs a continuous target; pick one of the continuous columns {usable}, "
                "use a classifier (model=tabular_classifier) for a categorical target, or "
                "force the column's stype to continuous in the schema if its values are "
                "numbers"
            )
        if not regression and self.target not in categorical:
            hint = (
                ", use a regressor (model=tabular_regressor) for a continuous target,"
                if stype == "continuous"
                else ""
            )
            raise DataStructureError(
                f"datastructure: target column {self.target!r} is "
                f"{stype}, but a classifier needs a categorical target; "
                f"pick one of the categorical columns {usable}{hint} or force the "
                f"column's stype to categorical in the schema"
            )
        classes = () if regression else tuple(schema[self.target].categories or ())
        if not regression and len(classes) < 2:
            raise DataStructureError(
                f"datastructure: target column {self.target!r} has {len(classes)} class(es) "
                f"{list(classes)} in the schema; a classifier needs at least 2"
            )

        ignored = _names(self.ignore_cols, "ignore_cols")
        selected = (
            None if self.selected_cols is None else _names(self.selected_cols, "selected_cols")
        )
        unknown = [c for c in [*(selected or []), *ignored] if c not in schema]
        if unknown:
            raise DataStructureError(
                f"datastructure: unknown column(s) {sorted(set(unknown))} in "
                f"selected_cols/ignore_cols; available columns are {available}"
            )
        both = sorted(set(selected or ()) & set(ignored))
        if both:
            raise DataStructureError(
                f"datastructure: column(s) {both} are both selected and ignored; "
                "remove them from one of selected_cols and ignore_cols"
            )
        if self.target in ignored:
            raise DataStructureError(
                f"datastructure: target column {self.target!r} is in ignore_cols; "
                "remove it from ignore_cols (the target is never used as a feature)"
            )

        wanted = set(available if selected is None else selected) - set(ignored) - {self.target}
        cat = [c for c in available if c in wanted and schema[c].stype == "categorical"]
        cont = [c for c in available if c in wanted and schema[c].stype == "continuous"]
        if not cat and not cont:
            raise DataStructureError(
                f"datastructure: no feature columns left for target {self.target!r} "
                "(text columns are not used); select at least one categorical or "
                f"continuous column from {available}"
            )
        return ResolvedColumns(
            target=self.target,
            categorical=cat,
            continuous=cont,
            classes=classes,
            task="regression" if regression else "classification",
        )

    def table_for(self, pod: str) -> str | None:
        """The table named for ``pod``: the one ``table`` name, its entry, or None."""
        if isinstance(self.table, Mapping):
            return self.table.get(pod)
        return self.table

    def _check_table_value(self) -> None:
        table = self.table
        if table is None or (isinstance(table, str) and table):
            return
        if isinstance(table, Mapping):
            bad = {
                k: v
                for k, v in table.items()
                if not isinstance(k, str) or not isinstance(v, str) or not v
            }
            if not bad:
                return
            raise DataStructureError(
                f"datastructure: table must map pod names to table names (strings), got "
                f"{bad!r}; write e.g. table={{'pod-a': 'pod-a'}}"
            )
        raise DataStructureError(
            f"datastructure: table must be a table name or a mapping {{pod name: table "
            f"name}}, got {table!r}; leave it out to use each pod's own table"
        )

    def check_pods(self, pods: Iterable[str | PodTables]) -> None:
        """Check ``table`` against the pods of a run, before any pod reads data.

        ``pods`` are pod names or pod objects (``fedplug.Pod``). With a per-pod ``table``
        mapping, every pod must be in it and vice versa; with pod objects, each pod must
        serve the table named for it (see ``Pod.check_table``).
        """
        self._check_table_value()
        entries = list(pods)
        names = [p if isinstance(p, str) else p.name for p in entries]
        if isinstance(self.table, Mapping):
            present = set(names)
            mapped = set(self.table)
            missing = sorted(present - mapped)
            extra = sorted(mapped - present)
            if missing or extra:
                parts = []
                if missing:
                    parts.append(f"pod(s) {missing} have no entry in datastructure.table")
                if extra:
                    parts.append(
                        f"datastructure.table names pod(s) {extra} that are not in the run"
                    )
                raise DataStructureError(
                    "datastructure: " + "; ".join(parts) + f" (pods in the run: "
                    f"{sorted(present)}); give exactly one table per pod in datastructure.table"
                )
        for pod in entries:
            if not isinstance(pod, str):
                pod.check_table(self.table_for(pod.name))

    def to_dict(self) -> dict[str, Any]:
        """A plain, YAML/JSON-safe dictionary."""
        table = dict(self.table) if isinstance(self.table, Mapping) else self.table
        return {
            "target": self.target,
            "table": table,
            "selected_cols": None if self.selected_cols is None else list(self.selected_cols),
            "ignore_cols": list(self.ignore_cols),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataStructure:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        if not isinstance(data, Mapping):
            raise DataStructureError(
                f"datastructure: expected a mapping with keys {list(_KEYS)}, got {data!r}"
            )
        check_known_keys(data, _KEYS, where="datastructure", error=DataStructureError)
        if "target" not in data:
            raise DataStructureError(
                "datastructure: missing key 'target'; name the column to predict"
            )
        table = data.get("table")
        if isinstance(table, Mapping):
            table = dict(table)
        return cls(
            target=data["target"],
            table=table,
            selected_cols=_as_list(data.get("selected_cols")),
            ignore_cols=_as_list(data.get("ignore_cols")) or [],
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DataStructure):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        return f"DataStructure({args})"
