"""Fixed-point encoding of weighted float updates into the field, with a no-wrap guarantee.

Why the sum can never wrap
--------------------------
Let h = (q - 1) / 2, n = n_pods, W = max_weight, c = clip, and

    scale = floor(h / (n * W * c))          (>= 1, checked; see the float64 cap below)
    vmax  = floor(h / (n * W))              (largest |v| one element may take).

Encoding clips x to [-c, c], rounds v = rint(x * scale) and then clamps v to [-vmax, vmax]
(the clamp only matters when rounding pushes c * scale, which is <= h / (n W), up past vmax; it
moves v by at most one unit). A pod with weight w in [0, W] contributes w * v, so
|w * v| <= W * vmax <= h / n < 2^62 fits an int64. Summed over at most n pods,

    |sum_i w_i * v_i| <= n * W * vmax <= h = (q - 1) / 2.

Every integer in [-h, h] has exactly one representative modulo q (negatives as q - |s|), so the
field sum maps back to the exact integer sum: values above h decode as negative. Masks cancel
modulo q and do not affect this. Counts are covered the same way: n * W <= h is checked, and
each count is in [0, W].

Precision: the scale is also capped so that c * scale <= 2^52 and scale is an exact float64.
Then x * scale is computed with an error <= 1/2 and rint adds <= 1/2, so every encoded element
is within one unit (1/scale) of x * scale, and a decoded sum within sum_i w_i / scale of the
exact weighted sum (plus float64 rounding of the result). The cap only binds for tiny
n * W * c, where finer steps than float64 resolves would be meaningless anyway.
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction

import numpy as np

from fedplug._errors import EncodingError, SecureAggregationError
from fedplug._validation import positive_int
from fedplug.secagg._field import Q, as_field, check_prime

_PRODUCT_CAP = 2**52  # largest |x * scale|, so the float64 product is exact to 1/2
_BLOCK = 1 << 15  # elements per encoding step: scratch stays in L2


def _exact_float_floor(n: int) -> int:
    """The largest integer <= n that a float64 represents exactly."""
    f = float(n)
    if int(f) > n:
        f = math.nextafter(f, 0.0)
    return int(f)


def _positive_int(value: object, name: str) -> int:
    return positive_int(value, name=name, error=SecureAggregationError, fix=f"fix {name}")


class FixedPointCodec:
    """Encode ``weight * clip(x)`` as field elements so that n_pods of them sum without wrapping.

    ``clip`` bounds |x| per element, ``max_weight`` bounds a pod's weight (its example count)
    and ``n_pods`` bounds how many pods are summed; the scale is derived from them and ``q``.
    """

    def __init__(self, clip: float, max_weight: int, n_pods: int, q: int = Q) -> None:
        self.q = check_prime(q)
        if (
            isinstance(clip, bool)
            or not isinstance(clip, numbers.Real)
            or not math.isfinite(clip)
            or clip <= 0
        ):
            raise SecureAggregationError(
                f"clip={clip!r} must be a positive finite number (the largest |value| of an "
                "update element); fix clip"
            )
        self.clip: float = float(clip)
        self.max_weight: int = _positive_int(max_weight, "max_weight")
        self.n_pods: int = _positive_int(n_pods, "n_pods")
        half = (self.q - 1) // 2
        capacity = self.n_pods * self.max_weight
        if capacity > half:
            raise SecureAggregationError(
                f"n_pods * max_weight = {self.n_pods} * {self.max_weight} = {capacity} exceeds "
                f"(q - 1) / 2 = {half}, so counts could wrap; lower max_weight (cap the example "
                "count a pod reports) or n_pods, or use a larger prime_q"
            )
        # Exact rational arithmetic: a float division could round the scale up past the bound.
        scale = math.floor(Fraction(half) / (capacity * Fraction(self.clip)))
        scale = _exact_float_floor(min(scale, math.floor(Fraction(_PRODUCT_CAP) / Fraction(clip))))
        if scale < 1:
            raise SecureAggregationError(
                f"fixed-point scale would be {scale} < 1: n_pods * max_weight * clip = "
                f"{self.n_pods} * {self.max_weight} * {self.clip} exceeds (q - 1) / 2 = {half}; "
                "lower clip (the update range) first, then max_weight or n_pods"
            )
        self.scale: int = scale
        self.vmax: int = half // capacity
        # The clamp to vmax is a no-op when even the largest clipped value rounds within it
        # (x * scale and rint are monotonic), which is the usual case.
        self._clamp: bool = float(np.rint(self.clip * float(scale))) > self.vmax
        self._half: int = half

    def __repr__(self) -> str:
        return (
            f"FixedPointCodec(clip={self.clip}, max_weight={self.max_weight}, "
            f"n_pods={self.n_pods}, q={self.q}, scale={self.scale})"
        )

    def _check_weight(self, weight: object, what: str) -> int:
        if (
            isinstance(weight, bool)
            or not isinstance(weight, numbers.Integral)
            or not 0 <= int(weight) <= self.max_weight
        ):
            raise EncodingError(
                f"{what} {weight!r} must be an integer in [0, max_weight={self.max_weight}]; "
                "raise max_weight in the aggregator settings or cap the pod's example count"
            )
        return int(weight)

    def encode_weighted(
        self, x: object, weight: int, *, out: np.ndarray | None = None
    ) -> tuple[np.ndarray, int]:
        """Return ``(field elements of weight * x, number of clipped elements)``; same shape.

        ``out`` (uint64, x's size) receives the result; it may be x's own float64 memory
        viewed as uint64, which encodes in place (after an error its contents are
        unspecified). Checks and encoding go block by block through small scratch arrays:
        one read of x, and nothing update-sized is allocated besides the result.
        """
        w = self._check_weight(weight, "weight")
        arr = np.asarray(x, dtype=np.float64)
        flat = arr.reshape(-1)
        if out is None:
            out = np.empty(flat.size, dtype=np.uint64)
        elif out.dtype != np.uint64 or out.size != flat.size or not out.flags.c_contiguous:
            raise SecureAggregationError(
                f"out must be a contiguous uint64 array of {flat.size} elements, got "
                f"{out.dtype} of {out.size}"
            )
        result = out.reshape(-1)
        signed = result.view(np.int64)
        scratch = np.empty(min(_BLOCK, flat.size), dtype=np.float64)
        scale = float(self.scale)
        n_clipped = 0
        for start in range(0, flat.size, _BLOCK):
            # Checks and encoding read the block while it is in cache; the block is read into
            # scratch before its slot of out is written, so out may share x's memory.
            part = flat[start : start + _BLOCK]
            v = scratch[: part.size]
            # A reduction finds NaN and inf without a temporary; the count runs only then.
            if not math.isfinite(np.add.reduce(part)) and not np.isfinite(flat).all():
                bad = flat.size - int(np.count_nonzero(np.isfinite(flat)))
                raise EncodingError(
                    f"update has {bad} non-finite element(s) (NaN or inf); a diverged update is "
                    "not clipped silently: lower the learning rate or check the pod's data"
                )
            if part.max() > self.clip or part.min() < -self.clip:
                n_clipped += int(np.count_nonzero(np.abs(part) > self.clip))
                np.clip(part, -self.clip, self.clip, out=v)
                v *= scale
            else:  # exact float; |v| <= 2^52: errs <= 1/2
                np.multiply(part, scale, out=v)
            np.rint(v, out=v)
            block = signed[start : start + v.size]
            np.copyto(block, v, casting="unsafe")
            if self._clamp:
                np.clip(block, -self.vmax, self.vmax, out=block)
            block *= w  # |v * w| <= max_weight * vmax <= (q - 1) / 2, see the module docstring
            self._to_field(block, v.view(np.uint64))
        return result.reshape(arr.shape), n_clipped

    def _to_field(self, v: np.ndarray, tmp: np.ndarray | None = None) -> np.ndarray:
        """Signed int64 values (|v| <= (q - 1) / 2) as field elements, reusing ``v``'s memory."""
        # Two's complement: a negative v is 2^64 - |v| as uint64, and adding q wraps it to
        # q - |v|, the smaller of the two; a non-negative v is below q <= v + q.
        out = v.view(np.uint64)
        tmp = np.add(out, np.uint64(self.q), out=tmp)
        np.minimum(out, tmp, out=out)
        return out

    def encode_count(self, n: int) -> np.uint64:
        """Encode an example count (an integer in [0, max_weight], scale 1) as a field element."""
        count = self._check_weight(n, "count")
        # numpy's stubs type a scalar constructor's result as Any; it is a uint64.
        encoded: np.uint64 = np.uint64(count)
        return encoded

    def _signed(self, field_values: object) -> np.ndarray:
        arr = as_field(field_values, self.q, name="field sum")
        signed = arr.astype(np.int64)
        # Values above h stand for negatives: subtract q there (vectorised, no fancy indexing).
        np.subtract(signed, np.int64(self.q), out=signed, where=arr > np.uint64(self._half))
        return signed

    def decode_int(self, field_values: object) -> int | np.ndarray:
        """Signed integer(s) a field sum stands for (int for a scalar, int64 array otherwise)."""
        signed = self._signed(field_values)
        return int(signed) if signed.ndim == 0 else signed

    def decode_sum(self, field_sum: object) -> np.ndarray:
        """Float64 value of a sum of encoded weighted updates: ``sum_i w_i * x_i``."""
        return self.decode_mean(field_sum, 1)

    def decode_mean(self, field_sum: object, count: int) -> np.ndarray:
        """Float64 ``decode_sum(field_sum) / count`` (a weighted mean when count is the
        summed weight), block by block through small scratch arrays: one new array."""
        arr = as_field(field_sum, self.q, name="field sum")
        flat = arr.reshape(-1)
        out = np.empty(flat.size, dtype=np.float64)
        signed = np.empty(min(_BLOCK, flat.size), dtype=np.int64)
        above = np.empty(signed.size, dtype=bool)
        half, q, scale = np.uint64(self._half), np.int64(self.q), float(self.scale)
        for start in range(0, flat.size, _BLOCK):
            part = flat[start : start + _BLOCK]
            s, a, o = signed[: part.size], above[: part.size], out[start : start + part.size]
            np.copyto(s, part, casting="unsafe")  # < q < 2^62: exact as int64
            np.greater(part, half, out=a)
            np.subtract(s, q, out=s, where=a)  # values above h stand for negatives
            np.divide(s, scale, out=o)
            if count != 1:
                o /= count
        return out.reshape(arr.shape)
