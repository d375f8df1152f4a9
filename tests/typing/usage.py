"""Type-checked by tests/test_typing.py (mypy), never run: the common calls on both clients
type-check and reveal the same types as on redis-py's RedisCluster and its asyncio twin."""

from __future__ import annotations

from typing import assert_type

from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from clusterpool import ClusterClient
from clusterpool.asyncio import ClusterClient as AsyncClusterClient

Value = bytes | str | None


def sync_calls(c: ClusterClient, rc: RedisCluster) -> None:
    assert_type(c.get("k"), Value)
    assert_type(rc.get("k"), Value)  # what RedisCluster reveals
    assert_type(c.set("k", 1), bool | str | bytes | None)
    assert_type(c.set("k", "v", ex=5, nx=True), bool | str | bytes | None)
    assert_type(c.incr("k"), int)
    assert_type(c.delete("a", "b"), int)
    assert_type(c.exists("k"), int)
    assert_type(c.hgetall("h"), dict[bytes | str, bytes | str])
    assert_type(c.mget(["a", "b"]), list[bytes | str | None])
    assert_type(c.reader.get("k"), Value)
    assert_type(c.writer.incr("k"), int)


async def async_calls(c: AsyncClusterClient, rc: AsyncRedisCluster) -> None:
    assert_type(await c.get("k"), Value)
    assert_type(await c.set("k", "v", ex=5, nx=True), bool | str | bytes | None)
    assert_type(await c.incr("k"), int)
    assert_type(await c.delete("a", "b"), int)
    assert_type(await c.hgetall("h"), dict[bytes | str, bytes | str])
    assert_type(await c.reader.get("k"), Value)
    assert_type(await rc.get("k"), Value)  # what the asyncio RedisCluster reveals
