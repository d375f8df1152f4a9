"""Helpers for the asyncio connection tests: keys a node owns, and leak counters."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

from clusterpool.slots import key_slot


TAG_PREFIX = "cpasync"

# The two asyncio clients the drop-in tests compare: redis.asyncio's RedisCluster and ours.
REDIS_ASYNCIO, CLUSTERPOOL = "redis.asyncio", "clusterpool"
KINDS = (REDIS_ASYNCIO, CLUSTERPOOL)


async def compared_client(kind: str, cluster) -> Any:
    """An initialized client of `kind` (KINDS) on `cluster`, decode_responses=True."""
    from redis.asyncio.cluster import RedisCluster

    from clusterpool.asyncio import ClusterClient

    host, port = cluster.startup_nodes[0]
    if kind == REDIS_ASYNCIO:
        client: Any = RedisCluster(host=host, port=port, decode_responses=True)
    else:
        client = ClusterClient(startup_nodes=cluster.startup_nodes, decode_responses=True)
    await client.initialize()
    return client


def tag_on(cluster, port: int, start: int = 0) -> str:
    """A hash tag `{...}` whose slot `port` serves, so `{tag}:anything` goes to that node."""
    slots = set(cluster.slots_of(port))
    i = start
    while True:
        tag = f"{TAG_PREFIX}{i}"
        if key_slot(tag.encode()) in slots:
            return "{" + tag + "}"
        i += 1


def drop_test_keys(cluster) -> None:
    """Delete the keys these tests wrote (`{cpasync...}:*`), so the shared cluster's other users
    (tests counting keys in a slot) do not see them."""
    for port in cluster.primaries():
        r = cluster.client(port)
        try:
            batch = list(r.scan_iter(match="{" + TAG_PREFIX + "*", count=1000))
            for i in range(0, len(batch), 500):
                r.delete(*batch[i : i + 500])
        finally:
            r.close()


def fd_count() -> int:
    """Open sockets of this process (files the harness opens and closes are not counted)."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return n


def other_tasks() -> set[asyncio.Task]:
    """Tasks of the running loop besides the current one."""
    return asyncio.all_tasks() - {asyncio.current_task()}


async def until(pred: Callable[[], bool] | Callable[[], Awaitable[bool]], timeout: float = 30.0, what: str = "condition") -> None:
    """Wait (yielding to the loop) until `pred()` is true; fail after `timeout` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        v = pred()
        if asyncio.iscoroutine(v):
            v = await v
        if v:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


def sockets_to(port: int) -> int:
    """This process's TCP sockets whose peer is `port` on loopback (IPv4)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    n = 0
    with open("/proc/self/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if int(parts[2].split(":")[1], 16) == port and parts[9] in inodes:
                n += 1
    return n
