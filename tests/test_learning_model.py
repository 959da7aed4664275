from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from fedplug._errors import ConfigError, TrainingError
from fedplug.data import Schema
from fedplug.learning import (
    DataStructure,
    TabularNet,
    TabularNetSpec,
    embedding_dim,
    get_weights,
    set_weights,
)


def test_embedding_dims() -> None:
    assert [embedding_dim(c) for c in (1, 2, 3, 9, 30, 31, 100)] == [2, 2, 3, 6, 16, 16, 16]


def test_net_structure_and_output_shape() -> None:
    net = TabularNet([3, 40], n_continuous=2, n_classes=2, hidden=(8, 4), dropout=0.0)
    assert [e.num_embeddings for e in net.embeddings] == [4, 41]
    assert [e.embedding_dim for e in net.embeddings] == [3, 16]
    assert net.mlp[0].in_features == 3 + 16 + 2
    x_cat = torch.tensor([[0, 39], [3, 40]])  # index == cardinality is the unknown slot
    out = net(x_cat, torch.zeros(2, 2))
    assert out.shape == (2, 2)


def test_only_categorical_or_only_continuous() -> None:
    assert TabularNet([5], 0, 3)(torch.tensor([[1]]), torch.zeros(1, 0)).shape == (1, 3)
    assert TabularNet([], 4, 2)(torch.zeros(3, 0, dtype=torch.long), torch.ones(3, 4)).shape == (
        3,
        2,
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_classes": 1}, "n_classes must be an integer >= 2"),
        ({"cardinalities": [3, -1]}, r"cardinalities\[1\] must be a non-negative integer, got -1"),
        ({"hidden": "64"}, "hidden must be a list"),
        ({"dropout": 1.0}, r"dropout must be a number in \[0, 1\)"),
        ({"cardinalities": [], "n_continuous": 0}, "no input features"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    args = {"cardinalities": [3], "n_continuous": 1, "n_classes": 2, **kwargs}
    with pytest.raises(ConfigError, match=match):
        TabularNet(**args)
    with pytest.raises(ConfigError, match=match):
        TabularNetSpec(**args)


def test_spec_for_columns_and_round_trip() -> None:
    frame = pd.DataFrame(
        {
            "x": [1.0, 2.0, 3.0],
            "c": ["a", "b", "c"],
            "d": ["u", "v", "u"],
            "t": ["no", "yes", "maybe"],
        }
    )
    schema = Schema.infer(frame)
    resolved = DataStructure(target="t").resolve(schema)
    spec = TabularNetSpec.for_columns(schema, resolved, hidden=[16], dropout=0.2)
    assert spec == TabularNetSpec((3, 2), 1, 3, (16,), 0.2)
    d = spec.to_dict()
    assert d == {
        "cardinalities": [3, 2],
        "n_continuous": 1,
        "n_classes": 3,
        "hidden": [16],
        "dropout": 0.2,
    }
    assert TabularNetSpec.from_dict(d) == spec
    net = spec.build()
    assert isinstance(net, TabularNet)
    assert net(torch.tensor([[0, 1]]), torch.zeros(1, 1)).shape == (1, 3)


def test_spec_from_dict_errors() -> None:
    with pytest.raises(ConfigError, match=r"model: unknown key 'layers'; valid keys"):
        TabularNetSpec.from_dict(
            {"cardinalities": [2], "n_continuous": 1, "n_classes": 2, "layers": 1}
        )
    with pytest.raises(ConfigError, match=r"missing key\(s\) \['n_classes'\]"):
        TabularNetSpec.from_dict({"cardinalities": [2], "n_continuous": 1})


def test_weights_round_trip_as_float32_copies() -> None:
    torch.manual_seed(0)
    a = TabularNet([3], 2, 2, hidden=(4,))
    torch.manual_seed(1)
    b = TabularNet([3], 2, 2, hidden=(4,))
    weights = get_weights(a)
    assert [w.shape for w in weights] == [tuple(t.shape) for t in a.state_dict().values()]
    assert all(w.dtype == np.float32 for w in weights)
    weights[0][...] = 0.0  # a copy: the net is unchanged
    assert not torch.all(a.embeddings[0].weight == 0)
    set_weights(b, get_weights(a))
    for wa, wb in zip(get_weights(a), get_weights(b), strict=True):
        np.testing.assert_array_equal(wa, wb)


def test_set_weights_mismatch_names_the_layer() -> None:
    net = TabularNet([3], 2, 2, hidden=(4,))
    weights = get_weights(net)
    weights[1] = np.zeros((5, 5), dtype=np.float32)
    with pytest.raises(TrainingError, match=r"layer 'mlp.0.weight' expects shape \(4, 5\)") as i:
        set_weights(net, weights)
    assert "got (5, 5)" in str(i.value)
    for before, after in zip(get_weights(net), weights, strict=True):  # nothing was loaded
        if before.shape == after.shape:
            np.testing.assert_array_equal(before, after)
    with pytest.raises(TrainingError, match="has 5 weight arrays but 4 were given"):
        set_weights(net, get_weights(net)[:-1])
