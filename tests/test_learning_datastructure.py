from __future__ import annotations

import pandas as pd
import pytest

from fedplug._errors import ConfigError, DataStructureError
from fedplug.data import Schema
from fedplug.learning import DataStructure, ResolvedColumns


@pytest.fixture(scope="module")
def schema() -> Schema:
    frame = pd.DataFrame(
        {
            "age": [30.0, 40.0, 50.0, 60.0],
            "color": ["red", "blue", "red", "green"],
            "hours": [10, 20, 30, 40],
            "note": ["a b", "c d", "e f", "g h"],
            "size": ["S", "M", "L", "M"],
            "label": ["yes", "no", "no", "yes"],
        }
    )
    return Schema.infer(frame, force_stypes={"note": "text"})


def test_resolve_uses_every_usable_column_in_schema_order(schema: Schema) -> None:
    resolved = DataStructure(target="label").resolve(schema)
    assert resolved == ResolvedColumns(
        target="label",
        categorical=["color", "size"],
        continuous=["age", "hours"],
        classes=("no", "yes"),
    )
    assert resolved.features == ["color", "size", "age", "hours"]


def test_text_columns_are_left_out_silently_even_when_selected(schema: Schema) -> None:
    resolved = DataStructure(target="label", selected_cols=["note", "age"]).resolve(schema)
    assert resolved.categorical == []
    assert resolved.continuous == ["age"]


def test_selected_cols_keep_schema_order_and_skip_the_target(schema: Schema) -> None:
    ds = DataStructure(target="label", selected_cols=["size", "label", "hours", "color"])
    resolved = ds.resolve(schema)
    assert resolved.categorical == ["color", "size"]
    assert resolved.continuous == ["hours"]


def test_ignore_cols_are_dropped(schema: Schema) -> None:
    resolved = DataStructure(target="label", ignore_cols=["color", "hours"]).resolve(schema)
    assert resolved.categorical == ["size"]
    assert resolved.continuous == ["age"]


def test_missing_target_lists_categorical_columns(schema: Schema) -> None:
    with pytest.raises(DataStructureError, match="'income'.*not in the schema") as info:
        DataStructure(target="income").resolve(schema)
    assert "['color', 'label', 'size']" in str(info.value)


def test_continuous_target_is_refused(schema: Schema) -> None:
    with pytest.raises(DataStructureError, match="'age' is continuous.*categorical target") as info:
        DataStructure(target="age").resolve(schema)
    assert "['color', 'label', 'size']" in str(info.value)


def test_text_target_is_refused(schema: Schema) -> None:
    with pytest.raises(DataStructureError, match="'note' is text"):
        DataStructure(target="note").resolve(schema)


def test_unknown_selected_column_lists_available(schema: Schema) -> None:
    with pytest.raises(DataStructureError, match=r"unknown column\(s\) \['colour'\]") as info:
        DataStructure(target="label", selected_cols=["colour", "age"]).resolve(schema)
    assert "available columns are ['age', 'color', 'hours', 'note', 'size', 'label']" in str(
        info.value
    )


def test_unknown_ignored_column_lists_available(schema: Schema) -> None:
    with pytest.raises(DataStructureError, match=r"\['weight'\].*available columns"):
        DataStructure(target="label", ignore_cols=["weight"]).resolve(schema)


def test_column_both_selected_and_ignored(schema: Schema) -> None:
    with pytest.raises(DataStructureError, match=r"\['age'\] are both selected and ignored"):
        DataStructure(target="label", selected_cols=["age", "size"], ignore_cols=["age"]).resolve(
            schema
        )


def test_ignoring_the_target_is_refused(schema: Schema) -> None:
    with pytest.raises(DataStructureError, match="'label' is in ignore_cols"):
        DataStructure(target="label", ignore_cols=["label"]).resolve(schema)


def test_bare_string_for_a_column_list_is_refused(schema: Schema) -> None:
    with pytest.raises(DataStructureError, match="selected_cols must be a list.*'age'"):
        DataStructure(target="label", selected_cols="age").resolve(schema)


def test_no_features_left(schema: Schema) -> None:
    with pytest.raises(DataStructureError, match="no feature columns left"):
        DataStructure(target="label", selected_cols=["note"]).resolve(schema)


def test_errors_are_config_errors(schema: Schema) -> None:
    with pytest.raises(ConfigError):
        DataStructure(target="nope").resolve(schema)


def test_check_pods_with_a_table_mapping() -> None:
    ds = DataStructure(target="label", table={"pod-a": "adult", "pod-b": "adult"})
    ds.check_pods(["pod-b", "pod-a"])
    with pytest.raises(DataStructureError, match=r"pod\(s\) \['pod-c'\] have no entry") as info:
        ds.check_pods(["pod-a", "pod-b", "pod-c"])
    assert "datastructure.table" in str(info.value)
    with pytest.raises(DataStructureError, match=r"names pod\(s\) \['pod-b'\] that are not in"):
        ds.check_pods(["pod-a"])


def test_check_pods_without_mapping_accepts_any_pods() -> None:
    DataStructure(target="label", table="adult").check_pods(["x", "y"])
    DataStructure(target="label").check_pods([])


def test_dict_round_trip() -> None:
    ds = DataStructure(
        target="label", table={"a": "t1", "b": "t2"}, selected_cols=("age",), ignore_cols=()
    )
    d = ds.to_dict()
    assert d == {
        "target": "label",
        "table": {"a": "t1", "b": "t2"},
        "selected_cols": ["age"],
        "ignore_cols": [],
    }
    assert DataStructure.from_dict(d) == ds
    assert DataStructure.from_dict({"target": "label"}) == DataStructure(target="label")


def test_from_dict_refuses_unknown_and_missing_keys() -> None:
    with pytest.raises(
        DataStructureError, match=r"unknown key 'targets' \(did you mean 'target'\?\); valid keys"
    ):
        DataStructure.from_dict({"targets": "label"})
    with pytest.raises(DataStructureError, match="missing key 'target'"):
        DataStructure.from_dict({"table": "adult"})
