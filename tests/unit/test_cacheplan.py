"""cacheplan: which reads the client-side cache serves, under which keys (no server)."""

from __future__ import annotations

from clusterpool._redispy import NEVER_DECODE
from clusterpool.cacheconfig import CacheConfig, cache_settings
from clusterpool.cacheplan import RAW, REPLICA, cache_key, cached_key, is_mget, mget_keys
from clusterpool.commands import CommandTable

SETTINGS = cache_settings(None, CacheConfig())
TABLE = CommandTable.bundled_with(None)


def _info(*args):
    return TABLE.resolve(args)[0]


def test_the_cache_key_is_the_arguments_as_given():
    assert cache_key(("GET", "k"), {}, False) == ("GET", "k")


def test_an_undecoded_read_and_a_replica_read_have_keys_of_their_own():
    assert cache_key(("GET", "k"), {NEVER_DECODE: True}, False) == RAW + ("GET", "k")
    assert cache_key(("GET", "k"), {}, True) == REPLICA + ("GET", "k")


def test_an_unhashable_argument_is_not_cached():
    assert cache_key(("GET", ["k"]), {}, False) is None


def test_an_allow_listed_single_key_read_is_cached_under_its_encoded_key():
    assert cached_key(SETTINGS, _info("GET", "k"), ("GET", "k")) == b"k"
    assert cached_key(SETTINGS, _info("HGETALL", 5), ("HGETALL", 5)) == b"5"


def test_writes_and_reads_off_the_allow_list_are_not_cached():
    assert cached_key(SETTINGS, _info("SET", "k", "v"), ("SET", "k", "v")) is None
    assert cached_key(SETTINGS, _info("RANDOMKEY"), ("RANDOMKEY",)) is None
    assert cached_key(SETTINGS, _info("OBJECT", "ENCODING", "k"), ("OBJECT", "ENCODING", "k")) is None


def test_extra_commands_extend_the_allow_list():
    settings = cache_settings(None, CacheConfig(extra_commands=["ttl"]))
    assert cached_key(settings, _info("TTL", "k"), ("TTL", "k")) == b"k"
    assert cached_key(SETTINGS, _info("TTL", "k"), ("TTL", "k")) is None


def test_an_mget_in_one_slot_is_served_per_key_from_get_entries():
    planned = mget_keys(SETTINGS, ("MGET", "{t}a", "{t}b"), {}, False)
    assert planned is not None
    ckeys, rkeys, slot = planned
    assert ckeys == [("GET", "{t}a"), ("GET", "{t}b")] and rkeys == [b"{t}a", b"{t}b"]


def test_an_mget_across_slots_is_left_to_the_servers_error():
    assert mget_keys(SETTINGS, ("MGET", "a", "b"), {}, False) is None


def test_mget_is_recognised_in_any_case():
    assert is_mget("mget") and is_mget(b"MGET") and not is_mget("GET")
