"""Validating frames against schemas: every violation reported, nothing modified."""

from __future__ import annotations

import pandas as pd
import pytest

from fedplug._errors import DataValidationError
from fedplug.data import ColumnSpec, CSVSource, Schema, Violation


@pytest.fixture
def schema() -> Schema:
    return Schema(
        [
            ColumnSpec("age", "continuous", "int"),
            ColumnSpec("income", "continuous", "float"),
            ColumnSpec("city", "categorical", "string", ("Lyon", "Nice", "Paris")),
            ColumnSpec("member", "categorical", "bool", (False, True)),
        ],
        name="people",
    )


def _csv(tmp_path, text: str):
    path = tmp_path / "people.csv"
    path.write_text(text)
    return path


def test_conforming_data_passes_and_extra_columns_are_ignored(schema, data_people):
    frame = data_people.assign(extra=range(8))

    assert schema.violations(frame) == []
    assert schema.validate(frame, pod="p") is None


def test_a_subset_of_the_vocabulary_is_accepted(schema, data_people):
    only_paris = data_people[data_people["city"] == "Paris"]

    assert schema.violations(only_paris) == []
    assert schema.validate(only_paris) is None


def test_empty_table(tmp_path, schema, data_digest):
    path = _csv(tmp_path, "age,income,city,member\n")
    before = data_digest(path)
    frame = CSVSource(path).load()

    with pytest.raises(DataValidationError, match="table: the table is empty") as info:
        schema.validate(frame, pod="clinic")

    assert "pod 'clinic'" in str(info.value)
    assert data_digest(path) == before


def test_missing_declared_column(tmp_path, schema, data_digest):
    path = _csv(tmp_path, "age,income,member\n30,1.0,True\n")
    before = data_digest(path)

    with pytest.raises(DataValidationError) as info:
        schema.validate(CSVSource(path).load(), pod="clinic")

    message = str(info.value)
    assert "pod 'clinic', column 'city': declared in the schema but missing from the data" in (
        message
    )
    assert "columns present: 'age', 'income', 'member'" in message
    assert data_digest(path) == before


def test_non_numeric_strings_in_a_continuous_column(tmp_path, schema, data_digest):
    path = _csv(
        tmp_path,
        "age,income,city,member\n30,1.0,Paris,True\nthirty,2.0,Lyon,False\n41,3.0,Nice,True\n"
        "forty,1.5,Paris,False\n",
    )
    before = data_digest(path)

    with pytest.raises(DataValidationError) as info:
        schema.validate(CSVSource(path).load(), pod="clinic")

    message = str(info.value)
    assert "column 'age': 2 non-numeric value(s) in a numeric column" in message
    assert "rows 1 ('thirty'), 3 ('forty')" in message
    (violation,) = info.value.violations
    assert violation.rows == (1, 3)
    assert violation.values == ("thirty", "forty")
    assert data_digest(path) == before


def test_category_outside_the_vocabulary(tmp_path, schema, data_digest):
    path = _csv(
        tmp_path,
        "age,income,city,member\n30,1.0,Paris,True\n31,2.0,Marseille,False\n"
        "32,2.0,Lille,False\n33,2.0,Marseille,True\n",
    )
    before = data_digest(path)

    with pytest.raises(DataValidationError) as info:
        schema.validate(CSVSource(path).load(), pod="clinic")

    message = str(info.value)
    assert "column 'city': 3 value(s) outside the declared vocabulary" in message
    assert "'Marseille', 'Lille'" in message
    assert "rows 1 ('Marseille'), 2 ('Lille'), 3 ('Marseille')" in message
    assert data_digest(path) == before


def test_null_where_not_nullable(tmp_path, schema, data_digest):
    path = _csv(tmp_path, "age,income,city,member\n30,,Paris,True\n31,2.0,,False\n")
    before = data_digest(path)

    with pytest.raises(DataValidationError) as info:
        schema.validate(CSVSource(path).load(), pod="clinic")

    message = str(info.value)
    assert "column 'income': 1 null value(s) in a non-nullable column; rows 0" in message
    assert "column 'city': 1 null value(s) in a non-nullable column; rows 1" in message
    assert data_digest(path) == before


def test_every_violation_is_listed_once_with_the_pod_and_the_fix(schema):
    frame = pd.DataFrame({"age": ["x", "31"], "city": ["Paris", "Rome"], "member": [True, None]})

    with pytest.raises(DataValidationError) as info:
        schema.validate(frame, pod="clinic")

    error = info.value
    lines = str(error).splitlines()
    assert lines[0].startswith("Data of pod 'clinic' does not conform to schema 'people' (4 ")
    listed = [line for line in lines if line.startswith("  - ")]
    assert len(listed) == 4 == len(error.violations)
    assert all("pod 'clinic', column " in line for line in listed)
    assert {v.column for v in error.violations} == {"age", "income", "city", "member"}
    assert "Fix the data, or fix the schema" in lines[-1]
    assert error.pod == "clinic"


def test_validate_never_mutates_the_frame(schema):
    frame = pd.DataFrame(
        {"age": ["30", "x"], "income": [1.0, None], "city": ["Paris", "Rome"], "member": [1, 0]},
        index=[10, 20],
    )
    copy = frame.copy(deep=True)

    with pytest.raises(DataValidationError):
        schema.validate(frame)

    pd.testing.assert_frame_equal(frame, copy)


def test_examples_are_capped_but_the_count_is_complete():
    schema = Schema([ColumnSpec("n", "continuous", "float")])
    frame = pd.DataFrame({"n": ["bad"] * 12 + ["1.0"]})

    (violation,) = schema.violations(frame, max_examples=5)

    assert violation.problem.startswith("12 non-numeric value(s)")
    assert violation.rows == (0, 1, 2, 3, 4)
    assert len(violation.values) == 5


def test_type_mismatches_are_named():
    schema = Schema(
        [
            ColumnSpec("count", "categorical", "int", (1, 2, 3)),
            ColumnSpec("code", "categorical", "string", ("1", "2")),
            ColumnSpec("ok", "categorical", "bool", (False, True)),
        ]
    )
    frame = pd.DataFrame({"count": [1.0, 2.5], "code": [1, 2], "ok": ["yes", "no"]})

    found = {v.column: v for v in schema.violations(frame)}

    assert found["count"].problem.startswith("1 non-integer value(s) in an int column")
    assert found["count"].rows == (1,)
    assert "where strings are expected" in found["code"].problem
    assert "non-boolean value(s) in a bool column" in found["ok"].problem


def test_numeric_strings_are_accepted_in_a_continuous_column():
    schema = Schema([ColumnSpec("x", "continuous", "float")])
    frame = pd.DataFrame({"x": ["1.5", "2", "-3e2"]})

    assert schema.violations(frame) == []
    assert schema.validate(frame) is None
    assert schema.violations(pd.DataFrame({"x": ["1.5", "two"]})) != []  # the check is real


def test_violation_str_is_one_line():
    violation = Violation("age", "2 non-numeric values", (1, 3), ("thirty", "n/a"))

    assert str(violation) == "column 'age': 2 non-numeric values; rows 1 ('thirty'), 3 ('n/a')"
    assert str(Violation(None, "the table is empty (0 rows)")) == (
        "table: the table is empty (0 rows)"
    )


def test_duplicate_columns_and_non_frames_are_reported(schema):
    frame = pd.DataFrame(
        [[1, 2.0, "Paris", True, 3]], columns=["age", "income", "city", "member", "age"]
    )

    assert [str(v) for v in schema.violations(frame)] == [
        "column 'age': appears 2 times in the data; keep one"
    ]
    with pytest.raises(DataValidationError, match="expected a pandas DataFrame, got dict"):
        schema.validate({"age": [1]})  # type: ignore[arg-type]


def test_a_continuous_int_column_accepts_numbers_of_either_kind():
    # The dtype of a continuous column records what a pod held; values are scaled as floats.
    schema = Schema(
        [ColumnSpec("age", "continuous", "int"), ColumnSpec("x", "continuous", "float")]
    )
    frame = pd.DataFrame({"age": [25.5, 40.0, 31.25], "x": [1, 2, 3]})

    assert schema.violations(frame) == []
    schema.validate(frame)


def test_a_continuous_int_column_still_refuses_text():
    schema = Schema([ColumnSpec("age", "continuous", "int")])

    (violation,) = schema.violations(pd.DataFrame({"age": ["25.5", "old"]}))

    assert violation.problem.startswith("1 non-numeric value(s) in a numeric column")
    assert violation.rows == (1,)


def test_validation_of_a_frame_that_is_no_pods_names_it_and_its_fix():
    schema = Schema([ColumnSpec("city", "categorical", "string", ("Lyon", "Paris"))], name="s")
    frame = pd.DataFrame({"city": ["Lyon", "Nice"]})

    with pytest.raises(DataValidationError) as info:
        schema.validate(frame, where="the frame passed to predict()", fix="Fix the frame.")

    message = str(info.value)
    assert message.startswith("The frame passed to predict() does not conform to schema 's'")
    assert "  - column 'city': 1 value(s) outside the declared vocabulary" in message
    assert message.endswith("Fix the frame.")
    assert "pod" not in message
    assert info.value.pod is None
    assert info.value.columns == ["city"]
