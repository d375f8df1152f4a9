"""clusterpool.slots: key -> slot hashing, key encoding, slot ranges."""

from __future__ import annotations

import binascii
import random

import pytest
from redis.crc import key_slot as redis_key_slot

from clusterpool.slots import SLOT_COUNT, crcmod_key_slot, encode_key, expand, key_slot, ranges, slot_of

SPECIAL_KEYS = [
    b"",
    b"foo",
    b"{user1000}.following",
    b"{user1000}.followers",
    b"foo{}{bar}",
    b"foo{{bar}}zap",
    b"foo{bar}{zap}",
    b"{}",
    b"{",
    b"}",
    b"}{",
    b"a{}b{c}",
    b"{a}{b}",
    b"{{a}}",
    b"{a",
    b"a}",
    b"x{y",
    b"{}a",
    "clé-ünïcødé-键".encode(),
    "{ключ}:1".encode(),
    b"\x00\xff\x10\x80{\x00}",
    bytes(range(256)),
]


@pytest.mark.parametrize("key", SPECIAL_KEYS, ids=repr)
def test_key_slot_matches_redis_py_for_special_keys(key):
    assert key_slot(key) == redis_key_slot(key)


def test_key_slot_matches_redis_py_for_random_binary_keys():
    rng = random.Random(1234)
    alphabet = b"{}ab\x00\xff"
    for _ in range(3000):
        n = rng.randrange(0, 24)
        if rng.random() < 0.5:
            key = bytes(rng.choice(alphabet) for _ in range(n))
        else:
            key = rng.randbytes(n)
        assert key_slot(key) == redis_key_slot(key), key


@pytest.mark.parametrize("key", SPECIAL_KEYS, ids=repr)
def test_key_slot_matches_crcmod_for_special_keys(key):
    assert key_slot(key) == crcmod_key_slot(key)


def test_key_slot_matches_crcmod_for_random_keys():
    rnd = random.Random(17)
    keys = [bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 40))) for _ in range(3000)]
    keys += [b"{" + k + b"}x" for k in keys[:500]]
    assert [key_slot(k) for k in keys] == [crcmod_key_slot(k) for k in keys]


def test_key_slot_accepts_bytearray():
    assert key_slot(bytearray(b"a{tag}b")) == key_slot(b"tag")


def test_key_slot_known_values():
    assert key_slot(b"foo") == 12182
    assert key_slot(b"123456789") == 12739


def test_key_slot_is_always_within_slot_range():
    rng = random.Random(7)
    for _ in range(500):
        assert 0 <= key_slot(rng.randbytes(rng.randrange(0, 40))) < SLOT_COUNT


def test_hash_tag_hashes_only_the_tag():
    assert key_slot(b"{user1000}.following") == key_slot(b"user1000")
    assert key_slot(b"x{tag}y") == key_slot(b"{tag}") == key_slot(b"tag")


def _whole(key: bytes) -> int:
    return binascii.crc_hqx(key, 0) % SLOT_COUNT  # CRC16-XMODEM of the whole key


def test_empty_hash_tag_hashes_whole_key():
    assert key_slot(b"a{}b{c}") == _whole(b"a{}b{c}")
    assert key_slot(b"{}") == _whole(b"{}")


def test_unclosed_brace_hashes_whole_key():
    assert key_slot(b"{abc") == _whole(b"{abc")


def test_only_first_hash_tag_counts():
    assert key_slot(b"{a}{b}") == key_slot(b"a")


def test_nested_braces_hash_up_to_first_closing_brace():
    assert key_slot(b"{{a}}") == key_slot(b"{a")


def test_encode_key_str_is_utf8():
    assert encode_key("clé") == "clé".encode()


def test_encode_key_bytes_unchanged():
    b = b"\x00abc"
    assert encode_key(b) is b


def test_encode_key_int_uses_repr():
    assert encode_key(123) == b"123"
    assert encode_key(-5) == b"-5"


def test_encode_key_float_uses_repr():
    assert encode_key(1.5) == b"1.5"
    assert encode_key(0.1) == repr(0.1).encode()


def test_encode_key_memoryview_and_bytearray():
    assert encode_key(memoryview(b"abc")) == b"abc"
    assert encode_key(bytearray(b"abc")) == b"abc"


@pytest.mark.parametrize("bad", [True, False, None, object(), ["a"], {"a": 1}], ids=repr)
def test_encode_key_rejects_non_key_types(bad):
    with pytest.raises(TypeError):
        encode_key(bad)


def test_encode_key_bool_error_mentions_bool():
    with pytest.raises(TypeError, match="bool"):
        encode_key(True)


def test_encode_key_matches_redis_py_encoder():
    from redis.connection import Encoder

    enc = Encoder("utf-8", "strict", False)
    for value in ["abc", "ünï", b"\xff", 0, 42, -7, 3.25, 1e100]:
        assert encode_key(value) == enc.encode(value)


@pytest.mark.parametrize(
    "key, encoded",
    [("foo", b"foo"), (b"foo", b"foo"), (12, b"12"), (2.5, b"2.5"), (memoryview(b"foo"), b"foo")],
    ids=repr,
)
def test_slot_of_equals_key_slot_of_encoded_key(key, encoded):
    assert slot_of(key) == key_slot(encoded)


def test_slot_of_rejects_bool():
    with pytest.raises(TypeError):
        slot_of(True)


def test_ranges_collapses_consecutive_slots():
    assert ranges([5, 1, 2, 3, 7, 8, 3, 16383]) == ((1, 3), (5, 5), (7, 8), (16383, 16383))


def test_ranges_of_nothing_is_empty():
    assert ranges([]) == ()


def test_expand_lists_every_slot_inclusive():
    assert expand([(0, 2), (10, 10)]) == [0, 1, 2, 10]


def test_ranges_and_expand_round_trip():
    rng = random.Random(99)
    for _ in range(50):
        slots = sorted(set(rng.sample(range(SLOT_COUNT), rng.randrange(0, 300))))
        r = ranges(slots)
        assert expand(r) == slots
        assert ranges(expand(r)) == r


def test_ranges_of_all_slots_is_one_range():
    assert ranges(range(SLOT_COUNT)) == ((0, SLOT_COUNT - 1),)
