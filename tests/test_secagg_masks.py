"""Pair secrets and mask expansion: symmetric, deterministic, context-bound, in range."""

from __future__ import annotations

import numpy as np
import pytest

from fedplug._errors import SecureAggregationError
from fedplug.secagg import Q, expand_mask, new_exchange_key, pair_secret, participants_digest
from fedplug.secagg._keys import exchange_public_bytes
from fedplug.secagg._masks import apply_masks

SECRET = bytes(range(32))
DIGEST = participants_digest(["a", "b", "c"])


def _mask(**overrides: object) -> np.ndarray:
    args: dict[str, object] = {
        "run_id": "run-1",
        "round": 3,
        "attempt": 0,
        "participants_digest": DIGEST,
        "length": 1000,
        "q": Q,
    }
    args.update(overrides)
    secret = args.pop("secret", SECRET)
    return expand_mask(secret, **args)  # type: ignore[arg-type]


def test_pair_secret_is_symmetric_and_pair_specific() -> None:
    a, b, c = new_exchange_key(), new_exchange_key(), new_exchange_key()
    pub = {k: exchange_public_bytes(v) for k, v in {"a": a, "b": b, "c": c}.items()}
    ab = pair_secret(a, pub["b"])
    assert ab == pair_secret(b, pub["a"]) == pair_secret(b, a.public_key())
    assert len(ab) == 32
    assert ab != pair_secret(a, pub["c"]) != pair_secret(b, pub["c"])


@pytest.mark.parametrize("peer", [bytes(32), b"\x01" + bytes(31), bytes(31)])
def test_low_order_or_malformed_peer_keys_are_refused(peer: bytes) -> None:
    with pytest.raises(SecureAggregationError, match=f"exchange key {peer.hex()}.*restart"):
        pair_secret(new_exchange_key(), peer)


def test_mask_is_deterministic_and_prefix_consistent() -> None:
    first = _mask(length=5000)
    assert np.array_equal(first, _mask(length=5000))
    assert np.array_equal(first[:37], _mask(length=37))
    assert first.dtype == np.uint64 and first.flags.writeable
    assert _mask(length=0).shape == (0,)


@pytest.mark.parametrize(
    "change",
    [
        {"secret": bytes(32)},
        {"run_id": "run-2"},
        {"round": 4},
        {"attempt": 1},
        {"participants_digest": participants_digest(["a", "b"])},
        {"q": 2**62 - 57},
    ],
)
def test_every_context_field_changes_the_mask(change: dict[str, object]) -> None:
    base, other = _mask(), _mask(**change)
    # Independent uniform vectors: essentially no element coincides.
    assert np.count_nonzero(base == other) == 0


def test_participants_digest_is_order_insensitive_and_set_specific() -> None:
    assert participants_digest(["b", "a", "c"]) == DIGEST
    assert participants_digest(["a", "b"]) != DIGEST
    # Length prefixes: joining names differently gives a different digest.
    assert participants_digest(["ab", "c"]) != participants_digest(["a", "bc"])


@pytest.mark.parametrize("q", [Q, 2**62 - 57, 2**61 + 15, 65537, 11, 3])
def test_mask_values_lie_in_the_field_and_cover_it(q: int) -> None:
    mask = _mask(q=q, length=60_000)
    assert int(mask.max()) < q
    # Mean of a uniform variable on [0, q): q/2 -1/2, with standard error q / sqrt(12 n).
    mean = float(mask.astype(np.float64).mean())
    assert abs(mean - (q - 1) / 2) < 6 * q / np.sqrt(12 * mask.size)


def test_rejection_sampling_keeps_small_fields_uniform() -> None:
    # For q = 11 every 4-bit word >= 11 is rejected (5/16 of them); counts must stay flat.
    counts = np.bincount(_mask(q=11, length=110_000), minlength=11)
    expected = 10_000
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 10 + 6 * np.sqrt(20)  # df = 10, six standard deviations


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"secret": b"short"}, "at least 16 bytes"),
        ({"participants_digest": b"x"}, "32-byte participants_digest"),
        ({"round": -1}, "round must be a non-negative integer, got -1"),
        ({"attempt": 1.0}, "attempt must be a non-negative integer, got 1.0"),
        ({"length": -3}, "length must be a non-negative integer, got -3"),
        ({"run_id": ""}, "run_id='' must be a non-empty string"),
        ({"q": 15}, "prime_q=15 is not an odd prime"),
    ],
)
def test_bad_mask_arguments(change: dict[str, object], message: str) -> None:
    with pytest.raises(SecureAggregationError, match=message):
        _mask(**change)


def _reference(values: np.ndarray, masks: list[tuple[bytes, bool]], length: int) -> np.ndarray:
    """values + added masks - subtracted masks, one expand_mask at a time, in Python ints."""
    total = values.astype(object)
    for secret, plus in masks:
        m = _mask(secret=secret, length=length).astype(object)
        total = (total + m) % Q if plus else (total - m) % Q
    return np.array(total, dtype=np.uint64)


@pytest.mark.parametrize("length", [1, 1000, (1 << 15) + 17])
def test_apply_masks_equals_adding_and_subtracting_each_mask(length: int) -> None:
    # 9 added and 8 subtracted masks force lazy folds on both accumulators; the last length
    # spans two blocks and a ragged tail.
    rng = np.random.default_rng(length)
    values = rng.integers(0, Q, size=length, dtype=np.uint64)
    masks = [(bytes([i + 1]) * 32, i % 2 == 0) for i in range(17)]
    got = apply_masks(
        values.copy(), masks, run_id="run-1", round=3, attempt=0, participants_digest=DIGEST
    )
    np.testing.assert_array_equal(got, _reference(values, masks, length))


class _OnesAt:
    """A real AES-CTR keystream whose word at one absolute position is forced to all ones."""

    def __init__(self, inner: object, position: int) -> None:
        self.inner, self.position, self.offset = inner, position, 0

    def update_into(self, data: bytes, out: memoryview) -> int:
        written = self.inner.update_into(data, out)  # type: ignore[attr-defined]
        first = self.position * 8 - self.offset
        if 0 <= first < written:  # keystream all ones: output = input XOR ones
            out[first : first + 8] = bytes(b ^ 0xFF for b in bytes(data[first : first + 8]))
        self.offset += written
        return written


def test_apply_masks_matches_expand_mask_when_a_word_is_rejected(monkeypatch) -> None:
    # An all-ones word is q = 2^61 - 1 after the bit mask: expand_mask rejects it and refills
    # the slot from the keystream after the vector; the blocked path must give the same mask.
    from fedplug.secagg import _masks

    real = _masks._mask_cipher
    position = (1 << 15) + 5  # inside the second block
    monkeypatch.setattr(_masks, "_mask_cipher", lambda *args: _OnesAt(real(*args), position))
    length = (1 << 15) * 2 + 3
    mask = _mask(length=length)
    assert mask[position] != Q and int(mask.max()) < Q  # the slot was refilled in range
    values = np.zeros(length, dtype=np.uint64)
    got = apply_masks(
        values,
        [(SECRET, True), (bytes(32), False)],
        run_id="run-1",
        round=3,
        attempt=0,
        participants_digest=DIGEST,
    )
    expected = (mask.astype(object) - _mask(secret=bytes(32), length=length).astype(object)) % Q
    np.testing.assert_array_equal(got, expected.astype(np.uint64))


def test_mask_keystream_is_aes256_ctr_from_counter_two() -> None:
    # The keystream comes from OpenSSL's GCM encryptor (vector AES); it must be exactly
    # AES-256-CTR over the counter blocks nonce || 2, 3, ... so the PRG is plain counter mode.
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    from fedplug.secagg._masks import _keystream, _mask_key

    key, nonce = _mask_key(SECRET, "run-1", 3, 0, DIGEST, Q)
    assert len(key) == 32 and len(nonce) == 12
    zeros = bytes(16 * 5000 + 8)
    ctr = Cipher(algorithms.AES(key), modes.CTR(nonce + (2).to_bytes(4, "big"))).encryptor()
    assert _keystream(key, nonce).update(zeros) == ctr.update(zeros)
    first = np.frombuffer(
        Cipher(algorithms.AES(key), modes.CTR(nonce + (2).to_bytes(4, "big")))
        .encryptor()
        .update(bytes(8 * 10)),
        dtype="<u8",
    )
    np.testing.assert_array_equal(_mask(length=10), first & np.uint64(Q))


def test_masks_longer_than_one_key_may_cover_are_refused() -> None:
    from fedplug.secagg._masks import MAX_MASK_LENGTH

    with pytest.raises(SecureAggregationError, match="longer than one AES-CTR key may cover"):
        _mask(length=MAX_MASK_LENGTH + 1)
