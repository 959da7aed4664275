"""predict()/evaluate() take numbers of either kind in a continuous column, and their
validation errors name the frame passed to them (not a pod) and say to fix the frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedplug import DataStructure, DataValidationError, TabularClassifier
from fedplug.data import ColumnSpec, Schema

SCHEMA = Schema(
    [
        ColumnSpec("age", "continuous", "int"),
        ColumnSpec("city", "categorical", "string", ("Lyon", "Paris")),
        ColumnSpec("TARGET", "categorical", "string", ("no", "yes")),
    ]
)


@pytest.fixture
def model() -> TabularClassifier:
    """A model with its round-0 weights, as if trained: enough to predict and evaluate."""
    from fedplug._task_builder import initial_weights

    model = TabularClassifier(DataStructure(target="TARGET"), schema=SCHEMA)
    task = model.training_task(SCHEMA).with_scaling(np.array([40.0]), np.array([10.0]))
    model.set_trained(task, initial_weights(task), [])
    return model


def test_predict_accepts_a_float_in_an_int_continuous_column(model):
    frame = pd.DataFrame({"age": [25.5, 40, 61.25], "city": ["Lyon", "Paris", "Lyon"]})

    labels = model.predict(frame)
    proba = model.predict_proba(frame)

    assert labels.shape == (3,)
    assert set(labels) <= {"no", "yes"}
    assert proba.shape == (3, 2)
    assert np.allclose(proba.sum(axis=1), 1.0)


def test_predict_errors_name_the_frame_and_say_to_fix_it(model):
    frame = pd.DataFrame({"age": [30, 40], "city": ["Lyon", "Nice"]})

    with pytest.raises(DataValidationError) as info:
        model.predict(frame)

    message = str(info.value)
    assert message.startswith("The frame passed to predict() / predict_proba() does not conform")
    assert "  - column 'city': 1 value(s) outside the declared vocabulary" in message
    assert "Fix the frame: give it the columns the model was trained on" in message
    assert "pod" not in message  # neither "pod 'predict() input'" nor "the pod YAML"
    assert info.value.pod is None


def test_evaluate_errors_name_the_frame_passed_to_evaluate(model):
    frame = pd.DataFrame({"age": [30.5, 40], "city": ["Lyon", "Paris"]})  # no TARGET

    with pytest.raises(DataValidationError) as info:
        model.evaluate(frame)

    message = str(info.value)
    assert message.startswith("The frame passed to evaluate() does not conform")
    assert "column 'TARGET': declared in the schema but missing from the data" in message
    assert "pod" not in message
