"""Statistical checks: masked uploads look uniform over the field and independent of the update.

Thresholds are six standard deviations (normal approximation of the chi-square and of the
mean), so a correct implementation fails with probability around 1e-9 per check, while a
broken one (scalar masks, reused masks, unreduced values) fails by orders of magnitude.
"""

from __future__ import annotations

import numpy as np
import pytest

from fedplug.secagg import (
    FixedPointCodec,
    IdentityKey,
    PodProtocol,
    Q,
    expand_mask,
    participants_digest,
    sub,
)

N = 200_000
BUCKET_SHIFT = 53  # the top 8 of 61 bits: 256 buckets of 2^53 (the last one is 1 short)
BUCKETS = 256


def chi_square_top_bits(values: np.ndarray) -> float:
    counts = np.bincount((values >> np.uint64(BUCKET_SHIFT)).astype(np.int64), minlength=BUCKETS)
    assert counts.size == BUCKETS
    expected = values.size / BUCKETS
    return float(((counts - expected) ** 2 / expected).sum())


def assert_uniform(values: np.ndarray) -> None:
    df = BUCKETS - 1
    assert chi_square_top_bits(values) < df + 6 * np.sqrt(2 * df)
    mean = float(values.astype(np.float64).mean())
    assert abs(mean - (Q - 1) / 2) < 6 * Q / np.sqrt(12 * values.size)
    assert int(values.max()) < Q


def pods_with_keys(names: list[str]) -> dict[str, PodProtocol]:
    pods = {
        n: PodProtocol(n, IdentityKey.generate(), approved_pods=None, pinned_keys=None, min_pods=2)
        for n in names
    }
    roster = [pod.start_run("stats") for pod in pods.values()]
    for pod in pods.values():
        pod.accept_roster("stats", roster)
    return pods


def test_expanded_mask_is_uniform_with_a_fixed_secret() -> None:
    mask = expand_mask(
        bytes(range(100, 132)),
        run_id="stats",
        round=0,
        attempt=0,
        participants_digest=participants_digest(["a", "b"]),
        length=N,
    )
    assert_uniform(mask)
    # Neighbouring elements are independent: a scalar mask would make differences constant.
    assert_uniform(sub(mask[1:], mask[:-1]))


@pytest.fixture(scope="module")
def uploads() -> dict[str, np.ndarray]:
    """Masked uploads of three pods; "a" and "b" hold the SAME update (all at +clip)."""
    codec = FixedPointCodec(clip=1.0, max_weight=100, n_pods=3)
    same, _ = codec.encode_weighted(np.ones(N), 100)
    other, _ = codec.encode_weighted(np.linspace(-1, 1, N), 7)
    pods = pods_with_keys(["a", "b", "c"])
    encoded = {"a": same, "b": same, "c": other}
    return {
        n: pods[n].mask(encoded[n], round=0, attempt=0, participants=["a", "b", "c"])
        for n in encoded
    }


@pytest.mark.parametrize("pod", ["a", "b", "c"])
def test_each_masked_upload_is_uniform_over_the_field(
    uploads: dict[str, np.ndarray], pod: str
) -> None:
    assert_uniform(uploads[pod])
    assert_uniform(sub(uploads[pod][1:], uploads[pod][:-1]))


def test_same_update_gives_unrelated_uploads(uploads: dict[str, np.ndarray]) -> None:
    a, b = uploads["a"], uploads["b"]
    assert np.count_nonzero(a == b) <= 1
    r = np.corrcoef(a.astype(np.float64), b.astype(np.float64))[0, 1]
    assert abs(r) < 6 / np.sqrt(N)
    assert_uniform(sub(a, b))
