"""cache= / cache_config= read into CacheSettings, and what is refused before anything is sent."""

import pytest
from redis import cache as rcache

from clusterpool import CacheConfig, ConfigurationError
from clusterpool.cacheconfig import DEFAULT_MAX_BYTES, cache_settings


def test_redis_py_cache_config_works_unchanged_with_its_max_size_as_the_entry_bound():
    s = cache_settings(None, rcache.CacheConfig(max_size=123))
    assert (s.max_entries, s.max_bytes, s.ttl) == (123, DEFAULT_MAX_BYTES, None)
    assert s.caches("get") and s.caches("HGETALL") and s.caches("MGET")


def test_clusterpool_cache_config_adds_a_byte_bound_a_ttl_and_commands():
    s = cache_settings(None, CacheConfig(max_size=10, max_bytes=4096, ttl=1.5, extra_commands=["my.get"]))
    assert (s.max_entries, s.max_bytes, s.ttl) == (10, 4096, 1.5)
    assert s.caches("MY.GET")


def test_writes_and_commands_the_server_does_not_track_are_never_cached():
    s = cache_settings(None, CacheConfig())
    assert not s.caches("SET") and not s.caches("XREAD") and not s.caches("INCR")


def test_a_default_cache_object_is_read_for_its_config():
    assert cache_settings(rcache.DefaultCache(rcache.CacheConfig(max_size=7)), None).max_entries == 7


def test_no_cache_asked_means_no_settings():
    assert cache_settings(None, None) is None


@pytest.mark.parametrize("cache, config, match", [
    (object(), None, "custom cache object"),
    (None, "yes", "pass a redis.cache.CacheConfig"),
    (None, CacheConfig(ttl=0), "ttl"),
    (None, CacheConfig(max_bytes=10), "max_bytes"),
    (None, CacheConfig(max_size=0), "max_size"),
    (rcache.DefaultCache(rcache.CacheConfig()), rcache.CacheConfig(), "not both"),
])
def test_what_cannot_be_honoured_is_refused_saying_what_to_pass(cache, config, match):
    with pytest.raises(ConfigurationError, match=match):
        cache_settings(cache, config)


def test_both_clients_take_cache_config_at_construction():
    from clusterpool import ClusterClient
    from clusterpool.asyncio import ClusterClient as AsyncClusterClient

    for cls in (ClusterClient, AsyncClusterClient):
        assert cls("127.0.0.1", 7000, cache_config=CacheConfig(max_size=5)).config.cache.max_entries == 5


def test_extra_commands_given_as_one_string_is_refused():
    with pytest.raises(ConfigurationError, match="extra_commands must be a list"):
        CacheConfig(extra_commands="GET")
