"""The tabular network: categorical embeddings + continuous features -> MLP (classifier
logits or a regressor's one output)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from fedplug._errors import ConfigError, ModelMismatchError
from fedplug._validation import check_known_keys, int_at_least

if TYPE_CHECKING:
    from fedplug.data import Schema

    from ._datastructure import ResolvedColumns


def embedding_dim(cardinality: int) -> int:
    """Embedding width for a column with ``cardinality`` categories."""
    return min(16, (cardinality + 1) // 2 + 1)


def _check_int(name: str, value: object, minimum: int) -> int:
    return int_at_least(value, minimum, name=f"model: {name}", fix="fix the model config")


def _check_args(
    cardinalities: Sequence[int],
    n_continuous: int,
    n_classes: int,
    hidden: Sequence[int],
    dropout: float,
    outputs: tuple[str, int] = ("n_classes", 2),
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    if isinstance(cardinalities, (str, bytes)) or not isinstance(cardinalities, Sequence):
        raise ConfigError(f"model: cardinalities must be a list of integers, got {cardinalities!r}")
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
        raise ConfigError(
            f"model: hidden must be a list of layer sizes such as [64, 32], got {hidden!r}"
        )
    cards = tuple(_check_int(f"cardinalities[{i}]", c, 0) for i, c in enumerate(cardinalities))
    sizes = tuple(_check_int(f"hidden[{i}]", h, 1) for i, h in enumerate(hidden))
    _check_int("n_continuous", n_continuous, 0)
    _check_int(outputs[0], n_classes, outputs[1])
    if not cards and n_continuous == 0:
        raise ConfigError("model: no input features (no categorical and no continuous column)")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ConfigError(f"model: dropout must be a number in [0, 1), got {dropout!r}")
    return cards, sizes


class TabularMLP(nn.Module):
    """An embedding per categorical column (index ``card`` = unknown), concatenated with
    the continuous features, then an MLP with ReLU; outputs ``n_outputs`` values per row
    (the regressor's one standardized prediction; :class:`TabularNet`'s class logits)."""

    def __init__(
        self,
        cardinalities: Sequence[int],
        n_continuous: int,
        n_outputs: int,
        hidden: Sequence[int] = (64, 32),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        cards, sizes = _check_args(
            cardinalities, n_continuous, n_outputs, hidden, dropout, ("n_outputs", 1)
        )
        self.cardinalities = cards
        self.n_continuous = n_continuous
        self.n_outputs = n_outputs
        self.hidden = sizes
        self.dropout = float(dropout)
        self.embeddings = nn.ModuleList(nn.Embedding(c + 1, embedding_dim(c)) for c in cards)
        layers: list[nn.Module] = []
        width = sum(embedding_dim(c) for c in cards) + n_continuous
        for size in sizes:
            layers += [nn.Linear(width, size), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, n_outputs))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x_cat: torch.Tensor, x_cont: torch.Tensor) -> torch.Tensor:
        """Outputs ``[n, n_outputs]`` from ``x_cat [n, n_cat]`` and ``x_cont [n, n_cont]``."""
        parts = [emb(x_cat[:, i]) for i, emb in enumerate(self.embeddings)]
        if self.n_continuous:
            parts.append(x_cont)
        return self.mlp(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0])


class TabularNet(TabularMLP):
    """The classifier's :class:`TabularMLP`: outputs ``n_classes`` logits (at least 2)."""

    def __init__(
        self,
        cardinalities: Sequence[int],
        n_continuous: int,
        n_classes: int,
        hidden: Sequence[int] = (64, 32),
        dropout: float = 0.1,
    ) -> None:
        # Checked first so a bad n_classes is named as such, not as n_outputs.
        _check_args(cardinalities, n_continuous, n_classes, hidden, dropout)
        super().__init__(cardinalities, n_continuous, n_classes, hidden, dropout)
        self.n_classes = n_classes


@dataclass(frozen=True)
class TabularNetSpec:
    """What a pod needs to rebuild the same :class:`TabularNet` (the model plugin)."""

    cardinalities: tuple[int, ...]
    n_continuous: int
    n_classes: int
    hidden: tuple[int, ...] = (64, 32)
    dropout: float = 0.1
    #: Per-class weights of the training loss (``class_weight="balanced"``): computed
    #: from the classes' cross-pod counts before training; empty: unweighted.
    class_weights: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        cards, sizes = _check_args(
            self.cardinalities, self.n_continuous, self.n_classes, self.hidden, self.dropout
        )
        weights = tuple(float(w) for w in self.class_weights)
        if weights and (len(weights) != self.n_classes or min(weights) < 0):
            raise ConfigError(
                f"model: class_weights {list(weights)} must be {self.n_classes} numbers >= 0"
            )
        object.__setattr__(self, "class_weights", weights)
        # Frozen: normalise lists (from YAML/JSON) to tuples so specs compare equal.
        object.__setattr__(self, "cardinalities", cards)
        object.__setattr__(self, "hidden", sizes)
        object.__setattr__(self, "n_continuous", int(self.n_continuous))
        object.__setattr__(self, "n_classes", int(self.n_classes))
        object.__setattr__(self, "dropout", float(self.dropout))

    @classmethod
    def for_columns(
        cls,
        schema: Schema,
        resolved: ResolvedColumns,
        hidden: Sequence[int] = (64, 32),
        dropout: float = 0.1,
    ) -> TabularNetSpec:
        """The spec for the resolved columns of a (combined) schema."""
        cards = tuple(len(schema[c].categories or ()) for c in resolved.categorical)
        return cls(
            cardinalities=cards,
            n_continuous=len(resolved.continuous),
            n_classes=len(resolved.classes),
            hidden=tuple(hidden) if isinstance(hidden, Sequence) else hidden,
            dropout=dropout,
        )

    def build(self) -> TabularNet:
        """A freshly initialised net (seed torch first for reproducible weights)."""
        return TabularNet(
            self.cardinalities, self.n_continuous, self.n_classes, self.hidden, self.dropout
        )

    def to_dict(self) -> dict[str, Any]:
        """YAML/JSON-safe dictionary."""
        d = asdict(self)
        d["cardinalities"] = list(self.cardinalities)
        d["hidden"] = list(self.hidden)
        if self.class_weights:
            d["class_weights"] = list(self.class_weights)
        else:  # an unweighted task reads exactly as before class weights existed
            del d["class_weights"]
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TabularNetSpec:
        """Inverse of :meth:`to_dict`; unknown or missing keys are an error."""
        names = [f.name for f in fields(cls)]
        if not isinstance(data, Mapping):
            raise ConfigError(f"model: expected a mapping with keys {names}, got {data!r}")
        check_known_keys(data, names, where="model")
        missing = [n for n in ("cardinalities", "n_continuous", "n_classes") if n not in data]
        if missing:
            raise ConfigError(f"model: missing key(s) {missing}; valid keys are {names}")
        values = dict(data)
        for key in ("cardinalities", "hidden", "class_weights"):
            if key in values and isinstance(values[key], list):
                values[key] = tuple(values[key])
        return cls(**values)


def get_weights(net: torch.nn.Module) -> list[np.ndarray]:
    """The net's ``state_dict`` values, in order, as float32 numpy copies."""
    return [t.detach().cpu().numpy().astype(np.float32) for t in net.state_dict().values()]


def set_weights(net: torch.nn.Module, arrays: Sequence[np.ndarray]) -> None:
    """Load arrays (in ``state_dict`` order) into the net; shapes must match exactly."""
    state = net.state_dict()
    arrays = list(arrays)
    if len(arrays) != len(state):
        raise ModelMismatchError(
            f"set_weights: the model {type(net).__name__} has {len(state)} weight arrays "
            f"but {len(arrays)} were given; the weights come from a different model "
            "architecture (check the model config: hidden sizes, columns, classes)"
        )
    new_state = {}
    for (key, current), array in zip(state.items(), arrays, strict=True):
        value = np.asarray(array)
        if tuple(value.shape) != tuple(current.shape):
            raise ModelMismatchError(
                f"set_weights: layer {key!r} expects shape {tuple(current.shape)} but got "
                f"{tuple(value.shape)}; the weights come from a different model "
                "architecture (check the model config: hidden sizes, columns, classes)"
            )
        new_state[key] = torch.as_tensor(value, dtype=current.dtype, device=current.device)
    net.load_state_dict(new_state, strict=True)
