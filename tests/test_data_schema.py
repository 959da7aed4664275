"""Schema: inference rules, YAML / dict round trips, malformed files, mapping behaviour."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fedplug._errors import SchemaError
from fedplug.data import ColumnSpec, Schema

# -- inference --------------------------------------------------------------------------------


def test_infer_applies_default_rules(data_people):
    schema = Schema.infer(data_people, name="people")

    assert schema.name == "people"
    assert schema.num_rows == 8
    assert schema.columns == ["age", "income", "city", "member"]
    assert schema["age"] == ColumnSpec("age", "continuous", "int", None, False, None)
    assert schema["income"].stype == "continuous" and schema["income"].dtype == "float"
    assert schema["city"].stype == "categorical"
    assert schema["city"].dtype == "string"
    assert schema["city"].categories == ("Lyon", "Nice", "Paris")
    assert schema["member"].stype == "categorical"
    assert schema["member"].categories == (False, True)
    assert schema.continuous() == ["age", "income"]
    assert schema.categorical() == ["city", "member"]
    assert schema.text() == []


def test_infer_string_column_with_many_values_is_text():
    frame = pd.DataFrame({"comment": [f"note {i}" for i in range(12)], "k": ["a", "b"] * 6})

    schema = Schema.infer(frame, max_categories=10)

    assert schema["comment"].stype == "text"
    assert schema["comment"].categories is None
    assert schema["k"].stype == "categorical"


def test_infer_force_stypes_overrides_defaults(data_people):
    schema = Schema.infer(data_people, force_stypes={"age": "categorical", "city": "text"})

    assert schema["age"].stype == "categorical"
    assert schema["age"].dtype == "int"
    assert schema["age"].categories == (25, 29, 32, 38, 44, 47, 51, 60)
    assert all(type(v) is int for v in schema["age"].categories)
    assert schema["city"].stype == "text"


def test_infer_nulls_make_a_column_nullable_and_stay_out_of_vocabularies():
    # An int column with a missing value is read by pandas as float.
    frame = pd.DataFrame({"grade": [1, 2, None, 2], "colour": ["red", None, "blue", "red"]})

    schema = Schema.infer(frame, force_stypes={"grade": "categorical"})

    assert schema["grade"].nullable and schema["colour"].nullable
    assert schema["grade"].dtype == "int"
    assert schema["grade"].categories == (1, 2)
    assert schema["colour"].categories == ("blue", "red")


def test_infer_ignore_cols_and_descriptions(data_people):
    schema = Schema.infer(data_people, ignore_cols=["member"], descriptions={"age": "age in years"})

    assert "member" not in schema
    assert schema["age"].description == "age in years"


@pytest.mark.parametrize("option", ["force_stypes", "ignore_cols", "descriptions"])
def test_infer_rejects_unknown_columns_and_lists_available(data_people, option):
    value = ["agee"] if option == "ignore_cols" else {"agee": "categorical"}

    with pytest.raises(SchemaError, match=option) as info:
        Schema.infer(data_people, **{option: value})

    message = str(info.value)
    assert "'agee'" in message
    assert "did you mean 'age'" in message
    assert "'age', 'income', 'city', 'member'" in message


def test_infer_rejects_bad_stype_and_lists_valid_ones(data_people):
    with pytest.raises(SchemaError, match="unknown stype 'numeric'") as info:
        Schema.infer(data_people, force_stypes={"age": "numeric"})

    assert "'continuous', 'categorical', 'text'" in str(info.value)
    assert "'age'" in str(info.value)


def test_infer_rejects_impossible_forced_stypes(data_people):
    with pytest.raises(SchemaError, match="column 'city' holds string values"):
        Schema.infer(data_people, force_stypes={"city": "continuous"})
    with pytest.raises(SchemaError, match="only string columns can be 'text'"):
        Schema.infer(data_people, force_stypes={"age": "text"})
    with pytest.raises(SchemaError, match="non-integer numbers and cannot be categorical"):
        Schema.infer(data_people, force_stypes={"income": "categorical"})


def test_infer_rejects_unsupported_and_mixed_columns():
    dates = pd.DataFrame({"when": pd.to_datetime(["2024-01-01", "2024-01-02"])})
    mixed = pd.DataFrame({"m": pd.Series(["a", 1], dtype=object)})

    with pytest.raises(SchemaError, match="column 'when' has dtype datetime64.*ignore_cols"):
        Schema.infer(dates)
    with pytest.raises(SchemaError, match="column 'm' mixes value types"):
        Schema.infer(mixed)
    with pytest.raises(SchemaError, match="needs a pandas DataFrame, got list"):
        Schema.infer([1, 2, 3])  # type: ignore[arg-type]


# -- dict / YAML ------------------------------------------------------------------------------


def test_dict_round_trip_and_metadata_is_json_safe(data_people):
    schema = Schema.infer(data_people.astype({"age": np.int32}), name="people")

    assert Schema.from_dict(schema.to_dict()) == schema
    meta = schema.metadata()
    assert meta["num_rows"] == 8
    assert json.loads(json.dumps(meta)) == meta
    assert Schema.from_dict(meta).num_rows == 8
    assert "num_rows" not in schema.to_dict()


def test_yaml_round_trip_keeps_awkward_categories(tmp_path):
    frame = pd.DataFrame(
        {
            "answer": ["yes", "no", "?", "10th", "<=50K", "1.5", "null", "[x]"],
            "flag": [True, False] * 4,
            "code": [3, 1, 2, 3, 1, 2, 3, 1],
            "comment": [f"free text {i}" for i in range(8)],
        }
    )
    schema = Schema.infer(
        frame,
        name="awkward",
        force_stypes={"code": "categorical", "comment": "text"},
        descriptions={"answer": "what: they said"},
    )
    path = schema.to_yaml(tmp_path / "awkward.schema.yaml")

    loaded = Schema.from_yaml(path)

    assert loaded == schema
    assert loaded["answer"].categories == schema["answer"].categories
    assert loaded["flag"].categories == (False, True)
    text = path.read_text()
    assert text.startswith("#")
    assert "name: awkward" in text
    assert "columns:" in text
    assert "stype: categorical" in text
    assert "num_rows" not in text


def test_yaml_with_defaults_is_accepted(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "columns:\n  age: {stype: continuous}\n  city:\n    stype: categorical\n"
        "    categories: [Paris, Lyon]\n"
    )

    schema = Schema.from_yaml(path)

    assert schema["age"].dtype == "float"
    assert schema["city"].categories == ("Lyon", "Paris")
    assert schema["city"].nullable is False
    assert schema.name is None


def test_malformed_yaml_names_file_and_line(tmp_path, data_digest):
    path = tmp_path / "broken.yaml"
    path.write_text("columns:\n  age:\n    stype: [continuous\n    dtype: int\n")
    before = data_digest(path)

    with pytest.raises(SchemaError, match="is not valid YAML at line") as info:
        Schema.from_yaml(path)

    assert str(path) in str(info.value)
    assert "fix the YAML syntax" in str(info.value)
    assert data_digest(path) == before


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("colums: {}\n", r"unknown key 'colums' \(did you mean 'columns'\?\)"),
        (
            "columns:\n  age: {stipe: continuous}\n",
            r"column 'age': unknown key 'stipe' \(did you mean 'stype'\?\)",
        ),
        (
            "columns:\n  age: {stype: numeric}\n",
            r"column 'age': unknown stype 'numeric'; use one of 'continuous', 'categorical', "
            r"'text'",
        ),
        ("columns:\n  age: {stype: continuous, dtype: double}\n", "unknown dtype 'double'"),
        ("columns:\n  age: {dtype: int}\n", "column 'age': missing key 'stype'"),
        ("columns:\n  c: {stype: categorical}\n", "column 'c': a categorical column needs"),
        (
            "columns:\n  c: {stype: categorical, categories: [yes, no]}\n",
            r"column 'c': categories of a string column must all be string values "
            r"\(quote them in YAML\)",
        ),
        (
            "columns:\n  c: {stype: continuous, categories: [1, 2]}\n",
            "only categorical columns have categories",
        ),
        ("- just\n- a list\n", "expected a mapping"),
        ("name: x\n", "'columns' must be a non-empty mapping"),
    ],
)
def test_bad_schema_files_name_file_and_key(tmp_path, data_digest, text, expected):
    path = tmp_path / "bad.schema.yaml"
    path.write_text(text)
    before = data_digest(path)

    with pytest.raises(SchemaError, match=expected) as info:
        Schema.from_yaml(path)

    assert f"schema file '{path}'" in str(info.value)
    assert data_digest(path) == before


def test_missing_schema_file(tmp_path):
    with pytest.raises(SchemaError, match="schema file '.*nope.yaml' does not exist"):
        Schema.from_yaml(tmp_path / "nope.yaml")
    assert not (tmp_path / "nope.yaml").exists()


# -- mapping behaviour, equality, ColumnSpec -----------------------------------------------------


def test_mapping_protocol_and_select(data_people):
    schema = Schema.infer(data_people, name="people")

    assert "age" in schema and "zip" not in schema
    assert list(schema) == schema.columns
    assert len(schema) == 4
    assert schema.get("zip") is None
    picked = schema.select(["city", "age"])
    assert picked.columns == ["city", "age"]
    assert picked.name == "people" and picked.num_rows == 8
    with pytest.raises(SchemaError, match=r"no column 'agee' \(did you mean 'age'\?\)"):
        schema["agee"]
    with pytest.raises(SchemaError, match="cannot select column.*'zip'.*its columns are"):
        schema.select(["age", "zip"])


def test_equality_ignores_row_counts_but_not_vocabularies(data_people):
    a = Schema.infer(data_people, name="p")
    b = Schema.infer(data_people.iloc[:6], name="p")
    c = Schema.infer(data_people.iloc[:2], name="p")  # only Paris and Lyon

    assert a == b and a.num_rows != b.num_rows
    assert hash(a) == hash(b)
    assert a != c
    assert a != Schema(a.values(), name="other")


def test_column_spec_sorts_and_checks_categories():
    spec = ColumnSpec("c", "categorical", "string", ("b", "a", "c"))
    assert spec.categories == ("a", "b", "c")

    with pytest.raises(SchemaError, match="column 'c': categories listed more than once: 'a'"):
        ColumnSpec("c", "categorical", "string", ("a", "b", "a"))
    with pytest.raises(SchemaError, match="a continuous column cannot have dtype 'string'"):
        ColumnSpec("c", "continuous", "string")
    with pytest.raises(SchemaError, match="categories of a int column must all be int"):
        ColumnSpec("c", "categorical", "int", (1, True))
    with pytest.raises(SchemaError, match="column 'x' is declared twice"):
        Schema([ColumnSpec("x", "continuous", "int"), ColumnSpec("x", "continuous", "int")])
