"""Fixed-point encoding: exact sums, clipping counted (never wrapped), clear errors."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from fedplug._errors import SecureAggregationError
from fedplug.secagg import FixedPointCodec, Q, sum_vectors


def _signed(value: int, q: int) -> int:
    """Python big-int reading of one field element."""
    return value - q if value > (q - 1) // 2 else value


def test_scale_is_the_exact_floor_of_the_bound() -> None:
    codec = FixedPointCodec(clip=3.5, max_weight=1000, n_pods=7)
    assert codec.scale == math.floor(Fraction(Q - 1, 2) / (7 * 1000 * Fraction(3.5)))
    assert codec.vmax == ((Q - 1) // 2) // 7000
    assert codec.n_pods * codec.max_weight * codec.vmax <= (Q - 1) // 2
    assert "scale=" in repr(codec)


def test_round_trip_single_pod() -> None:
    codec = FixedPointCodec(clip=2.0, max_weight=1, n_pods=1)
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, size=(10, 3))
    x[0, :] = [0.0, -0.0, 2.0]
    x[1, :] = [-2.0, 1e-300, -1e-300]
    enc, clipped = codec.encode_weighted(x, 1)
    assert enc.dtype == np.uint64 and enc.shape == x.shape and clipped == 0
    assert (enc < Q).all()
    decoded = codec.decode_sum(enc)
    assert decoded.shape == x.shape
    np.testing.assert_allclose(decoded, x, rtol=0, atol=1 / codec.scale)
    assert decoded[1, 0] < 0 and decoded[0, 2] > 0


def test_negative_values_map_to_q_minus_abs() -> None:
    codec = FixedPointCodec(clip=1.0, max_weight=10, n_pods=2)
    enc, _ = codec.encode_weighted(np.array([-1.0, 1.0, 0.0]), 3)
    v = 3 * min(round(codec.scale), codec.vmax)
    assert enc.tolist() == [Q - v, v, 0]
    assert codec.decode_int(enc).tolist() == [-v, v, 0]


def test_clipping_is_counted_not_wrapped() -> None:
    codec = FixedPointCodec(clip=1.5, max_weight=4, n_pods=3)
    x = np.array([1e30, -1e30, 1.6, -1.50001, 1.5, -1.5, 0.25])
    enc, clipped = codec.encode_weighted(x, 4)
    assert clipped == 4
    decoded = codec.decode_sum(enc)
    np.testing.assert_allclose(decoded, 4 * np.clip(x, -1.5, 1.5), atol=4 / codec.scale)
    # Three pods, all at the bounds with the largest weight: the sum still has the right sign.
    total = codec.decode_sum(sum_vectors([enc, enc, enc]))
    np.testing.assert_allclose(total, 12 * np.clip(x, -1.5, 1.5), atol=12 / codec.scale)


def test_rounding_past_vmax_is_clamped_so_the_sum_cannot_wrap() -> None:
    # q = 23: (q-1)/2 = 11, n*W = 2, vmax = 5; clip * scale = 0.125 * 44 = 5.5 rounds to 6.
    codec = FixedPointCodec(clip=0.125, max_weight=1, n_pods=2, q=23)
    assert codec.scale == 44 and codec.vmax == 5
    up, _ = codec.encode_weighted(np.array([0.125]), 1)
    down, _ = codec.encode_weighted(np.array([-0.125]), 1)
    assert codec.decode_int(sum_vectors([up, up], 23)).tolist() == [10]
    assert codec.decode_int(sum_vectors([down, down], 23)).tolist() == [-10]


def test_thousand_pods_at_the_clip_bounds_decode_exactly() -> None:
    n_pods, max_weight, clip = 1000, 10**6, 4.0
    codec = FixedPointCodec(clip=clip, max_weight=max_weight, n_pods=n_pods)
    rng = np.random.default_rng(2024)
    weights = rng.integers(0, max_weight + 1, size=n_pods)
    weights[:3] = [max_weight, 0, 1]
    length = 24
    encoded, values = [], []
    for pod in range(n_pods):
        if pod % 3 == 0:
            x = np.full(length, clip)
        elif pod % 3 == 1:
            x = np.full(length, -clip)
        else:
            x = rng.choice([clip, -clip], size=length) * rng.choice([1.0, 0.5, 1e-9], size=length)
        x[0] = clip  # column 0: every pod at +clip (the worst case for wrapping)
        x[1] = -clip  # column 1: every pod at -clip
        enc, clipped = codec.encode_weighted(x, int(weights[pod]))
        assert clipped == 0
        encoded.append(enc)
        values.append(x)
    total = sum_vectors(encoded)
    exact = [sum(_signed(int(e[i]), Q) for e in encoded) for i in range(length)]
    assert codec.decode_int(total).tolist() == exact
    # Each pod's integer is weight * round(x * scale): check against Python ints too.
    for enc, x, w in zip(encoded[:10], values[:10], weights[:10], strict=True):
        assert [_signed(int(e), Q) for e in enc] == [int(w) * round(v * codec.scale) for v in x]
    assert exact[0] > 0 and exact[1] < 0 and abs(exact[0]) <= (Q - 1) // 2
    plain = sum(int(w) * x for w, x in zip(weights, values, strict=True))
    tolerance = (int(weights.sum()) * 0.5 + 1) / codec.scale
    np.testing.assert_allclose(codec.decode_sum(total), plain, rtol=0, atol=tolerance)


def test_worst_case_sum_stays_within_half_the_field() -> None:
    codec = FixedPointCodec(clip=1.0, max_weight=10**6, n_pods=1000)
    top, _ = codec.encode_weighted(np.array([1.0, -1.0]), 10**6)
    total = sum_vectors([top] * 1000)
    assert codec.decode_int(total).tolist() == [
        1000 * 10**6 * codec.vmax,
        -1000 * 10**6 * codec.vmax,
    ]


def test_counts_encode_and_sum() -> None:
    codec = FixedPointCodec(clip=1.0, max_weight=500, n_pods=4)
    counts = [500, 0, 17, 250]
    encoded = np.array([codec.encode_count(c) for c in counts], dtype=np.uint64)
    assert codec.decode_int(sum_vectors(list(encoded.reshape(4, 1)))).tolist() == [767]
    assert codec.decode_int(np.uint64(Q - 3)) == -3


@pytest.mark.parametrize("weight", [-1, 11, 2.5, True, "3", None])
def test_bad_weight_names_weight_and_max_weight(weight: object) -> None:
    codec = FixedPointCodec(clip=1.0, max_weight=10, n_pods=2)
    with pytest.raises(SecureAggregationError, match=r"weight .* \[0, max_weight=10\]"):
        codec.encode_weighted(np.zeros(2), weight)  # type: ignore[arg-type]
    with pytest.raises(SecureAggregationError, match=r"count .* \[0, max_weight=10\]"):
        codec.encode_count(weight)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_an_error(bad: float) -> None:
    codec = FixedPointCodec(clip=1.0, max_weight=10, n_pods=2)
    with pytest.raises(SecureAggregationError, match=r"1 non-finite element\(s\)"):
        codec.encode_weighted(np.array([0.0, bad, 0.5]), 1)


def test_scale_below_one_says_what_to_lower() -> None:
    with pytest.raises(SecureAggregationError, match=r"scale would be 0 < 1.*lower clip"):
        FixedPointCodec(clip=1e12, max_weight=10**6, n_pods=1000)


def test_counts_that_could_wrap_are_refused() -> None:
    with pytest.raises(SecureAggregationError, match="lower max_weight"):
        FixedPointCodec(clip=1e-9, max_weight=2**50, n_pods=2**20)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"clip": 0.0}, "clip=0.0 must be a positive finite number"),
        ({"clip": float("nan")}, "clip=nan must be"),
        ({"max_weight": 0}, "max_weight must be a positive integer, got 0"),
        ({"n_pods": 1.5}, "n_pods must be a positive integer, got 1.5"),
        ({"q": 2**61 + 1}, "prime_q=2305843009213693953 is not an odd prime"),
    ],
)
def test_bad_codec_settings(kwargs: dict[str, object], message: str) -> None:
    settings = {"clip": 1.0, "max_weight": 10, "n_pods": 2, **kwargs}
    with pytest.raises(SecureAggregationError, match=message):
        FixedPointCodec(**settings)  # type: ignore[arg-type]


def test_other_prime() -> None:
    q = 2**62 - 57
    codec = FixedPointCodec(clip=1.0, max_weight=100, n_pods=5, q=q)
    x = np.array([-1.0, -0.3, 0.0, 0.7, 1.0])
    enc, _ = codec.encode_weighted(x, 100)
    assert (enc < q).all()
    np.testing.assert_allclose(codec.decode_sum(enc), 100 * x, atol=100 / codec.scale)


@pytest.mark.parametrize(
    ("clip", "max_weight", "n_pods"),
    [(2.0, 1, 1), (1e-6, 1, 1), (3.0, 7, 2), (8.0, 10**4, 20), (0.37, 10**6, 1000)],
)
def test_each_element_is_within_one_unit_of_the_exact_product(
    clip: float, max_weight: int, n_pods: int
) -> None:
    codec = FixedPointCodec(clip=clip, max_weight=max_weight, n_pods=n_pods)
    assert float(codec.scale) == codec.scale and clip * codec.scale <= 2**52
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.uniform(-clip, clip, 300), [clip, -clip, 0.0, clip / 3]])
    for weight in (1, max_weight):
        enc, _ = codec.encode_weighted(x, weight)
        for e, v in zip(enc.tolist(), x.tolist(), strict=True):
            exact = weight * Fraction(v) * codec.scale
            assert abs(_signed(e, Q) - exact) <= weight


@pytest.mark.parametrize("clip_some", [False, True])
def test_blockwise_and_in_place_encoding_match_elementwise_reference(clip_some: bool) -> None:
    # Three blocks and a ragged tail; the reference is exact integer arithmetic per element.
    codec = FixedPointCodec(clip=2.0, max_weight=1000, n_pods=5)
    rng = np.random.default_rng(7)
    x = rng.uniform(-3.0, 3.0, size=3 * (1 << 15) + 11) * (1.0 if clip_some else 0.6)
    expected_clipped = int(np.count_nonzero(np.abs(x) > 2.0))
    assert (expected_clipped > 0) == clip_some
    ints = [int(np.rint(float(np.clip(v, -2.0, 2.0)) * codec.scale)) * 37 for v in x]
    reference = np.array([i % Q for i in ints], dtype=np.uint64)
    encoded, clipped = codec.encode_weighted(x, 37)
    assert clipped == expected_clipped
    np.testing.assert_array_equal(encoded, reference)
    buffer = x.copy()  # encode into the update's own memory
    in_place, _ = codec.encode_weighted(buffer, 37, out=buffer.view(np.uint64))
    assert np.shares_memory(in_place, buffer)
    np.testing.assert_array_equal(in_place, reference)


def test_encode_out_must_fit() -> None:
    codec = FixedPointCodec(clip=1.0, max_weight=10, n_pods=2)
    with pytest.raises(SecureAggregationError, match="out must be a contiguous uint64 array"):
        codec.encode_weighted(np.zeros(4), 1, out=np.zeros(3, dtype=np.uint64))


def test_decode_mean_is_the_decoded_sum_over_the_count() -> None:
    codec = FixedPointCodec(clip=2.0, max_weight=1000, n_pods=3)
    rng = np.random.default_rng(9)
    x = rng.uniform(-2.0, 2.0, size=2 * (1 << 15) + 5)  # both signs, three blocks
    encoded, _ = codec.encode_weighted(x, 700)
    total = sum_vectors([encoded, encoded, encoded])
    signed = np.array([int(v) - Q if int(v) > (Q - 1) // 2 else int(v) for v in total])
    expected = signed.astype(np.float64) / codec.scale / 2100
    np.testing.assert_array_equal(codec.decode_mean(total, 2100), expected)
    np.testing.assert_allclose(codec.decode_mean(total, 2100), x, atol=2 / codec.scale)
