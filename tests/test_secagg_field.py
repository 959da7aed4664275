"""Field arithmetic modulo q against Python big-int arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from fedplug._errors import SecureAggregationError
from fedplug.secagg import Q, add, as_field, check_prime, neg, sub, sum_vectors
from fedplug.secagg._field import FieldSum, pack, packed_size, padded_size, sum_packed, unpack

PRIMES = [Q, 2**62 - 57, 2**61 + 15, 65537, 3]


def _random_elements(rng: np.random.Generator, q: int, n: int) -> np.ndarray:
    edges = [0, 1, 2, q - 1, q - 2, q // 2, (q + 1) // 2]
    edges = [e % q for e in edges]
    body = rng.integers(0, q, size=n, dtype=np.uint64)
    return np.concatenate([np.array(edges, dtype=np.uint64), body])


@pytest.mark.parametrize("q", PRIMES)
def test_add_sub_neg_match_big_int_arithmetic(q: int) -> None:
    rng = np.random.default_rng(q % 1000)
    for _ in range(5):
        a = _random_elements(rng, q, 500)
        b = rng.permutation(_random_elements(rng, q, 500))
        ai, bi = [int(v) for v in a], [int(v) for v in b]
        assert add(a, b, q).tolist() == [(x + y) % q for x, y in zip(ai, bi, strict=True)]
        assert sub(a, b, q).tolist() == [(x - y) % q for x, y in zip(ai, bi, strict=True)]
        assert neg(a, q).tolist() == [(-x) % q for x in ai]
        assert add(a, neg(a, q), q).tolist() == [0] * len(ai)


def test_edge_values_exhaustively() -> None:
    edges = np.array([0, 1, 2, Q // 2, Q // 2 + 1, Q - 2, Q - 1], dtype=np.uint64)
    a, b = np.meshgrid(edges, edges)
    a, b = a.ravel(), b.ravel()
    assert add(a, b).tolist() == [(int(x) + int(y)) % Q for x, y in zip(a, b, strict=True)]
    assert sub(a, b).tolist() == [(int(x) - int(y)) % Q for x, y in zip(a, b, strict=True)]


def test_inputs_are_not_mutated() -> None:
    a = np.array([Q - 1, 5], dtype=np.uint64)
    b = np.array([Q - 1, 7], dtype=np.uint64)
    add(a, b)
    sub(a, b)
    neg(a)
    assert a.tolist() == [Q - 1, 5] and b.tolist() == [Q - 1, 7]


@pytest.mark.parametrize("q", [Q, 2**62 - 57, 11])
def test_sum_vectors_matches_big_int_sum(q: int) -> None:
    rng = np.random.default_rng(7)
    vectors = [_random_elements(rng, q, 300) for _ in range(40)]
    vectors.append(np.full(307, q - 1, dtype=np.uint64))
    expected = [sum(int(v[i]) for v in vectors) % q for i in range(307)]
    assert sum_vectors(vectors, q).tolist() == expected
    # Two-dimensional arrays keep their shape.
    out = sum_vectors([v.reshape(307, 1) for v in vectors], q)
    assert out.shape == (307, 1)


def test_sum_vectors_rejects_mismatched_or_empty_input() -> None:
    with pytest.raises(SecureAggregationError, match="different shapes"):
        sum_vectors([np.zeros(3, np.uint64), np.zeros(4, np.uint64)])
    with pytest.raises(SecureAggregationError, match="at least one vector"):
        sum_vectors([])


def test_as_field_rejects_out_of_range_and_float_values() -> None:
    with pytest.raises(SecureAggregationError, match=r"1 element\(s\) outside the field"):
        as_field(np.array([0, Q], dtype=np.uint64))
    with pytest.raises(SecureAggregationError, match="outside the field"):
        as_field(np.array([-1, 2], dtype=np.int64))
    with pytest.raises(SecureAggregationError, match="dtype float64.*FixedPointCodec"):
        as_field(np.array([0.5]))
    assert as_field(np.array([1, 2], dtype=np.int64)).dtype == np.uint64


@pytest.mark.parametrize("q", PRIMES)
def test_check_prime_accepts_odd_primes_below_2_62(q: int) -> None:
    assert check_prime(q) == q
    assert check_prime(np.int64(q)) == q


@pytest.mark.parametrize("bad", [2, 1, 0, -7, 9, 2**61 + 1, 2**62 - 1, 2**62, 2**62 + 135, 561])
def test_check_prime_rejects_non_primes_and_out_of_range(bad: int) -> None:
    with pytest.raises(SecureAggregationError, match=rf"prime_q={bad} is not an odd prime"):
        check_prime(bad)


@pytest.mark.parametrize("bad", [2.0**61, "2305843009213693951", True, None])
def test_check_prime_rejects_non_integers(bad: object) -> None:
    with pytest.raises(SecureAggregationError, match="is not an integer; set prime_q"):
        check_prime(bad)


@pytest.mark.parametrize("q", [Q, 2**31 - 1, 1_000_003])
@pytest.mark.parametrize("length", [1, 21, 22, 23, 1000, 44_001])
def test_pack_round_trips_and_saves_the_spare_bits(q: int, length: int) -> None:
    rng = np.random.default_rng(length)
    values = rng.integers(0, q, size=length, dtype=np.uint64)
    values[0] = q - 1  # every bit an element may use
    original = values.copy()
    words = pack(values, q)
    assert words.size == packed_size(length, q) < length + 22
    np.testing.assert_array_equal(values, original)  # the input is left alone
    np.testing.assert_array_equal(unpack(words, length, q), original)
    buffer = np.full(padded_size(length, q), 7, dtype=np.uint64)  # a reused, dirty buffer
    np.testing.assert_array_equal(unpack(words, length, q, out=buffer), original)


def test_pack_in_place_writes_into_the_padded_vector() -> None:
    rng = np.random.default_rng(3)
    length = 1001
    padded = np.zeros(padded_size(length), dtype=np.uint64)
    padded[:length] = rng.integers(0, Q, size=length, dtype=np.uint64)
    expected = pack(padded[:length])
    words = pack(padded, in_place=True)
    assert np.shares_memory(words, padded)
    np.testing.assert_array_equal(words, expected)
    np.testing.assert_array_equal(unpack(words, length)[:length], unpack(expected, length))


def test_field_sum_streams_many_vectors_with_lazy_folds() -> None:
    rng = np.random.default_rng(5)
    vectors = [rng.integers(Q - 50, Q, size=17, dtype=np.uint64) for _ in range(30)]
    total = FieldSum()
    for v in vectors:
        total.add(v)
    expected = sum(v.astype(object) for v in vectors) % Q
    np.testing.assert_array_equal(total.result(), expected.astype(np.uint64))
    with pytest.raises(SecureAggregationError, match="has no vectors"):
        FieldSum().result()


@pytest.mark.parametrize("q", [Q, 2**31 - 1])
def test_sum_packed_equals_the_sum_of_unpacked_vectors(q: int) -> None:
    # Nine uploads force a lazy fold; 80,000 elements span three blocks and the spread block.
    rng = np.random.default_rng(11)
    length = 80_000
    vectors = [rng.integers(q - 1000, q, size=length, dtype=np.uint64) for _ in range(9)]
    expected = sum(v.astype(object) for v in vectors) % q
    uploads = [(f"upload {i}", pack(v, q)) for i, v in enumerate(vectors)]
    np.testing.assert_array_equal(sum_packed(uploads, length, q), expected.astype(np.uint64))


def test_sum_packed_names_the_bad_upload() -> None:
    good = pack(np.arange(100, dtype=np.uint64))
    spread_bad = good.copy()
    spread_bad[-1] |= np.uint64(0b111) << np.uint64(61)  # a spread element above 2^61
    for bad in (spread_bad, good.copy()):
        if bad is not spread_bad:
            bad[3] |= np.uint64(Q)  # a main element equal to q
        with pytest.raises(SecureAggregationError, match="upload b has .* outside the field"):
            sum_packed([("upload a", good), ("upload b", bad)], 100)
    with pytest.raises(SecureAggregationError, match="upload b has dtype float64"):
        sum_packed([("upload a", good), ("upload b", good.astype(np.float64))], 100)
