"""combine_pod_schemas: agreement across pods, and errors naming column, pods and values."""

from __future__ import annotations

import pytest

from fedplug._errors import SchemaError
from fedplug.data import ColumnSpec, Schema, combine_pod_schemas

WORK = ("Private", "State-gov", "Never-worked")


def _schema(workclass=WORK, *, age_stype="continuous", age_dtype="int", rows=10, extra=()):
    age = (
        ColumnSpec("age", "continuous", age_dtype)
        if age_stype == "continuous"
        else ColumnSpec("age", "categorical", "int", (20, 30))
    )
    return Schema(
        [
            age,
            ColumnSpec("workclass", "categorical", "string", workclass),
            ColumnSpec("TARGET", "categorical", "string", ("<=50K", ">50K")),
            *extra,
        ],
        num_rows=rows,
    )


def test_agreeing_schemas_combine_and_counts_add_up():
    a = _schema(rows=10)
    b = Schema(
        [
            ColumnSpec("age", "continuous", "int"),
            ColumnSpec("workclass", "categorical", "string", WORK, nullable=True),
            ColumnSpec("TARGET", "categorical", "string", (">50K", "<=50K")),
        ],
        num_rows=32,
    )

    combined = combine_pod_schemas({"a": a, "b": b})

    assert combined.columns == ["age", "workclass", "TARGET"]
    assert combined.num_rows == 42
    assert combined["workclass"].categories == tuple(sorted(WORK))
    assert combined["workclass"].nullable is True
    assert combined["age"].nullable is False


def test_differing_vocabularies_name_the_column_the_pods_and_the_values():
    a = _schema(WORK)
    b = _schema(("Private", "State-gov"))

    with pytest.raises(SchemaError) as info:
        combine_pod_schemas({"a": a, "b": b})

    message = str(info.value)
    assert (
        "column 'workclass': vocabularies differ: pod 'a' has extra ['Never-worked'], "
        "pod 'b' lacks it" in message
    )
    assert "agree on one schema file and load it in each pod (schema.file in the pod YAML)" in (
        message
    )


def test_differing_stypes_name_the_column_the_pods_and_the_stypes():
    with pytest.raises(SchemaError) as info:
        combine_pod_schemas({"a": _schema(), "b": _schema(age_stype="categorical")})

    message = str(info.value)
    assert (
        "column 'age': semantic types differ: pod 'a' has continuous, pod 'b' has categorical"
        in message
    )
    assert "force_stypes" in message


def test_all_mismatches_are_collected_into_one_error():
    a = _schema(WORK, extra=[ColumnSpec("zip", "continuous", "int")])
    b = _schema(("Private", "Self-emp"), age_stype="categorical")

    with pytest.raises(SchemaError) as info:
        combine_pod_schemas({"a": a, "b": b})

    message = str(info.value)
    assert message.startswith("the schemas of pods 'a', 'b' do not agree (3 problems):")
    assert "column 'age': semantic types differ" in message
    assert "pod 'a' has extra ['Never-worked', 'State-gov'], pod 'b' lacks them" in message
    assert "pod 'b' has extra ['Self-emp'], pod 'a' lacks it" in message
    assert "column 'zip' is missing from pod 'b' (present in pod 'a')" in message


def test_columns_restricts_the_check_to_the_used_columns():
    a = _schema(WORK, extra=[ColumnSpec("zip", "continuous", "int")])
    b = _schema(("Private",))

    combined = combine_pod_schemas({"a": a, "b": b}, columns=["age", "TARGET"])

    assert combined.columns == ["age", "TARGET"]
    with pytest.raises(SchemaError, match="column 'zip' is missing from pod 'b'"):
        combine_pod_schemas({"a": a, "b": b}, columns=["age", "zip"])
    with pytest.raises(SchemaError, match=r"column\(s\) 'height' are in none of pods 'a', 'b'"):
        combine_pod_schemas({"a": a, "b": b}, columns=["height"])


def test_int_and_float_continuous_columns_combine_as_float():
    combined = combine_pod_schemas({"a": _schema(), "b": _schema(age_dtype="float")})

    assert combined["age"].dtype == "float"


def test_three_pods_group_values_by_holders():
    schemas = {
        "a": _schema(("x", "y")),
        "b": _schema(("x", "y")),
        "c": _schema(("x",)),
    }

    with pytest.raises(SchemaError) as info:
        combine_pod_schemas(schemas)

    assert "pods 'a', 'b' have extra ['y'], pod 'c' lacks it" in str(info.value)


def test_bad_arguments():
    with pytest.raises(SchemaError, match="needs a non-empty mapping of pod name"):
        combine_pod_schemas({})
    with pytest.raises(SchemaError, match="the value for pod 'b' is not a Schema"):
        combine_pod_schemas({"a": _schema(), "b": {"columns": {}}})  # type: ignore[dict-item]
