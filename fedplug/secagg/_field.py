"""Vectorised arithmetic in the prime field Z_q on uint64 arrays.

Every element is kept in [0, q) with q < 2^62, so the sum of two elements is < 2^63 and fits a
uint64 without overflow; one conditional subtraction reduces it again.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedplug._errors import SecureAggregationError

Q: int = 2**61 - 1
"""The default prime, the Mersenne prime 2^61 - 1: fedplug's one definition of it.

The fast paths (``FieldSum``, ``sum_packed``, mask expansion) are for this prime.
"""

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
    # Unsigned arrays need only the max check (one reduction, no temporary).
    if arr.size and ((arr.dtype.kind == "i" and arr.min() < 0) or arr.max() >= q):
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
    total = FieldSum(q)
    for arr in arrays:
        total.add(arr)
    return total.result()


_M61 = np.uint64(Q)
_LAZY = 7  # 8 values below 2^61 sum below 2^64: fold after 7 additions to an element < q + 8
_SUM_BLOCK = 1 << 15  # elements per block of sum_packed: a block of the sum stays in L2


def fold61(acc: np.ndarray, tmp: np.ndarray | None = None) -> np.ndarray:
    """In place ``acc = (acc & q) + (acc >> 61)`` for q = 2^61 - 1: congruent, and <= q + 7."""
    tmp = np.right_shift(acc, np.uint64(61), out=tmp)
    np.bitwise_and(acc, _M61, out=acc)
    np.add(acc, tmp, out=acc)
    return acc


def lazy_add61(acc: np.ndarray, values: np.ndarray, pending: int, tmp: np.ndarray) -> int:
    """``acc += values`` with a fold first when ``pending`` additions are unfolded; returns
    the new count. Both below 2^61 after a fold, so eight additions never overflow."""
    if pending == _LAZY:
        fold61(acc, tmp)
        pending = 0
    np.add(acc, values, out=acc)
    return pending + 1


def reduce61(acc: np.ndarray, tmp: np.ndarray | None = None) -> np.ndarray:
    """In place reduction into [0, q) of any uint64 array, for q = 2^61 - 1."""
    fold61(acc, tmp)  # now <= q + 7 < 2q
    tmp = np.subtract(acc, _M61, out=tmp)
    np.minimum(acc, tmp, out=acc)
    return acc


class FieldSum:
    """A running sum of field vectors, one addition per vector, for streaming many uploads.

    For q = 2^61 - 1 the reduction is lazy: every input is < q < 2^61, so up to eight of them
    sum below 2^64 without overflow, and a fold every seven additions brings the total back
    to <= q + 7. The first vector is copied, later ones are only read, so a caller can reuse
    one buffer for every vector it adds.
    """

    def __init__(self, q: int = Q) -> None:
        self.q = q
        self._acc: np.ndarray | None = None
        self._tmp: np.ndarray | None = None
        self._pending = 0

    def add(self, values: np.ndarray) -> None:
        """Add a reduced uint64 field vector (checked by the caller, e.g. with as_field)."""
        if self._acc is None:
            self._acc = values.astype(np.uint64, copy=True)
            return
        if self.q != Q:
            iadd(self._acc, values, self.q)
            return
        if self._tmp is None:
            self._tmp = np.empty_like(self._acc)
        self._pending = lazy_add61(self._acc, values, self._pending, self._tmp)

    def result(self) -> np.ndarray:
        """The reduced sum (the accumulator itself: add nothing after this)."""
        if self._acc is None:
            raise SecureAggregationError("FieldSum has no vectors; add the uploads first")
        if self.q == Q:
            reduce61(self._acc, self._tmp)
        return self._acc


def _packing(q: int) -> tuple[int, int, int]:
    """(bits per element, spare high bits per word, carrier words per packed-in element)."""
    bits = q.bit_length()
    spare = 64 - bits
    return bits, spare, -(-bits // spare)


def packed_size(length: int, q: int = Q) -> int:
    """Number of uint64 words :func:`pack` makes of ``length`` field elements."""
    _, _, per = _packing(q)
    return -(-length // (per + 1)) * per


def padded_size(length: int, q: int = Q) -> int:
    """Elements :func:`unpack` writes for ``length`` packed ones (the padded vector)."""
    _, _, per = _packing(q)
    return -(-length // (per + 1)) * (per + 1)


def pack(values: np.ndarray, q: int = Q, *, in_place: bool = False) -> np.ndarray:
    """Pack field elements into fewer uint64 words, using the high bits they leave unused.

    Elements of q = 2^61 - 1 use 61 bits of a word; the spare 3 bits of 21 words hold a
    22nd element, so 22 elements travel in 21 words (95.5% of the plain uint64 size). The
    padded vector is cut into 22 equal blocks: the last block's elements are spread, 3 bits
    at a time, over the high bits of the first 21 blocks, so every step is a contiguous
    vectorised pass. :func:`unpack` inverts it.

    With ``in_place`` a contiguous uint64 ``values`` of :func:`padded_size` elements is
    packed into its own memory: the result is a view of its first words.
    """
    bits, spare, per = _packing(q)
    flat = np.ascontiguousarray(values, dtype=np.uint64).reshape(-1)
    pad = (-flat.size) % (per + 1)
    if pad:
        flat = np.concatenate([flat, np.zeros(pad, dtype=np.uint64)])
    rows = flat.size // (per + 1)
    # The first 21 blocks already sit where their words go: only the spread block's bits
    # are ORed into them, in a copy unless the caller allows writing into ``values``.
    words = flat[: per * rows].reshape(per, rows)
    if not in_place and np.may_share_memory(flat, values):
        words = words.copy()
    extra = flat[per * rows :]
    piece = np.empty(rows, dtype=np.uint64)
    low = np.uint64((1 << spare) - 1)
    for j in range(per):
        np.right_shift(extra, np.uint64(j * spare), out=piece)
        np.bitwise_and(piece, low, out=piece)
        np.left_shift(piece, np.uint64(bits), out=piece)
        np.bitwise_or(words[j], piece, out=words[j])
    return words.reshape(-1)


def _check_packed(words: object, length: int, q: int, name: str) -> np.ndarray:
    arr = np.asarray(words)
    if arr.dtype != np.uint64 or arr.ndim != 1 or arr.size != packed_size(length, q):
        raise SecureAggregationError(
            f"{name} has dtype {arr.dtype}, shape {arr.shape}, but {length} packed field "
            f"elements take {packed_size(length, q)} uint64 words; the pod and the server "
            "must run the same fedplug version"
        )
    return arr


def _unpack_spread(arr: np.ndarray, q: int, out: np.ndarray) -> np.ndarray:
    """The elements spread over the carriers' high bits (the last block), into ``out``."""
    bits, spare, per = _packing(q)
    rows = arr.size // per
    out[:] = 0
    carriers = arr.reshape(per, rows)
    piece = np.empty(rows, dtype=np.uint64)
    for j in range(per):
        np.right_shift(carriers[j], np.uint64(bits), out=piece)
        np.left_shift(piece, np.uint64(j * spare), out=piece)
        np.bitwise_or(out, piece, out=out)
    return out


def unpack(
    words: object,
    length: int,
    q: int = Q,
    *,
    name: str = "packed vector",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The ``length`` field elements packed by :func:`pack` (not yet range-checked).

    ``out``, a uint64 buffer of :func:`padded_size` elements, is reused (the result is a
    view of it); otherwise a new array is made.
    """
    bits, _, per = _packing(q)
    arr = _check_packed(words, length, q, name)
    rows = arr.size // per
    if out is None or out.dtype != np.uint64 or out.size < rows * (per + 1):
        out = np.empty(rows * (per + 1), dtype=np.uint64)
    else:
        out = out.reshape(-1)[: rows * (per + 1)]
    np.bitwise_and(arr, np.uint64((1 << bits) - 1), out=out[: per * rows])
    _unpack_spread(arr, q, out[per * rows :])
    return out[:length]


def sum_packed(uploads: Sequence[tuple[str, object]], length: int, q: int = Q) -> np.ndarray:
    """Sum of :func:`pack`-ed vectors of ``length`` elements, each checked to lie in the field.

    ``uploads`` lists ``(name, words)``; a bad one raises an error naming it. For
    q = 2^61 - 1 no whole vector is unpacked: the sum is built block by block, each block
    staying in cache while every upload's words for it are masked, checked and added, then
    the elements spread over the high bits are added upload by upload.
    """
    arrays = [(name, _check_packed(words, length, q, name)) for name, words in uploads]
    if not arrays:
        raise SecureAggregationError("sum_packed needs at least one upload")
    if q != Q:
        total = FieldSum(q)
        for name, arr in arrays:
            total.add(as_field(unpack(arr, length, q, name=name), q, name=name))
        return total.result()
    _, _, per = _packing(q)
    rows = arrays[0][1].size // per
    main = per * rows
    acc = np.empty(rows * (per + 1), dtype=np.uint64)
    block = min(_SUM_BLOCK, max(main, 1))
    tmp = np.empty(block, dtype=np.uint64)
    scratch = np.empty(block, dtype=np.uint64)
    for start in range(0, main, block):
        part = acc[start : min(start + block, main)]
        size = part.size
        pending = 0
        for i, (name, arr) in enumerate(arrays):
            dst = part if i == 0 else tmp[:size]
            np.bitwise_and(arr[start : start + size], _M61, out=dst)
            if dst.max() >= _M61:  # the element q itself: report it as as_field does
                as_field(unpack(arr, length, q, name=name), q, name=name)
            if i:
                pending = lazy_add61(part, dst, pending, scratch[:size])
        reduce61(part, scratch[:size])
    spread_total = FieldSum(q)
    spread = np.empty(rows, dtype=np.uint64)
    for name, arr in arrays:
        spread_total.add(as_field(_unpack_spread(arr, q, spread), q, name=name))
    acc[main:] = spread_total.result()
    return acc[:length]
