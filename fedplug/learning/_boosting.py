"""Histogram gradient-boosted trees in which every statistic is a sum over pods.

The algorithm is written against one primitive, ``exchange.sum(request, size, bound)``: the
element-wise sum over pods of the vector each pod's :class:`BoostingPod` answers to
``request``. Run against one pod holding the pooled rows it is central training; run
through an aggregator (plain or secure) it is federated training, and the trees are the
same because the sums are. Nothing else crosses: no row, no single pod's raw values.

Exchanges:

- ``init``: per class the label count, and per continuous column a fine histogram over a
  public grid (the cross-pod mean +- 6 standard deviations, from the scaling exchange),
  from which the server chooses at most ``max_bins`` quantile bins per column.
- ``hist``, once per tree level: for every open node the gradient, hessian and row count
  per bin of every feature. The server picks the splits; children at the last level
  become leaves from the parent's split sums, so a depth-``d`` tree costs ``d`` exchanges.

Categorical columns split natively: categories sorted by ``G / (H + lambda)`` and the best
prefix goes left (a partition split, as in LightGBM); an unknown or missing value is its
own bin. Numeric columns learn where missing values go.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from fedplug._errors import ConfigError, ModelMismatchError
from fedplug._validation import check_known_keys, int_at_least

#: Fine-grid cells per continuous column between mean - 6 std and mean + 6 std.
GRID_CELLS = 1024
GRID_WIDTH = 6.0


class Exchange(Protocol):
    """What the boosting algorithm asks of a federation (or of one central pod)."""

    def sum(self, request: dict[str, Any], size: int, bound: float | None) -> np.ndarray:
        """The element-wise sum over pods of each pod's answer to ``request``.

        ``bound`` bounds the absolute value of any element of one pod's answer (a secure
        aggregator sizes its fixed-point encoding by it); ``None``: each element is at
        most a pod's example count.
        """
        ...


# -- parameters -------------------------------------------------------------------------
@dataclass(frozen=True)
class BoostingParams:
    """The hyperparameters of gradient boosting (XGBoost's names and meanings)."""

    n_trees: int = 100
    max_depth: int = 6
    learning_rate: float = 0.1
    reg_lambda: float = 1.0
    min_child_weight: float = 1.0
    gamma: float = 0.0
    max_bins: int = 256

    def __post_init__(self) -> None:
        fix = "fix the model config (model=gradient-boosted-trees)"
        int_at_least(self.n_trees, 1, name="model: n_trees", fix=fix)
        int_at_least(self.max_depth, 1, name="model: max_depth", fix=fix)
        int_at_least(self.max_bins, 2, name="model: max_bins", fix=fix)
        if self.max_depth > 12:
            raise ConfigError(
                f"model: max_depth={self.max_depth} is too deep for level-wise trees (each level "
                "is one exchange and 2^depth nodes); use at most 12"
            )
        for name, low, strict in (
            ("learning_rate", 0.0, True),
            ("reg_lambda", 0.0, False),
            ("min_child_weight", 0.0, False),
            ("gamma", 0.0, False),
        ):
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = ok and math.isfinite(value) and (value > low if strict else value >= low)
            if not ok:
                sign = ">" if strict else ">="
                raise ConfigError(f"model: {name}={value!r} must be a number {sign} {low}; {fix}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BoostingParams:
        names = [f for f in cls.__dataclass_fields__]
        if not isinstance(data, Mapping):
            raise ConfigError(f"model: expected a mapping with keys {names}, got {data!r}")
        check_known_keys(data, names, where="model")
        return cls(**dict(data))


# -- bins -------------------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureBins:
    """How one feature's values map to bins; the last bin holds missing/unknown values."""

    name: str
    kind: str  # "numeric" | "categorical"
    edges: tuple[float, ...] = ()  # numeric: bin = number of edges <= value
    categories: tuple[Any, ...] = ()  # categorical: bin = index in the vocabulary

    @property
    def size(self) -> int:
        values = len(self.edges) + 1 if self.kind == "numeric" else len(self.categories)
        return values + 1

    def transform(self, values: pd.Series) -> np.ndarray:
        missing = self.size - 1
        if self.kind == "categorical":
            codes = pd.Index(list(self.categories)).get_indexer(values)
            codes[codes < 0] = missing
            return codes.astype(np.int32)
        raw = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bins = np.searchsorted(np.asarray(self.edges), raw, side="right").astype(np.int32)
        bins[np.isnan(raw)] = missing
        return bins

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "edges": list(self.edges),
            "categories": list(self.categories),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureBins:
        return cls(d["name"], d["kind"], tuple(d["edges"]), tuple(d["categories"]))


@dataclass(frozen=True)
class Binning:
    features: tuple[FeatureBins, ...]

    @property
    def sizes(self) -> list[int]:
        return [f.size for f in self.features]

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)

    @property
    def total(self) -> int:
        return int(sum(self.sizes))

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """``[rows, features]`` bin indices (local to each feature)."""
        out = np.empty((len(frame), len(self.features)), dtype=np.int32)
        for j, feature in enumerate(self.features):
            out[:, j] = feature.transform(frame[feature.name])
        return out

    def to_list(self) -> list[dict[str, Any]]:
        return [f.to_dict() for f in self.features]

    @classmethod
    def from_list(cls, data: Sequence[Mapping[str, Any]]) -> Binning:
        return cls(tuple(FeatureBins.from_dict(d) for d in data))


def grid(mean: float, std: float) -> tuple[float, float]:
    """The public fine grid of a continuous column: ``(low, cell width)``."""
    std = std if std > 0 else 1.0
    return mean - GRID_WIDTH * std, 2 * GRID_WIDTH * std / GRID_CELLS


def grid_counts(values: np.ndarray, low: float, width: float) -> np.ndarray:
    """Counts over ``GRID_CELLS + 2`` cells: below the grid, the cells, above it."""
    values = values[~np.isnan(values)]
    cells = np.floor((values - low) / width)
    cells = np.clip(cells + 1, 0, GRID_CELLS + 1).astype(np.int64)
    return np.bincount(cells, minlength=GRID_CELLS + 2).astype(np.float64)


def edges_from_counts(counts: np.ndarray, low: float, width: float, max_bins: int) -> list[float]:
    """At most ``max_bins`` bins over the fine grid, cut at (approximate) quantiles.

    With few populated cells every populated cell is its own bin; otherwise cells are
    merged greedily until each bin holds about ``total / max_bins`` rows.
    """
    counts = np.rint(counts)  # exact integers, whatever rounding the aggregation added

    def boundary(cell: int) -> float:  # upper boundary of fine cell ``cell`` (0 = below)
        return float(low + cell * width)

    populated = np.flatnonzero(counts > 0)
    if populated.size <= 1:
        return []
    if populated.size <= max_bins:
        return [boundary(int(c)) for c in populated[:-1]]
    target = counts.sum() / max_bins
    edges: list[float] = []
    running = 0.0
    for cell in populated[:-1]:
        running += counts[cell]
        if running >= target * (len(edges) + 1):
            edges.append(boundary(int(cell)))
            if len(edges) == max_bins - 1:
                break
    return edges


# -- trees ------------------------------------------------------------------------------
@dataclass
class Tree:
    """A level-ordered binary tree: node ``i`` has children ``2i + 1`` and ``2i + 2``."""

    depth: int
    feature: list[int] = field(default_factory=list)  # -1: leaf (or unused)
    threshold: list[int] = field(default_factory=list)  # numeric: left if bin <= threshold
    missing_left: list[bool] = field(default_factory=list)
    left_categories: list[list[int]] = field(default_factory=list)  # categorical
    value: list[float] = field(default_factory=list)

    @classmethod
    def empty(cls, depth: int) -> Tree:
        n = 2 ** (depth + 1) - 1
        return cls(depth, [-1] * n, [0] * n, [False] * n, [[] for _ in range(n)], [0.0] * n)

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: its deep copy dominated a training run's time.
        return {
            "depth": self.depth,
            "feature": list(self.feature),
            "threshold": list(self.threshold),
            "missing_left": list(self.missing_left),
            "left_categories": [list(c) for c in self.left_categories],
            "value": list(self.value),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Tree:
        return cls(**dict(d))

    def go_left(self, binning: Binning) -> np.ndarray:
        """``[nodes, max feature size]``: whether a bin goes left at each split node."""
        width = max(binning.sizes)
        table = np.zeros((len(self.feature), width), dtype=bool)
        for node, f in enumerate(self.feature):
            if f < 0:
                continue
            fb = binning.features[f]
            if fb.kind == "numeric":
                table[node, : self.threshold[node] + 1] = True
                table[node, fb.size - 1] = self.missing_left[node]
            else:
                table[node, self.left_categories[node]] = True
        return table

    def positions(self, bins: np.ndarray, binning: Binning, depth: int) -> np.ndarray:
        """The node each row reaches after ``depth`` levels (or the leaf it stops at)."""
        feature = np.asarray(self.feature)
        table = self.go_left(binning)
        pos = np.zeros(len(bins), dtype=np.int64)
        rows = np.arange(len(bins))
        for _ in range(depth):
            f = feature[pos]
            split = f >= 0
            if not split.any():
                break
            b = bins[rows, np.where(split, f, 0)]
            left = table[pos, b]
            pos = np.where(split, 2 * pos + 1 + (~left), pos)
        return pos

    def predict(self, bins: np.ndarray, binning: Binning) -> np.ndarray:
        return np.asarray(self.value)[self.positions(bins, binning, self.depth)]


# -- losses -----------------------------------------------------------------------------
#: A regression's target, standardized across pods, is clipped here on the pods, so one
#: pod's gradient histograms have a known bound (a value 30 standard deviations from the
#: mean is an outlier the trees would only chase).
TARGET_CLIP = 30.0


def n_outputs(n_classes: int) -> int:
    """Trees per boosting iteration: one for regression (``n_classes == 0``) and binary
    classification, one per class otherwise."""
    return 1 if n_classes in (0, 2) else n_classes


def gradient_bound(n_classes: int) -> float:
    """The largest |gradient| or hessian of one row: log loss 1, squared error (with the
    clipped standardized target and margins within its range) 2 * TARGET_CLIP."""
    return 2 * TARGET_CLIP if n_classes == 0 else 1.0


def gradients(margins: np.ndarray, labels: np.ndarray, n_classes: int) -> tuple[np.ndarray, ...]:
    """Per output, ``(g, h)`` at ``margins [rows, outputs]``: squared error for regression
    (``labels``: the standardized target), the log loss otherwise."""
    if n_classes == 0:
        residual = np.clip(margins[:, 0] - labels, -2 * TARGET_CLIP, 2 * TARGET_CLIP)
        return residual, np.ones_like(residual)
    if n_classes == 2:
        p = 1.0 / (1.0 + np.exp(-margins[:, 0]))
        return ((p - labels), p * (1.0 - p))
    z = margins - margins.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    onehot = np.eye(n_classes)[labels]
    return (p - onehot, p * (1.0 - p))


def probabilities(margins: np.ndarray, n_classes: int) -> np.ndarray:
    if n_classes == 2:
        p = 1.0 / (1.0 + np.exp(-margins[:, 0]))
        return np.stack([1.0 - p, p], axis=1)
    z = margins - margins.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


# -- the model's state ------------------------------------------------------------------
@dataclass
class Ensemble:
    """A trained (or growing) boosted ensemble: bins, base margins, trees per iteration."""

    binning: Binning
    n_classes: int  # 0: regression
    base: list[float]
    trees: list[list[Tree]] = field(default_factory=list)  # [iteration][output]
    # Regression: the cross-pod mean and std the target was standardized with.
    target_mean: float = 0.0
    target_std: float = 1.0

    def margins(self, bins: np.ndarray, start: int = 0, base: bool = True) -> np.ndarray:
        k = n_outputs(self.n_classes)
        out = np.zeros((len(bins), k))
        if base:
            out += np.asarray(self.base)
        for iteration in self.trees[start:]:
            for j, tree in enumerate(iteration):
                out[:, j] += tree.predict(bins, self.binning)
        return out

    def predict_proba(self, bins: np.ndarray) -> np.ndarray:
        return probabilities(self.margins(bins), self.n_classes)

    def predict_values(self, bins: np.ndarray) -> np.ndarray:
        """A regression's predictions, in the target's units."""
        return self.margins(bins)[:, 0] * self.target_std + self.target_mean

    def to_dict(self) -> dict[str, Any]:
        return {
            "binning": self.binning.to_list(),
            "n_classes": self.n_classes,
            "base": list(self.base),
            "trees": [[t.to_dict() for t in it] for it in self.trees],
            "target_mean": self.target_mean,
            "target_std": self.target_std,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Ensemble:
        try:
            return cls(
                Binning.from_list(d["binning"]),
                int(d["n_classes"]),
                [float(v) for v in d["base"]],
                [[Tree.from_dict(t) for t in it] for it in d["trees"]],
                float(d.get("target_mean", 0.0)),
                float(d.get("target_std", 1.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelMismatchError(
                f"gradient-boosted trees: the ensemble is malformed ({type(exc).__name__}: "
                f"{exc}); train or serialize the model again"
            ) from exc


# -- server side: split finding ---------------------------------------------------------
@dataclass(frozen=True)
class Split:
    gain: float
    feature: int
    threshold: int = 0
    missing_left: bool = False
    left: tuple[int, ...] = ()
    left_sums: tuple[float, float] = (0.0, 0.0)
    right_sums: tuple[float, float] = (0.0, 0.0)


def _score(g: np.ndarray | float, h: np.ndarray | float, lam: float) -> Any:
    return g * g / (h + lam)


#: Gains this close (relative) are a tie, won by the earlier feature and threshold. Sums
#: differ in their last bits between pooled, plain and secure aggregation, and some splits
#: are exactly equal (education and education-num partition Adult's rows the same way).
TIE = 1e-7


def _first_best(gain: np.ndarray) -> int:
    top = float(gain.max())
    return int(np.argmax(gain >= top - TIE * abs(top)))


@functools.lru_cache(maxsize=8)
def _numeric_layout(binning: Binning) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For the numeric features, padded row indices into a node's histogram: their value
    bins ``[F, B]`` (padding points at an all-zero row past the end), their missing bins
    ``[F]``, the features' indices, and how many thresholds each has."""
    numeric = [f for f, fb in enumerate(binning.features) if fb.kind == "numeric"]
    offsets, pad = binning.offsets, binning.total
    width = max((binning.features[f].size - 1 for f in numeric), default=1)
    values = np.full((len(numeric), width), pad, dtype=np.int64)
    missing = np.empty(len(numeric), dtype=np.int64)
    for row, f in enumerate(numeric):
        m = binning.features[f].size - 1
        values[row, :m] = offsets[f] + np.arange(m)
        missing[row] = offsets[f] + m
    thresholds = np.array([binning.features[f].size - 2 for f in numeric], dtype=np.int64)
    return values, missing, np.asarray(numeric, dtype=np.int64), thresholds


def _gain(gl: Any, hl: Any, g: float, h: float, params: BoostingParams) -> Any:
    lam = params.reg_lambda
    parent = _score(g, h, lam)
    return 0.5 * (_score(gl, hl, lam) + _score(g - gl, h - hl, lam) - parent) - params.gamma


def best_split(hist: np.ndarray, binning: Binning, params: BoostingParams) -> Split | None:
    """The best split of one node from its ``[bins, 3]`` (G, H, count) histogram.

    Every candidate (numeric thresholds with missing values right or left, categorical
    prefixes) is scored at once; gains within :data:`TIE` of the best are a tie, won by
    the earliest (feature, missing side, threshold).
    """
    lam, mcw = params.reg_lambda, params.min_child_weight
    offsets = binning.offsets
    first = hist[offsets[0] : offsets[1]]
    g_tot, h_tot = float(first[:, 0].sum()), float(first[:, 1].sum())
    # (gain, feature, option, position, split) of every feature's candidates.
    candidates: list[tuple[float, int, int, int, Split]] = []
    values, missing, numeric, thresholds = _numeric_layout(binning)
    if numeric.size:
        padded = np.vstack([hist, np.zeros((1, 3))])
        g, h, c = (padded[values, col] for col in range(3))
        c = np.rint(c)
        gm, hm, cm = (padded[missing, col] for col in range(3))
        cm = np.rint(cm)
        gl, hl, cl = (np.cumsum(x, axis=1)[:, :-1] for x in (g, h, c))
        n_rows = c.sum(axis=1) + cm
        in_range = np.arange(gl.shape[1])[None, :] < thresholds[:, None]
        for option, (GL, HL, CL, allowed) in enumerate(
            (
                (gl, hl, cl, np.ones_like(cm, dtype=bool)),
                (gl + gm[:, None], hl + hm[:, None], cl + cm[:, None], cm > 0),
            )
        ):
            HR, CR = h_tot - HL, n_rows[:, None] - CL
            valid = in_range & allowed[:, None] & (np.minimum(HL, HR) >= mcw) & (CL > 0) & (CR > 0)
            if not valid.any():
                continue
            gain = np.where(valid, _gain(GL, HL, g_tot, h_tot, params), -np.inf)
            top = float(gain.max())
            rows, cols = np.nonzero(gain >= top - TIE * abs(top))
            for row, t in zip(rows.tolist(), cols.tolist(), strict=True):
                f = int(numeric[row])
                split = Split(
                    float(gain[row, t]),
                    f,
                    threshold=t,
                    missing_left=bool(option),
                    left_sums=(float(GL[row, t]), float(HL[row, t])),
                    right_sums=(g_tot - float(GL[row, t]), h_tot - float(HL[row, t])),
                )
                candidates.append((split.gain, f, option, t, split))
    for f, fb in enumerate(binning.features):
        if fb.kind == "numeric":
            continue
        part = hist[offsets[f] : offsets[f + 1]]
        g1, h1, c1 = part[:, 0], part[:, 1], np.rint(part[:, 2])
        present = np.flatnonzero(c1 > 0)
        if present.size < 2:
            continue
        ratio = g1[present] / (h1[present] + lam)
        order = present[np.lexsort((present, ratio))]
        GL1, HL1 = np.cumsum(g1[order])[:-1], np.cumsum(h1[order])[:-1]
        valid1 = np.minimum(HL1, h_tot - HL1) >= mcw
        if not valid1.any():
            continue
        gain1 = np.where(valid1, _gain(GL1, HL1, g_tot, h_tot, params), -np.inf)
        k = _first_best(gain1)
        split = Split(
            float(gain1[k]),
            f,
            left=tuple(sorted(int(b) for b in order[: k + 1])),
            left_sums=(float(GL1[k]), float(HL1[k])),
            right_sums=(g_tot - float(GL1[k]), h_tot - float(HL1[k])),
        )
        candidates.append((split.gain, f, 0, k, split))
    if not candidates:
        return None
    top = max(c[0] for c in candidates)
    if top <= 1e-9:
        return None
    tied = [c for c in candidates if c[0] >= top - TIE * abs(top)]
    return min(tied, key=lambda c: (c[1], c[2], c[3]))[4]


def leaf_value(g: float, h: float, params: BoostingParams) -> float:
    return float(-params.learning_rate * g / (h + params.reg_lambda))


# -- the algorithm ----------------------------------------------------------------------
@dataclass(frozen=True)
class BoostingSetup:
    """What the server knows before the first tree: features, classes, column scaling."""

    categorical: dict[str, tuple[Any, ...]]  # column -> vocabulary (schema order)
    continuous: list[str]
    mean: list[float]
    std: list[float]
    n_classes: int  # 0: regression
    target_mean: float = 0.0
    target_std: float = 1.0


def fit_ensemble(
    exchange: Exchange,
    setup: BoostingSetup,
    params: BoostingParams,
    on_tree: Any = None,
) -> Ensemble:
    """Boost ``params.n_trees`` iterations through ``exchange``; the same code centrally."""
    k = setup.n_classes
    grids = [grid(m, s) for m, s in zip(setup.mean, setup.std, strict=True)]
    size = k + 1 + len(setup.continuous) * (GRID_CELLS + 2)
    init = exchange.sum({"op": "init", "grids": [list(g) for g in grids]}, size, None)
    labels, n_rows = np.rint(init[:k]), float(np.rint(init[k]))
    if n_rows <= 0:
        raise ConfigError("gradient-boosted trees: the pods hold no training rows")
    features = [FeatureBins(c, "categorical", categories=v) for c, v in setup.categorical.items()]
    for i, column in enumerate(setup.continuous):
        counts = init[k + 1 + i * (GRID_CELLS + 2) : k + 1 + (i + 1) * (GRID_CELLS + 2)]
        low, width = grids[i]
        edges = edges_from_counts(counts, low, width, params.max_bins)
        features.append(FeatureBins(column, "numeric", edges=tuple(edges)))
    binning = Binning(tuple(features))
    if k == 0:  # the target is standardized across pods: its mean is 0
        base = [0.0]
    else:
        prior = np.clip(labels / n_rows, 1e-6, 1 - 1e-6)
        base = [math.log(prior[1] / prior[0])] if k == 2 else [math.log(p) for p in prior]
    ensemble = Ensemble(
        binning, k, base, target_mean=setup.target_mean, target_std=setup.target_std
    )
    outputs, total = n_outputs(k), binning.total
    # The ensemble travels as one JSON string, built once per tree (not once per level):
    # a pod parses it once per tree and reuses it for the tree's levels.
    encoded = json.dumps(ensemble.to_dict())
    for _ in range(params.n_trees):
        trees = [Tree.empty(params.max_depth) for _ in range(outputs)]
        open_nodes = [(j, 0) for j in range(outputs)]
        for depth in range(params.max_depth):
            request = {
                "op": "hist",
                "ensemble": encoded,
                "growing": [t.to_dict() for t in trees],
                "depth": depth,
                "open": [list(n) for n in open_nodes],
            }
            # One row's gradient and hessian are bounded: a bin sums at most n_rows of them.
            bound = n_rows * gradient_bound(k)
            vector = exchange.sum(request, len(open_nodes) * total * 3, bound)
            hists = vector.reshape(len(open_nodes), total, 3)
            next_open = []
            for (j, node), hist in zip(open_nodes, hists, strict=True):
                tree = trees[j]
                split = best_split(hist, binning, params)
                if split is None:
                    g = float(hist[: binning.sizes[0], 0].sum())
                    h = float(hist[: binning.sizes[0], 1].sum())
                    tree.value[node] = leaf_value(g, h, params)
                    continue
                tree.feature[node] = split.feature
                tree.threshold[node] = split.threshold
                tree.missing_left[node] = split.missing_left
                tree.left_categories[node] = list(split.left)
                left, right = 2 * node + 1, 2 * node + 2
                if depth + 1 == params.max_depth:
                    tree.value[left] = leaf_value(*split.left_sums, params)
                    tree.value[right] = leaf_value(*split.right_sums, params)
                else:
                    next_open += [(j, left), (j, right)]
            open_nodes = next_open
            if not open_nodes:
                break
        ensemble.trees.append(trees)
        encoded = json.dumps(ensemble.to_dict())
        if on_tree is not None:
            on_tree(len(ensemble.trees), ensemble)
    return ensemble


# -- pod side ---------------------------------------------------------------------------
class BoostingData:
    """One pod's rows for boosting: features binned lazily, labels as class indices."""

    def __init__(
        self,
        frame: pd.DataFrame,
        target: str,
        classes: Sequence[Any],
        continuous: Sequence[str],
        target_scaling: tuple[float, float] | None = None,
    ) -> None:
        self.frame = frame
        self.labels: np.ndarray
        if target_scaling is not None:  # regression: the standardized, clipped target
            mean, std = target_scaling
            raw = pd.to_numeric(frame[target], errors="coerce").to_numpy(dtype=np.float64)
            if np.isnan(raw).any():
                raise ModelMismatchError(f"target column {target!r} holds missing values")
            self.labels = np.clip((raw - mean) / std, -TARGET_CLIP, TARGET_CLIP)
            self.n_classes = 0
        else:
            codes = pd.Index(list(classes)).get_indexer(frame[target])
            if (codes < 0).any():
                raise ModelMismatchError(
                    f"target column {target!r} holds values outside the classes {list(classes)}"
                )
            self.labels = codes.astype(np.int64)
            self.n_classes = len(classes)
        self.continuous = list(continuous)
        self._bins: tuple[str, np.ndarray] | None = None
        # Margins of the ensemble's first ``n`` iterations: (key, n, margins).
        self._margins: tuple[str, int, np.ndarray] | None = None
        self._parsed: tuple[str, Ensemble] | None = None

    def answer(self, request: Mapping[str, Any]) -> np.ndarray:
        op = request.get("op")
        if op == "init":
            return self._init(request)
        if op == "hist":
            return self._hist(request)
        raise ConfigError(f"gradient-boosted trees: unknown exchange {op!r}")

    def _init(self, request: Mapping[str, Any]) -> np.ndarray:
        counts: np.ndarray = np.zeros(0)
        if self.n_classes:
            counts = np.bincount(self.labels, minlength=self.n_classes)
        parts = [np.asarray(counts, dtype=np.float64)]
        parts.append(np.array([float(len(self.labels))]))
        for column, (low, width) in zip(self.continuous, request["grids"], strict=True):
            raw = pd.to_numeric(self.frame[column], errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan
            )
            parts.append(grid_counts(raw, float(low), float(width)))
        return np.concatenate(parts)

    def bins(self, binning: Binning) -> np.ndarray:
        key = repr(binning.to_list())
        if self._bins is None or self._bins[0] != key:
            self._bins = (key, binning.transform(self.frame))
            self._margins = None
        return self._bins[1]

    def ensemble(self, encoded: Any) -> Ensemble:
        """The ensemble a request carries (a JSON string, or a dict), parsed once per tree."""
        if not isinstance(encoded, str):
            return Ensemble.from_dict(encoded)
        if self._parsed is None or self._parsed[0] != encoded:
            self._parsed = (encoded, Ensemble.from_dict(json.loads(encoded)))
        return self._parsed[1]

    def margins(self, ensemble: Ensemble, bins: np.ndarray) -> np.ndarray:
        # Earlier iterations never change: keep their margins and add the new ones.
        key = repr(ensemble.base)
        n = len(ensemble.trees)
        if self._margins is not None and self._margins[0] == key and self._margins[1] <= n:
            done = self._margins[2] + ensemble.margins(bins, start=self._margins[1], base=False)
        else:
            done = ensemble.margins(bins)
        self._margins = (key, n, done)
        return done

    def _hist(self, request: Mapping[str, Any]) -> np.ndarray:
        ensemble = self.ensemble(request["ensemble"])
        binning = ensemble.binning
        bins = self.bins(binning)
        g_all, h_all = gradients(self.margins(ensemble, bins), self.labels, self.n_classes)
        if g_all.ndim == 1:
            g_all, h_all = g_all[:, None], h_all[:, None]
        growing = [Tree.from_dict(t) for t in request["growing"]]
        depth = int(request["depth"])
        open_nodes = [(int(j), int(n)) for j, n in request["open"]]
        total, offsets = binning.total, binning.offsets[:-1]
        out = np.zeros((len(open_nodes), total, 3))
        for j, tree in enumerate(growing):
            mine = [(slot, node) for slot, (t, node) in enumerate(open_nodes) if t == j]
            if not mine:
                continue
            pos = tree.positions(bins, binning, depth)
            slot_of = np.full(len(tree.feature), -1, dtype=np.int64)
            for slot, node in mine:
                slot_of[node] = slot
            slot = slot_of[pos]
            rows = slot >= 0
            base = slot[rows] * total
            length = len(open_nodes) * total
            weights = (g_all[rows, j], h_all[rows, j], None)
            for f, offset in enumerate(offsets):
                index = base + offset + bins[rows, f]
                for col, w in enumerate(weights):
                    out[:, :, col] += np.bincount(index, weights=w, minlength=length).reshape(
                        len(open_nodes), total
                    )
        return out.reshape(-1)
