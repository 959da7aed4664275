"""``combine_pod_schemas``: the one schema a federated model is built from."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from fedplug._errors import SchemaError
from fedplug.data._columns import Category, ColumnSpec
from fedplug.data._schema import Schema
from fedplug.data._text import quoted, short_value

_FIX_VOCABULARY = "agree on one schema file and load it in each pod (schema.file in the pod YAML)"
_FIX_UNION = (
    "Where vocabularies differ: agree on one schema file and load it in each pod (schema.file "
    "in the pod YAML); pods that inferred their schemas from their own data get one from the "
    "union of their vocabularies, with combine_pod_schemas(..., vocabularies='union') and "
    "Schema.to_yaml, or `fedplug schema agree POD... -o agreed.schema.yaml`."
)
VOCABULARIES: tuple[str, ...] = ("exact", "union")


def _pods(names: Iterable[str]) -> str:
    names = list(names)
    return f"pod{'s' if len(names) > 1 else ''} {quoted(names)}"


def _vocabulary_problem(column: str, specs: Mapping[str, ColumnSpec]) -> str | None:
    vocab = {pod: set(spec.categories or ()) for pod, spec in specs.items()}
    union = set().union(*vocab.values())
    common = set.intersection(*vocab.values())
    if union == common:
        return None
    # Group the values by which pods hold them, so each clause reads "X have ..., Y lack".
    groups: dict[tuple[str, ...], list[Category]] = {}
    for value in sorted(union - common, key=lambda v: (type(v).__name__, v)):
        holders = tuple(pod for pod in specs if value in vocab[pod])
        groups.setdefault(holders, []).append(value)
    clauses = []
    for holders, values in groups.items():
        lacking = [pod for pod in specs if pod not in holders]
        has = "has" if len(holders) == 1 else "have"
        lacks = "lacks" if len(lacking) == 1 else "lack"
        it = "it" if len(values) == 1 else "them"
        clauses.append(
            f"{_pods(holders)} {has} extra {list(values)!r}, {_pods(lacking)} {lacks} {it}"
        )
    # The fix is said once, after all problems (see combine_pod_schemas).
    return f"column {column!r}: vocabularies differ: {'; '.join(clauses)}"


def _combine_column(
    column: str, specs: Mapping[str, ColumnSpec], vocabularies: str
) -> tuple[ColumnSpec | None, list[str]]:
    problems: list[str] = []
    stypes = {pod: spec.stype for pod, spec in specs.items()}
    if len(set(stypes.values())) > 1:
        described = ", ".join(f"pod {pod!r} has {stype}" for pod, stype in stypes.items())
        problems.append(
            f"column {column!r}: semantic types differ: {described}; give it the same stype in "
            "every pod (force_stypes under schema.infer in the pod YAML, or one shared schema "
            "file)"
        )
        return None, problems
    first = next(iter(specs.values()))
    dtypes = {pod: spec.dtype for pod, spec in specs.items()}
    dtype = first.dtype
    if len(set(dtypes.values())) > 1:
        if first.stype == "continuous":
            dtype = "float"  # int in one pod, float in another: both scale the same way
        else:
            described = ", ".join(f"pod {pod!r} has {dt}" for pod, dt in dtypes.items())
            problems.append(
                f"column {column!r}: value types differ: {described}; {_FIX_VOCABULARY}"
            )
            return None, problems
    categories = first.categories
    if first.stype == "categorical":
        if vocabularies == "union":
            # Same dtype in every pod (checked above), so the values sort together;
            # ColumnSpec stores them sorted, which makes the order deterministic.
            categories = tuple(set().union(*(s.categories or () for s in specs.values())))
        else:
            problem = _vocabulary_problem(column, specs)
            if problem:
                problems.append(problem)
                return None, problems
    description = next((s.description for s in specs.values() if s.description), None)
    combined = ColumnSpec(
        name=column,
        stype=first.stype,
        dtype=dtype,
        categories=categories,
        nullable=any(s.nullable for s in specs.values()),
        description=description,
    )
    return combined, problems


def combine_pod_schemas(
    schemas: Mapping[str, Schema],
    columns: Iterable[str] | None = None,
    *,
    vocabularies: str = "exact",
) -> Schema:
    """Check that the pods' schemas agree and return the combined schema.

    ``schemas`` maps pod name -> schema (what each pod publishes: metadata, never rows).
    Every used column (``columns``, or the union of all pods' columns) must be in every pod
    with the same stype (int and float continuous columns combine as float). Categorical
    vocabularies must be equal with ``vocabularies="exact"``; with ``"union"`` the combined
    vocabulary is their union, so pods that inferred their schemas from different subsets of
    the data reach one schema each can adopt (a pod may hold a subset of a vocabulary). A
    column is nullable if it is in any pod. All mismatches are reported in one
    ``SchemaError``. The combined ``num_rows`` is the pods' sum.
    """
    if vocabularies not in VOCABULARIES:
        raise SchemaError(
            f"combine_pod_schemas: vocabularies must be one of {quoted(VOCABULARIES)}, got "
            f"{short_value(vocabularies)}; 'exact' requires equal vocabularies, 'union' "
            "combines them"
        )
    if not isinstance(schemas, Mapping) or not schemas:
        raise SchemaError(
            "combine_pod_schemas needs a non-empty mapping of pod name -> Schema; fetch each "
            "pod's schema first"
        )
    not_schemas = [pod for pod, s in schemas.items() if not isinstance(s, Schema)]
    if not_schemas:
        raise SchemaError(
            f"combine_pod_schemas: the value for {_pods(not_schemas)} is not a Schema; pass "
            "Schema objects (Schema.from_dict turns published metadata into one)"
        )
    pods = list(schemas)
    if columns is None:
        used: list[str] = []
        for schema in schemas.values():
            used += [c for c in schema.columns if c not in used]
    else:
        used = [columns] if isinstance(columns, str) else list(dict.fromkeys(columns))
        nowhere = [c for c in used if not any(c in s for s in schemas.values())]
        if nowhere:
            raise SchemaError(
                f"column(s) {quoted(nowhere)} are in none of {_pods(pods)}; use columns the "
                "pods have (check the datastructure's selected columns and target)"
            )
    problems: list[str] = []
    combined: list[ColumnSpec] = []
    for column in used:
        missing = [pod for pod in pods if column not in schemas[pod]]
        if missing:
            present = [pod for pod in pods if pod not in missing]
            problems.append(
                f"column {column!r} is missing from {_pods(missing)} (present in "
                f"{_pods(present)}); add it to that data, or leave the column out of the "
                "datastructure (ignore_cols)"
            )
            continue
        spec, found = _combine_column(
            column, {pod: schemas[pod][column] for pod in pods}, vocabularies
        )
        problems += found
        if spec is not None:
            combined.append(spec)
    if problems:
        vocabulary = any(": vocabularies differ: " in p for p in problems)
        raise SchemaError(
            f"the schemas of {_pods(pods)} do not agree ({len(problems)} problem"
            f"{'s' if len(problems) != 1 else ''}):\n"
            + "\n".join(f"  - {p}" for p in problems)
            + (f"\n{_FIX_UNION}" if vocabulary else "")
        )
    counts = [s.num_rows for s in schemas.values()]
    known = [c for c in counts if c is not None]
    total = sum(known) if len(known) == len(counts) else None
    return Schema(combined, name=None, num_rows=total)
