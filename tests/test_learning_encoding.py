from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from fedplug._errors import ConfigError, DataValidationError
from fedplug.data import Schema
from fedplug.learning import DataStructure, EncodedTable, TabularEncoder


@pytest.fixture(scope="module")
def schema() -> Schema:
    # The combined schema: vocabularies sorted, 'color' has blue < green < red.
    frame = pd.DataFrame(
        {
            "color": ["red", "green", "blue", "red"],
            "n": [1, 2, 3, 4],
            "x": [0.0, 1.0, 2.0, 3.0],
            "label": ["yes", "no", "no", "yes"],
        }
    )
    return Schema.infer(frame)


def _encoder(schema: Schema) -> TabularEncoder:
    resolved = DataStructure(target="label").resolve(schema)
    return TabularEncoder(schema, resolved, mean=[2.0, 1.0], std=[2.0, 0.5])


def test_encodes_with_schema_vocabulary_and_scaling(schema: Schema) -> None:
    # A pod that only has some of the categories still uses the combined indices.
    pod = pd.DataFrame(
        {
            "label": ["no", "yes", "no"],
            "x": [1.0, 2.0, 0.5],
            "n": [2, 6, 0],
            "color": ["red", "red", "green"],
        }
    )
    before = pod.copy()
    enc = _encoder(schema).encode(pod)
    assert isinstance(enc, EncodedTable)
    assert len(enc) == 3
    assert enc.x_cat.dtype == torch.int64
    assert enc.x_cat[:, 0].tolist() == [2, 2, 1]
    assert enc.x_cont.dtype == torch.float32
    expected = [[0.0, 0.0], [2.0, 2.0], [-1.0, -1.0]]
    np.testing.assert_allclose(enc.x_cont.numpy(), expected)
    assert enc.y is not None and enc.y.tolist() == [0, 1, 0]
    pd.testing.assert_frame_equal(pod, before)


def test_unknown_and_null_categories_use_the_reserved_index(schema: Schema) -> None:
    pod = pd.DataFrame({"color": ["purple", None, "blue"], "n": [1, 2, 3], "x": [0.0, 0.0, 0.0]})
    enc = _encoder(schema).encode(pod)
    assert enc.x_cat[:, 0].tolist() == [3, 3, 0]
    assert enc.y is None


def test_missing_continuous_values_become_zero(schema: Schema) -> None:
    pod = pd.DataFrame({"color": ["red", "red"], "n": [2, None], "x": [np.nan, 3.0]})
    enc = _encoder(schema).encode(pod)
    np.testing.assert_allclose(enc.x_cont.numpy(), [[0.0, 0.0], [0.0, 4.0]])


def test_missing_feature_column_is_named(schema: Schema) -> None:
    with pytest.raises(DataValidationError, match=r"lacks feature column\(s\) \['x'\]"):
        _encoder(schema).encode(pd.DataFrame({"color": ["red"], "n": [1]}))


def test_unknown_target_value_is_reported(schema: Schema) -> None:
    pod = pd.DataFrame(
        {"color": ["red"] * 3, "n": [1] * 3, "x": [0.0] * 3, "label": ["no", "YES", None]}
    )
    with pytest.raises(DataValidationError, match=r"target column 'label'.*rows \[1, 2\]") as info:
        _encoder(schema).encode(pod)
    assert "'YES'" in str(info.value)
    assert "['no', 'yes']" in str(info.value)


def test_scaling_must_fit_the_continuous_columns(schema: Schema) -> None:
    resolved = DataStructure(target="label").resolve(schema)
    with pytest.raises(ConfigError, match=r"2 continuous column\(s\) \['n', 'x'\] but mean has 1"):
        TabularEncoder(schema, resolved, mean=[0.0], std=[1.0, 1.0])
    with pytest.raises(ConfigError, match="std must be finite and > 0"):
        TabularEncoder(schema, resolved, mean=[0.0, 0.0], std=[1.0, 0.0])


def test_int_and_bool_categories() -> None:
    frame = pd.DataFrame(
        {"grade": [3, 1, 2, 3], "flag": [True, False, True, True], "label": ["a", "b", "a", "b"]}
    )
    schema = Schema.infer(frame, force_stypes={"grade": "categorical"})
    resolved = DataStructure(target="label").resolve(schema)
    enc = TabularEncoder(schema, resolved, mean=[], std=[]).encode(frame)
    assert enc.x_cat.tolist() == [[2, 1], [0, 0], [1, 1], [2, 1]]
    assert enc.x_cont.shape == (4, 0)
