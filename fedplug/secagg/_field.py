"""Vectorised arithmetic in the prime field Z_q on uint64 arrays.

Every element is kept in [0, q) with q < 2^62, so the sum of two elements is < 2^63 and fits a
uint64 without overflow; one conditional subtraction reduces it again.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedplug._errors import SecureAggregationError

Q: int = 2**61 - 1
"""The default prime, the Mersenne prime 2^61 - 1."""

_MAX_Q = 2**62

# Deterministic Miller-Rabin witnesses: these bases are exact for every n < 3.3e24.
_MR_BASES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41)


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    for p in _MR_BASES:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for a in _MR_BASES:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def check_prime(q: object) -> int:
    """Return ``q`` as an int if it is a usable field prime (2 < q < 2^62), else raise."""
    if isinstance(q, bool) or not isinstance(q, (int, np.integer)):
        raise SecureAggregationError(
            f"prime_q={q!r} is not an integer; set prime_q to an odd prime below 2^62 "
            f"(the default is 2^61 - 1 = {Q})"
        )
    q = int(q)
    if not (2 < q < _MAX_Q) or not _is_prime(q):
        raise SecureAggregationError(
            f"prime_q={q} is not an odd prime below 2^62; set prime_q to such a prime "
            f"(the default is 2^61 - 1 = {Q})"
        )
    return q


def as_field(values: object, q: int = Q, *, name: str = "values") -> np.ndarray:
    """Return ``values`` as a uint64 array of field elements, checking every one is in [0, q)."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "ui":
        raise SecureAggregationError(
            f"{name} has dtype {arr.dtype}; field elements must be integers in [0, {q}): "
            "encode floats with FixedPointCodec first"
        )
    if arr.size and (arr.min() < 0 or arr.max() >= q):
        bad = int(np.count_nonzero((arr < 0) | (arr >= q)))
        raise SecureAggregationError(
            f"{name} has {bad} element(s) outside the field [0, {q}); "
            "encode values with FixedPointCodec (same prime_q) before masking or summing"
        )
    return arr.astype(np.uint64, copy=False)


def iadd(acc: np.ndarray, b: np.ndarray, q: int = Q) -> np.ndarray:
    """In place ``acc = (acc + b) mod q``; both already reduced uint64 arrays."""
    np.add(acc, b, out=acc)
    # Branch-free reduction: for s in [0, 2q), s - q wraps past 2^64 - q > s exactly when s < q,
    # so min(s, s - q) is s mod q.
    np.minimum(acc, acc - np.uint64(q), out=acc)
    return acc


def isub(acc: np.ndarray, b: np.ndarray, q: int = Q) -> np.ndarray:
    """In place ``acc = (acc - b) mod q``; both already reduced uint64 arrays."""
    # d = acc - b wraps to d + 2^64 when acc < b; then d + q wraps back to the answer, which
    # is the smaller of the two. When acc >= b, d < q <= d + q. Either way min(d, d + q).
    np.subtract(acc, b, out=acc)
    np.minimum(acc, acc + np.uint64(q), out=acc)
    return acc


def add(a: object, b: object, q: int = Q) -> np.ndarray:
    """``(a + b) mod q`` element-wise."""
    out = as_field(a, q, name="a").copy()
    return iadd(out, as_field(b, q, name="b"), q)


def sub(a: object, b: object, q: int = Q) -> np.ndarray:
    """``(a - b) mod q`` element-wise."""
    out = as_field(a, q, name="a").copy()
    return isub(out, as_field(b, q, name="b"), q)


def neg(a: object, q: int = Q) -> np.ndarray:
    """``(-a) mod q`` element-wise (0 stays 0)."""
    arr = as_field(a, q, name="a")
    out = np.zeros_like(arr)
    return isub(out, arr, q)


def sum_vectors(vectors: Sequence[object], q: int = Q) -> np.ndarray:
    """Sum of equally shaped field vectors modulo q (one pass per vector, no element loops)."""
    if len(vectors) == 0:
        raise SecureAggregationError(
            "sum_vectors needs at least one vector; pass the pods' uploads"
        )
    arrays = [as_field(v, q, name=f"vector {i}") for i, v in enumerate(vectors)]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise SecureAggregationError(
            f"sum_vectors got vectors of different shapes {sorted(shapes)}; "
            "every pod must encode the same arrays in the same order"
        )
    acc = arrays[0].copy()
    for arr in arrays[1:]:
        iadd(acc, arr, q)
    return acc
