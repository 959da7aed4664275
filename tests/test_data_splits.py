"""Train / validation splits."""

from __future__ import annotations

import pandas as pd
import pytest

from fedplug._errors import ConfigError, DataValidationError, PodConfigError
from fedplug.data import ColumnSplit, PercentageSplit, split_from_config


@pytest.fixture
def data_numbered() -> pd.DataFrame:
    return pd.DataFrame({"id": range(100), "x": [i * 0.5 for i in range(100)]})


def test_percentage_split_is_deterministic_and_partitions_the_rows(data_numbered):
    copy = data_numbered.copy()

    train, validation = PercentageSplit(validation=0.2, seed=7).apply(data_numbered)
    again_train, again_validation = PercentageSplit(validation=0.2, seed=7).apply(data_numbered)
    _, other_validation = PercentageSplit(validation=0.2, seed=8).apply(data_numbered)

    assert (len(train), len(validation)) == (80, 20)
    pd.testing.assert_frame_equal(train, again_train)
    pd.testing.assert_frame_equal(validation, again_validation)
    assert set(validation["id"]) != set(other_validation["id"])
    assert set(train["id"]) | set(validation["id"]) == set(range(100))
    assert not set(train["id"]) & set(validation["id"])
    assert train["id"].is_monotonic_increasing  # table order is kept
    assert list(train.index) == list(range(80))
    pd.testing.assert_frame_equal(data_numbered, copy)


def test_percentage_split_edge_cases(data_numbered):
    train, validation = PercentageSplit(validation=0.0).apply(data_numbered)
    assert len(train) == 100 and len(validation) == 0
    one_row = data_numbered.iloc[:1]
    train, validation = PercentageSplit(validation=0.9).apply(one_row)
    assert len(train) == 1 and len(validation) == 0

    with pytest.raises(ConfigError, match=r"validation must be a fraction in \[0, 1\), got 1.5"):
        PercentageSplit(validation=1.5)
    with pytest.raises(ConfigError, match="seed must be a non-negative integer, got 'x'"):
        PercentageSplit(seed="x")  # type: ignore[arg-type]


def test_column_split_uses_and_drops_the_column():
    frame = pd.DataFrame({"x": [1, 2, 3, 4], "split": ["train", "validation", "train", "train"]})

    train, validation = ColumnSplit().apply(frame)

    assert train["x"].tolist() == [1, 3, 4]
    assert validation["x"].tolist() == [2]
    assert "split" not in train.columns and "split" not in validation.columns
    assert list(frame.columns) == ["x", "split"]


def test_column_split_with_custom_values():
    frame = pd.DataFrame({"x": [1, 2, 3], "fold": [0, 1, 0]})

    train, validation = ColumnSplit("fold", train_value=0, validation_value=1).apply(frame)

    assert train["x"].tolist() == [1, 3] and validation["x"].tolist() == [2]


def test_column_split_unknown_values_name_values_and_rows():
    frame = pd.DataFrame({"x": range(5), "split": ["train", "test", "valid", "train", None]})

    with pytest.raises(DataValidationError) as info:
        ColumnSplit().apply(frame)

    message = str(info.value)
    assert "unexpected value(s) 'test', 'valid', None" in message
    assert "3 row(s) are neither 'train' nor 'validation'" in message
    assert "rows 1 ('test'), 2 ('valid'), 4 (None)" in message
    assert "split.train_value" in message


def test_column_split_missing_column():
    with pytest.raises(DataValidationError, match="no column 'split'.*columns present: 'x'"):
        ColumnSplit().apply(pd.DataFrame({"x": [1]}))


def test_split_from_config():
    assert isinstance(split_from_config(None), PercentageSplit)
    split = split_from_config({"type": "percentage", "validation": 0.25, "seed": 1})
    assert (split.validation, split.seed) == (0.25, 1)
    column = split_from_config({"type": "column", "column": "fold"})
    assert isinstance(column, ColumnSplit) and column.column == "fold"
    assert column.consumed_columns == ("fold",)
    assert split_from_config(column.to_dict()).to_dict() == column.to_dict()

    with pytest.raises(PodConfigError, match=r"unknown split type 'random'.*'percentage', 'col"):
        split_from_config({"type": "random"})
    with pytest.raises(PodConfigError, match=r"unknown key 'valdation' \(did you mean 'valid"):
        split_from_config({"type": "percentage", "valdation": 0.2})
    with pytest.raises(PodConfigError, match="validation must be a fraction"):
        split_from_config({"validation": "ten percent"})
