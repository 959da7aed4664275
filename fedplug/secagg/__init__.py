"""Secure aggregation core: field arithmetic, fixed point, keys, masks and the protocol.

Pure numpy + ``cryptography``; no Flower, no torch. See DESIGN.md, "Secure aggregation".
"""

from __future__ import annotations

from fedplug.secagg._field import Q, add, as_field, check_prime, neg, sub, sum_vectors
from fedplug.secagg._fixedpoint import FixedPointCodec
from fedplug.secagg._keys import (
    IdentityKey,
    KeyBundle,
    bundle_payload,
    exchange_public_bytes,
    new_exchange_key,
    verify_bundle,
)
from fedplug.secagg._masks import expand_mask, pair_secret, participants_digest
from fedplug.secagg._protocol import MAX_ATTEMPT, PodProtocol, ServerProtocol, Unmasking, majority

__all__ = [
    "MAX_ATTEMPT",
    "Q",
    "FixedPointCodec",
    "IdentityKey",
    "KeyBundle",
    "PodProtocol",
    "ServerProtocol",
    "Unmasking",
    "add",
    "as_field",
    "bundle_payload",
    "check_prime",
    "exchange_public_bytes",
    "expand_mask",
    "majority",
    "neg",
    "new_exchange_key",
    "pair_secret",
    "participants_digest",
    "sub",
    "sum_vectors",
    "verify_bundle",
]
