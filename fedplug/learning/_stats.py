"""Feature scaling computed across pods from aggregated moments, never per pod."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from fedplug._errors import DataStructureError, DataValidationError, TrainingError

STD_FLOOR = 1e-8


def local_feature_moments(
    frame: pd.DataFrame,
    continuous: Sequence[str],
    center: Sequence[float] | None = None,
    unit: Sequence[float] | None = None,
) -> np.ndarray:
    """First and second moments of the continuous columns over this pod's rows.

    With ``center`` and ``unit`` the moments are of ``(x - center) / unit``: values of
    order one, which a fixed-point secure sum encodes precisely whatever the column's
    magnitude (a census weight near 10^5 and a years-of-education count alike).

    Returns the float64 vector ``[mean_1..mean_k, meansq_1..meansq_k]``. Nulls are
    skipped (each moment is over the column's non-null values; a column that is all
    null gives 0, 0), so pods' vectors combine by a weighted mean with the pods' row
    counts as weights: that mean is exact when there are no nulls and a close
    approximation otherwise. The vector can therefore travel through any
    weighted-mean aggregator, plain or secure.
    """
    columns = list(continuous)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataStructureError(
            f"feature moments: column(s) {missing} are not in the table (columns: "
            f"{list(frame.columns)}); fix the datastructure or the pod's data"
        )
    k = len(columns)
    out = np.zeros(2 * k, dtype=np.float64)
    for i, col in enumerate(columns):
        try:
            values = pd.to_numeric(frame[col], errors="raise").to_numpy(
                dtype=np.float64, na_value=np.nan
            )
        except (TypeError, ValueError) as exc:
            raise DataValidationError(
                f"feature moments: continuous column {col!r} holds non-numeric values "
                f"({exc}); fix the data or declare the column categorical in the schema"
            ) from exc
        values = values[~np.isnan(values)]
        if center is not None and unit is not None:
            values = (values - float(center[i])) / float(unit[i])
        if values.size:
            out[i] = values.mean()
            out[k + i] = np.square(values).mean()
    return out


def moment_units(means: np.ndarray | Sequence[float]) -> np.ndarray:
    """A public unit per column for centred moments: the column's magnitude, at least 1."""
    return np.maximum(np.abs(np.asarray(means, dtype=np.float64)), 1.0)


def scaling_from_moments(
    vector: np.ndarray | Sequence[float],
    k: int,
    center: Sequence[float] | None = None,
    unit: Sequence[float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, std)`` of ``k`` features from a (global) moment vector.

    The variance is ``meansq - mean**2`` clipped at 0; std is floored at 1e-8 so a
    constant column scales to 0 instead of dividing by zero.
    """
    vec = np.asarray(vector, dtype=np.float64).reshape(-1)
    if vec.size != 2 * k:
        raise TrainingError(
            f"feature scaling: the moment vector has {vec.size} values but {k} continuous "
            f"feature(s) need {2 * k}; compute it with local_feature_moments on the same "
            "continuous columns"
        )
    if not np.all(np.isfinite(vec)):
        raise TrainingError(
            "feature scaling: the moment vector holds non-finite values; check the pods' "
            "continuous columns for infinities"
        )
    first = vec[:k].copy()
    var = np.clip(vec[k:] - np.square(first), 0.0, None)
    if center is not None and unit is not None:
        c = np.asarray(center, dtype=np.float64)
        u = np.asarray(unit, dtype=np.float64)
        return c + u * first, np.maximum(u * np.sqrt(var), STD_FLOOR)
    return first, np.maximum(np.sqrt(var), STD_FLOOR)
