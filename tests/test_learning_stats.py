from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedplug._errors import DataStructureError, DataValidationError, TrainingError
from fedplug.learning import local_feature_moments, scaling_from_moments


def test_moments_by_hand() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0, 0, 6], "c": ["x", "y", "z"]})
    vec = local_feature_moments(frame, ["a", "b"])
    assert vec.dtype == np.float64
    np.testing.assert_allclose(vec, [2.0, 2.0, 14 / 3, 12.0])


def test_nulls_are_skipped_and_all_null_gives_zero() -> None:
    frame = pd.DataFrame({"a": [1.0, None, 3.0], "b": [None, None, None]}, dtype="float64")
    np.testing.assert_allclose(local_feature_moments(frame, ["a", "b"]), [2.0, 0.0, 5.0, 0.0])


def test_weighted_mean_of_pod_vectors_is_the_global_vector() -> None:
    rng = np.random.default_rng(0)
    whole = pd.DataFrame({"x": rng.normal(5, 2, 300), "y": rng.integers(0, 100, 300)})
    pods = [whole.iloc[:50], whole.iloc[50:210], whole.iloc[210:]]
    vectors = [local_feature_moments(p, ["x", "y"]) for p in pods]
    weights = np.array([len(p) for p in pods], dtype=float)
    combined = (np.stack(vectors) * weights[:, None]).sum(axis=0) / weights.sum()
    np.testing.assert_allclose(combined, local_feature_moments(whole, ["x", "y"]))
    mean, std = scaling_from_moments(combined, 2)
    np.testing.assert_allclose(mean, whole.mean().to_numpy())
    np.testing.assert_allclose(std, whole.std(ddof=0).to_numpy())


def test_constant_column_std_is_floored() -> None:
    vec = local_feature_moments(pd.DataFrame({"c": [3.0] * 4}), ["c"])
    mean, std = scaling_from_moments(vec, 1)
    assert mean.tolist() == [3.0]
    assert std.tolist() == [1e-8]


def test_no_continuous_columns() -> None:
    vec = local_feature_moments(pd.DataFrame({"a": ["x"]}), [])
    assert vec.shape == (0,)
    mean, std = scaling_from_moments(vec, 0)
    assert mean.shape == std.shape == (0,)


def test_errors_name_the_column_or_sizes() -> None:
    with pytest.raises(DataStructureError, match=r"\['z'\] are not in the table"):
        local_feature_moments(pd.DataFrame({"a": [1.0]}), ["a", "z"])
    with pytest.raises(DataValidationError, match="column 'a' holds non-numeric"):
        local_feature_moments(pd.DataFrame({"a": ["1", "abc"]}), ["a"])
    with pytest.raises(TrainingError, match="has 3 values but 2 continuous feature"):
        scaling_from_moments([1.0, 2.0, 3.0], 2)
    with pytest.raises(TrainingError, match="non-finite"):
        scaling_from_moments([np.nan, 1.0], 1)
