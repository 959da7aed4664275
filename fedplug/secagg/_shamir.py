"""t-out-of-n Shamir secret sharing of 32-byte seeds over GF(2^521 - 1).

A pod shares the seed of its per-exchange self-mask with the exchange's participants: any
``t`` shares give the seed back (Lagrange interpolation at 0), fewer reveal nothing about
it (every seed is equally likely given ``t - 1`` shares). The prime is the Mersenne prime
2^521 - 1, larger than any 32-byte seed, so a seed is one field element.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping

from fedplug._errors import SecureAggregationError

SHARE_PRIME = 2**521 - 1
SEED_BYTES = 32
SHARE_BYTES = (SHARE_PRIME.bit_length() + 7) // 8  # 66


def _check_points(xs: Iterable[int]) -> list[int]:
    points = list(xs)
    if len(set(points)) != len(points):
        raise SecureAggregationError(f"share points {points} must be distinct")
    bad = [x for x in points if not (isinstance(x, int) and 0 < x < SHARE_PRIME)]
    if bad:
        raise SecureAggregationError(f"share points {bad} must be integers in [1, p)")
    return points


def split(secret: bytes, threshold: int, xs: Iterable[int]) -> dict[int, int]:
    """Shares of ``secret`` (32 bytes) at the points ``xs``; any ``threshold`` recover it."""
    points = _check_points(xs)
    if not isinstance(secret, bytes) or len(secret) != SEED_BYTES:
        raise SecureAggregationError(f"a shared seed must be {SEED_BYTES} bytes")
    if not (isinstance(threshold, int) and 1 <= threshold <= len(points)):
        raise SecureAggregationError(
            f"threshold {threshold!r} must be between 1 and the number of shares {len(points)}"
        )
    coefficients = [int.from_bytes(secret, "big")]
    coefficients += [secrets.randbelow(SHARE_PRIME) for _ in range(threshold - 1)]
    shares = {}
    for x in points:
        y = 0
        for c in reversed(coefficients):  # Horner
            y = (y * x + c) % SHARE_PRIME
        shares[x] = y
    return shares


def combine(shares: Mapping[int, int], threshold: int) -> bytes:
    """The secret from at least ``threshold`` shares ``{x: y}`` (the first ``threshold``)."""
    if len(shares) < threshold:
        raise SecureAggregationError(
            f"{len(shares)} share(s) given, fewer than the threshold {threshold}: the seed "
            "cannot be recovered"
        )
    points = _check_points(sorted(shares)[:threshold])
    secret = 0
    for i in points:
        numerator, denominator = 1, 1
        for j in points:
            if j != i:
                numerator = numerator * -j % SHARE_PRIME
                denominator = denominator * (i - j) % SHARE_PRIME
        y = shares[i]
        if not (isinstance(y, int) and 0 <= y < SHARE_PRIME):
            raise SecureAggregationError(f"share at point {i} is not a field element")
        secret = (secret + y * numerator * pow(denominator, -1, SHARE_PRIME)) % SHARE_PRIME
    if secret >= 1 << (8 * SEED_BYTES):
        raise SecureAggregationError(
            "the shares do not combine to a seed: at least one of them is wrong"
        )
    return secret.to_bytes(SEED_BYTES, "big")


def share_to_bytes(y: int) -> bytes:
    return y.to_bytes(SHARE_BYTES, "big")


def share_from_bytes(data: bytes) -> int:
    if len(data) != SHARE_BYTES:
        raise SecureAggregationError(f"a share is {SHARE_BYTES} bytes, got {len(data)}")
    y = int.from_bytes(data, "big")
    if y >= SHARE_PRIME:
        raise SecureAggregationError("a share is not a field element")
    return y
