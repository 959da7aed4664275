"""Pairwise secrets (X25519 + HKDF) and per-round mask vectors (HKDF + AES-256-CTR)."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Sequence

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedplug._errors import SecureAggregationError
from fedplug._validation import int_at_least
from fedplug.secagg._field import (
    _M61,
    Q,
    check_prime,
    iadd,
    isub,
    lazy_add61,
    reduce61,
)
from fedplug.secagg._keys import _length_prefixed, exchange_public_bytes

_PAIR_DOMAIN = b"fedplug/secagg/pair-secret/v1"
_MASK_DOMAIN = b"fedplug/secagg/mask/v2"
_PARTICIPANTS_DOMAIN = b"fedplug/secagg/participants/v1"


def pair_secret(
    my_exchange_private: X25519PrivateKey, peer_exchange_public: bytes | X25519PublicKey
) -> bytes:
    """32-byte secret shared by two pods: HKDF of their X25519 result, bound to both keys.

    Symmetric: ``pair_secret(a, B) == pair_secret(b, A)``.
    """
    mine = exchange_public_bytes(my_exchange_private)
    try:
        if isinstance(peer_exchange_public, X25519PublicKey):
            peer_key = peer_exchange_public
        else:
            peer_key = X25519PublicKey.from_public_bytes(bytes(peer_exchange_public))
        shared = my_exchange_private.exchange(peer_key)
    except ValueError as exc:
        # Wrong length, or a low-order point giving an all-zero secret (OpenSSL refuses it).
        shown = (
            bytes(peer_exchange_public).hex()
            if isinstance(peer_exchange_public, (bytes, bytearray, memoryview))
            else repr(peer_exchange_public)
        )
        raise SecureAggregationError(
            f"cannot agree a pair secret with peer exchange key {shown}: {exc}; "
            "the peer's key bundle is malformed (or a low-order point), restart the run setup"
        ) from exc
    peer = peer_key.public_bytes_raw()
    low, high = sorted((mine, peer))
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=_length_prefixed(_PAIR_DOMAIN, low, high),
    )
    return hkdf.derive(shared)


def participants_digest(participants: Iterable[str]) -> bytes:
    """SHA-256 of the sorted participant names (order-insensitive, domain-separated)."""
    names = sorted(set(participants))
    return hashlib.sha256(
        _length_prefixed(_PARTICIPANTS_DOMAIN, *(n.encode() for n in names))
    ).digest()


def _nonnegative_int(value: object, name: str) -> int:
    return int_at_least(value, 0, name=name, error=SecureAggregationError, fix=f"fix {name}")


def _check_length(length: object) -> int:
    length = _nonnegative_int(length, "length")
    if length > MAX_MASK_LENGTH:
        raise SecureAggregationError(
            f"a mask of {length} elements is longer than one AES-CTR key may cover "
            f"({MAX_MASK_LENGTH}); split the model's update into several secure sums"
        )
    return length


_CHUNK = 1 << 18
_ZEROS = bytes(_CHUNK)  # encrypting zeros yields the raw keystream
# apply_masks works on blocks of 32k elements (256 KiB): a block, its keystream and two
# scratch blocks stay in a core's L2 cache while every mask is added to it.
_BLOCK = 1 << 15
_ZEROS_VIEW = memoryview(bytes(8 * _BLOCK))
_ONES_VIEW = memoryview(b"\xff" * (8 * _BLOCK))  # yields the complemented keystream


def _keystream_words(encryptor: CipherContext, count: int) -> np.ndarray:
    """The next ``count`` little-endian uint64 words of the AES-CTR keystream (writable)."""
    nbytes = 8 * count
    # update_into wants block_size - 1 spare bytes after each output slice.
    buf = np.empty(nbytes + 15, dtype=np.uint8)
    view = buf.data
    # Chunks keep the zero input small and cache-resident instead of allocating nbytes of it.
    for start in range(0, nbytes, _CHUNK):
        size = min(_CHUNK, nbytes - start)
        data = _ZEROS if size == _CHUNK else _ZEROS[:size]
        encryptor.update_into(data, view[start : start + size + 15])
    words = buf[:nbytes].view("<u8")
    return words.astype(np.uint64, copy=False)  # no copy on little-endian hosts


# Counter blocks of one mask: a 96-bit nonce and a 32-bit block counter starting at 2.
_NONCE_BYTES = 12
_FIRST_COUNTER = 2
# The 32-bit counter must not wrap: at most 2^32 - 2 blocks of 16 bytes per mask. Capping the
# vector at 2^32 words (half of that) leaves the other half for rejection-sampling refills.
MAX_MASK_LENGTH = 2**32


def _mask_key(
    secret: bytes, run_id: str, round: int, attempt: int, participants_digest: bytes, q: int
) -> tuple[bytes, bytes]:
    """The AES-256 key and 96-bit nonce of one pair's mask for one (run, round, attempt)."""
    info = _length_prefixed(
        _MASK_DOMAIN,
        run_id.encode(),
        round.to_bytes(8, "big"),
        attempt.to_bytes(8, "big"),
        participants_digest,
        q.to_bytes(8, "big"),
    )
    okm = HKDF(algorithm=hashes.SHA256(), length=32 + _NONCE_BYTES, salt=None, info=info).derive(
        secret
    )
    return okm[:32], okm[32:]


def _keystream(key: bytes, nonce: bytes) -> CipherContext:
    """AES-256-CTR over the counter blocks ``nonce || i`` (i = 2, 3, ... as 32-bit big-endian).

    Computed with OpenSSL's AES-GCM encryptor on zero input: GCM encrypts with exactly this
    counter sequence, and OpenSSL's GCM code uses the CPU's vector AES instructions (VAES)
    where its plain CTR mode does not, which makes the same keystream about twice as fast.
    The authentication tag is never finalised or used: this is counter mode, not AEAD.
    """
    return Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()


def _mask_cipher(
    secret: bytes, run_id: str, round: int, attempt: int, participants_digest: bytes, q: int
) -> CipherContext:
    """The AES-256-CTR keystream of one pair's mask for one (run, round, attempt)."""
    return _keystream(*_mask_key(secret, run_id, round, attempt, participants_digest, q))


def expand_mask(
    secret: bytes,
    *,
    run_id: str,
    round: int,
    attempt: int,
    participants_digest: bytes,
    length: int,
    q: int = Q,
) -> np.ndarray:
    """A uniform vector in [0, q)^length, deterministic in its inputs.

    HKDF-SHA256 turns the pair secret and the (run, round, attempt, participants, q) context
    into an AES-256 key and 96-bit nonce; the AES-256-CTR keystream (counter blocks
    ``nonce || i``, see :func:`_keystream`) is cut into uint64 words, masked to q's bit
    length and rejection-sampled into [0, q), so the result is exactly uniform (for
    q = 2^61 - 1 a word is rejected with probability 2^-61).
    """
    q = check_prime(q)
    if not isinstance(run_id, str) or not run_id:
        raise SecureAggregationError(f"run_id={run_id!r} must be a non-empty string")
    round = _nonnegative_int(round, "round")
    attempt = _nonnegative_int(attempt, "attempt")
    length = _check_length(length)
    if not isinstance(secret, bytes) or len(secret) < 16:
        raise SecureAggregationError("pair secret must be at least 16 bytes; use pair_secret()")
    if not isinstance(participants_digest, bytes) or len(participants_digest) != 32:
        raise SecureAggregationError(
            "participants_digest must be the 32-byte participants_digest(participants)"
        )
    encryptor = _mask_cipher(secret, run_id, round, attempt, participants_digest, q)
    low_bits = np.uint64((1 << q.bit_length()) - 1)
    bound = np.uint64(q)
    out = _keystream_words(encryptor, length)
    np.bitwise_and(out, low_bits, out=out)
    rejected = np.flatnonzero(out >= bound)
    # Refill rejected slots, in order, from the continuing keystream: both pods of a pair run
    # the same deterministic loop, so they still derive identical masks.
    while rejected.size:
        fresh = _keystream_words(encryptor, rejected.size)
        np.bitwise_and(fresh, low_bits, out=fresh)
        out[rejected] = fresh
        rejected = rejected[fresh >= bound]
    return out


def apply_masks(
    values: np.ndarray,
    masks: Sequence[tuple[bytes, bool]],
    *,
    run_id: str,
    round: int,
    attempt: int,
    participants_digest: bytes,
    q: int = Q,
) -> np.ndarray:
    """In place ``values + sum(added masks) - sum(subtracted masks) mod q``; returns ``values``.

    ``masks`` lists ``(pair secret, add?)``. The result equals adding and subtracting
    :func:`expand_mask` vectors one by one. For q = 2^61 - 1 every mask's keystream is
    streamed through one cache-sized block of ``values`` at a time, with lazy reduction, so
    each mask costs its AES-CTR keystream plus three passes over L2-resident memory (bit
    mask, range check, addition), whatever its sign, and nothing mask-sized is ever
    allocated; other primes take the plain path.
    """
    flat = values.reshape(-1)
    n = _check_length(flat.size)
    expand = functools.partial(
        expand_mask,
        run_id=run_id,
        round=round,
        attempt=attempt,
        participants_digest=participants_digest,
        length=n,
        q=q,
    )
    if q != Q or n == 0:
        for secret, plus in masks:
            (iadd if plus else isub)(flat, expand(secret), q)
        return values
    ciphers = [_mask_cipher(s, run_id, round, attempt, participants_digest, q) for s, _ in masks]
    block = min(_BLOCK, n)
    keystream = np.empty(8 * block + 15, dtype=np.uint8)  # update_into wants 15 spare bytes
    out_view = keystream.data
    words_block = keystream[: 8 * block].view("<u8").view(np.uint64)
    tmp_block = np.empty(block, dtype=np.uint64)
    exact: dict[int, np.ndarray] = {}  # masks with a rejected word, expanded the exact way
    for start in range(0, n, block):
        acc = flat[start : start + block]
        size = acc.size
        pending = 0
        for i, (cipher, (secret, plus)) in enumerate(zip(ciphers, masks, strict=True)):
            if i in exact:
                mask = exact[i][start : start + size]
            else:
                # A subtracted mask m is added as q - m: encrypting all-ones input gives the
                # complemented keystream ~w, and (~w) & q = q - (w & q), so either sign costs
                # the same two passes and one accumulator serves both.
                data = (_ZEROS_VIEW if plus else _ONES_VIEW)[: 8 * size]
                cipher.update_into(data, out_view[: 8 * size + 15])
                mask = words_block[:size]
                np.bitwise_and(mask, _M61, out=mask)
                # A rejected word (w & q == q, probability 2^-61) shows as q, or as 0 negated.
                if (mask.max() >= _M61) if plus else (mask.min() == 0):
                    # expand_mask refills it from the keystream after the whole vector: take
                    # this mask from there on (its streaming cipher is not used again).
                    full = expand(secret)
                    exact[i] = full if plus else isub(np.zeros_like(full), full, q)
                    mask = exact[i][start : start + size]
            pending = lazy_add61(acc, mask, pending, tmp_block[:size])
        reduce61(acc, tmp_block[:size])
    return values
