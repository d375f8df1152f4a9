"""A node's shared connections and its dedicated pool (clusterpool.asyncio.connections/dedicated) on a live node."""

from __future__ import annotations

import asyncio
import random

import pytest
from async_helpers import fd_count, other_tasks, sockets_to, tag_on, until
from redis.exceptions import ConnectionError as RedisConnectionError

from clusterpool.asyncio import CommandTimeoutError, LostConnectionError, NodeSettings
from clusterpool.asyncio.connections import NodeConnections
from clusterpool.errors import PoolClosedError, PoolTimeoutError

pytestmark = pytest.mark.asyncio


def _node(cluster, port: int | None = None, **kw) -> NodeConnections:
    port = port if port is not None else cluster.primaries()[0]
    opts = {k: kw.pop(k) for k in list(kw) if k in ("client_name", "readonly", "protocol")}
    return NodeConnections(NodeSettings.make("127.0.0.1", port, decode_responses=True, **opts), **kw)


async def _clients_named(node: NodeConnections, name: str) -> int:
    listing = await node.execute("CLIENT", "LIST")
    return sum(1 for line in listing.splitlines() if f" name={name} " in f" {line} ")


async def test_ten_thousand_concurrent_sets_beside_blocking_calls_all_succeed(cluster):
    port = cluster.primaries()[0]
    node = _node(cluster, port, max_connections=2, pool_timeout=None)
    tag = tag_on(cluster, port)

    async def blocking(i: int) -> object:
        async with node.lease() as conn:
            return await conn.execute("BLPOP", f"{tag}:bl:{i}", 0.01, timeout=None)

    sets = [node.execute("SET", f"{tag}:10k:{i}", i) for i in range(10_000)]
    blocks = [blocking(i) for i in range(8)]  # 8 blocking calls through a pool of 2: they wait
    results = await asyncio.gather(*sets, *blocks)
    assert results[:10_000] == ["OK"] * 10_000
    assert results[10_000:] == [None] * 8
    assert node.dedicated.stats().opened <= 2
    await node.aclose()


async def test_a_blocked_blpop_does_not_delay_shared_traffic(cluster):
    port = cluster.primaries()[0]
    node = _node(cluster, port)
    tag = tag_on(cluster, port)
    started = asyncio.Event()

    async def pop() -> object:
        async with node.lease() as conn:
            started.set()
            return await conn.execute("BLPOP", f"{tag}:wake", 0, timeout=None)

    popper = asyncio.ensure_future(pop())
    await started.wait()
    for i in range(200):
        assert await node.execute("SET", f"{tag}:side:{i}", i) == "OK"
        assert await node.execute("GET", f"{tag}:side:{i}") == str(i)
    assert not popper.done()
    await node.execute("RPUSH", f"{tag}:wake", "hello")
    assert await popper == [f"{tag}:wake", "hello"]
    await node.aclose()


async def test_a_full_pool_waits_for_a_connection_instead_of_failing(cluster):
    node = _node(cluster, max_connections=1)
    first = await node.dedicated.acquire()
    second = asyncio.ensure_future(node.dedicated.acquire(timeout=None))
    await until(lambda: node.dedicated.stats().waiting == 1, what="second acquirer queued")
    assert not second.done()
    assert repr(node.dedicated) == f"<DedicatedPool {node.name}: 1 leased, 0 idle, 0 opening of 1 | 1 waiting>"
    node.dedicated.release(first)
    got = await second
    assert got is first  # handed over, not a new socket
    node.dedicated.release(got)
    assert node.dedicated.stats().opened == 1
    await node.aclose()


async def test_a_full_pool_raises_pool_timeout_after_pool_timeout(cluster):
    node = _node(cluster, max_connections=1, pool_timeout=0.05)
    held = await node.dedicated.acquire()
    with pytest.raises(PoolTimeoutError):
        await node.dedicated.acquire()
    assert node.dedicated.stats().timeouts == 1 and node.dedicated.stats().waiting == 0
    node.dedicated.release(held)
    node.dedicated.release(await node.dedicated.acquire())
    await node.aclose()


async def test_a_cancelled_blocking_command_discards_its_connection(cluster):
    port = cluster.primaries()[0]
    node = _node(cluster, port, client_name="discard-test")
    tag = tag_on(cluster, port)
    started = asyncio.Event()

    async def pop() -> None:
        async with node.lease() as conn:
            started.set()
            await conn.execute("BLPOP", f"{tag}:never", 0, timeout=None)

    task = asyncio.ensure_future(pop())
    await started.wait()
    await until(lambda: node.dedicated.stats().leased == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    s = node.dedicated.stats()
    assert s.discarded == 1 and s.idle == 0 and s.leased == 0
    # the server sees the blocked client go away (only the shared connection is left)
    await until(lambda: _clients_named(node, "discard-test"), what="CLIENT LIST to answer")
    await until(_count_is(node, "discard-test", 1), what="the discarded connection to close")
    await node.aclose()


def _count_is(node: NodeConnections, name: str, n: int):
    async def check() -> bool:
        return await _clients_named(node, name) == n

    return check


async def test_a_cancelled_waiter_gets_nothing_and_leaks_nothing(cluster):
    node = _node(cluster, max_connections=1)
    held = await node.dedicated.acquire()
    waiters = [asyncio.ensure_future(node.dedicated.acquire(timeout=None)) for _ in range(20)]
    await until(lambda: node.dedicated.stats().waiting == 20)
    for w in waiters[::2]:
        w.cancel()
    node.dedicated.release(held)
    for w in waiters[1::2]:
        conn = await w
        node.dedicated.release(conn)
    assert all(w.cancelled() for w in waiters[::2])
    s = node.dedicated.stats()
    assert (s.opened, s.idle, s.leased, s.waiting) == (1, 1, 0, 0)
    await node.aclose()


async def test_connections_per_node_stay_bounded_under_5000_tasks(cluster):
    port = cluster.primaries()[0]
    node = _node(cluster, port, client_name="bounded-test", max_shared=3, grow_at=64, max_connections=4)
    tag = tag_on(cluster, port)
    rng = random.Random(5000)
    peak = 0

    async def task(i: int) -> None:
        nonlocal peak
        if i % 50 == 0:
            async with node.lease() as conn:
                await conn.execute("BLPOP", f"{tag}:b:{i}", 0.01, timeout=None)
        else:
            for _ in range(rng.randrange(1, 4)):
                await node.execute("INCR", f"{tag}:n:{i % 97}")
        peak = max(peak, node.connection_count)

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, node.connection_count)
            await asyncio.sleep(0)

    sampler = asyncio.ensure_future(sample())
    await asyncio.gather(*(task(i) for i in range(5000)))
    sampler.cancel()
    assert 1 <= peak <= 3 + 4
    assert await _clients_named(node, "bounded-test") <= 3 + 4
    await node.aclose()


async def test_aclose_after_mixed_work_leaves_no_task_or_socket(cluster):
    port = cluster.primaries()[0]
    fds = fd_count()
    node = _node(cluster, port, max_connections=2)
    tag = tag_on(cluster, port)

    async def lease_and_block() -> None:
        async with node.lease() as conn:
            await conn.execute("BLPOP", f"{tag}:forever", 0, timeout=None)

    busy = [asyncio.ensure_future(node.execute("SET", f"{tag}:m:{i}", i)) for i in range(500)]
    blocked = [asyncio.ensure_future(lease_and_block()) for _ in range(4)]  # 2 hold, 2 wait
    await until(lambda: node.dedicated.stats().leased == 2 and node.dedicated.stats().waiting == 2)
    await asyncio.gather(*busy)
    hanging = asyncio.ensure_future(node.execute("BLPOP", f"{tag}:forever2", 0, timeout=None))
    await until(lambda: sum(s.pending for s in node.stats().shared) == 1)
    await node.aclose()
    for t in [*blocked, hanging]:
        with pytest.raises(Exception):  # noqa: B017 - closed under them: LostConnectionError / PoolClosedError
            await t
    assert other_tasks() == set()
    assert sockets_to(port) == 0
    assert fd_count() == fds
    with pytest.raises(PoolClosedError):
        await node.execute("PING")


async def test_a_killed_node_under_load_fails_commands_and_leaks_nothing(fresh_cluster):
    c = fresh_cluster
    port = c.primaries()[0]
    node = _node(c, port, max_shared=2, grow_at=32, max_connections=2)
    tag = tag_on(c, port)
    failures: list[BaseException] = []
    stop = asyncio.Event()

    async def load(i: int) -> None:
        while not stop.is_set():
            try:
                await node.execute("SET", f"{tag}:k:{i}", i)
            except Exception as e:  # noqa: BLE001 - collected and checked below
                failures.append(e)
                await asyncio.sleep(0.01)

    async def block() -> None:
        try:
            async with node.lease() as conn:
                await conn.execute("BLPOP", f"{tag}:kb", 0, timeout=None)
        except Exception as e:  # noqa: BLE001
            failures.append(e)

    tasks = [asyncio.ensure_future(load(i)) for i in range(300)] + [asyncio.ensure_future(block())]
    await until(lambda: sum(s.replies for s in node.stats().shared) > 3000, what="load")
    await asyncio.to_thread(c.kill, port)
    await until(lambda: len(failures) > 300, what="commands to fail")
    stop.set()
    await asyncio.gather(*tasks)
    assert all(isinstance(e, RedisConnectionError) for e in failures), {type(e) for e in failures}
    lost = [e for e in failures if isinstance(e, LostConnectionError)]
    assert any(e.sent for e in lost)  # in flight at the kill: outcome unknown
    # the rest were refused before anything was written: queued at the break (sent=False),
    # or a new connection could not be opened (redis-py's ConnectionError: nothing sent)
    assert all(not e.sent for e in lost if "sent, outcome unknown" not in str(e))
    await node.aclose()
    assert other_tasks() == set()
    assert sockets_to(port) == 0


async def test_a_connection_the_server_closed_is_replaced_before_the_next_command(cluster):
    port = cluster.primaries()[0]
    before = sockets_to(port)
    node = _node(cluster, port)
    tag = tag_on(cluster, port)
    first = await node.shared()
    my_id = await node.execute("CLIENT", "ID")
    killer = _node(cluster, port)
    assert await killer.execute("CLIENT", "KILL", "ID", my_id) == 1
    await until(lambda: not first.usable, what="the reader to see the close")
    assert await node.execute("SET", f"{tag}:after-kill", 1) == "OK"  # no error: a new connection
    assert await node.shared() is not first
    await killer.aclose()
    await node.aclose()
    assert sockets_to(port) == before
    assert other_tasks() == set()


async def test_timeouts_on_a_paused_node_keep_the_shared_connection(fresh_cluster):
    c = fresh_cluster
    port = c.primaries()[0]
    node = _node(c, port)
    tag = tag_on(c, port)
    await node.execute("SET", f"{tag}:p", "before")
    mux = await node.shared()
    await asyncio.to_thread(c.pause, port)
    try:
        results = await asyncio.gather(
            *(node.execute("SET", f"{tag}:p:{i}", i, timeout=0.05) for i in range(50)), return_exceptions=True
        )
        assert all(isinstance(r, CommandTimeoutError) and r.sent for r in results), results[:3]
    finally:
        await asyncio.to_thread(c.resume, port)
    assert await node.execute("GET", f"{tag}:p", timeout=None) == "before"  # its own reply, not a late one
    assert await node.shared() is mux and mux.usable
    await until(lambda: mux.pending == 0)
    assert mux.stats().dropped == 50
    await node.aclose()


async def test_cancelling_the_first_command_while_its_connection_opens_leaks_nothing(cluster):
    port = cluster.primaries()[0]
    before = sockets_to(port)
    for _ in range(20):
        node = _node(cluster, port)
        t = asyncio.ensure_future(node.execute("PING"))
        await asyncio.sleep(0)
        t.cancel()
        lease = asyncio.ensure_future(node.dedicated.acquire())
        await asyncio.sleep(0)
        lease.cancel()
        await asyncio.gather(t, lease, return_exceptions=True)
        await node.aclose()
        assert other_tasks() == set()
    assert sockets_to(port) == before


async def test_a_dedicated_command_timeout_discards_the_connection(cluster):
    port = cluster.primaries()[0]
    node = _node(cluster, port)
    tag = tag_on(cluster, port)
    with pytest.raises(CommandTimeoutError) as info:
        async with node.lease() as conn:
            await conn.execute("BLPOP", f"{tag}:nothing", 0, timeout=0.02)
    assert info.value.sent is True
    assert node.dedicated.stats().discarded == 1
    async with node.lease() as conn:
        assert await conn.execute("PING") in ("PONG", True)
    await node.aclose()


async def test_a_lease_held_across_aclose_cannot_reopen_a_socket(cluster):
    port = cluster.primaries()[0]
    before = sockets_to(port)
    node = _node(cluster, port)
    conn = await node.dedicated.acquire()
    await node.aclose()
    with pytest.raises(LostConnectionError) as info:
        await conn.execute("PING")
    assert info.value.sent is False
    node.dedicated.release(conn)
    assert sockets_to(port) == before
    assert other_tasks() == set()


async def test_drop_idle_closes_idle_dedicated_connections_only(cluster):
    port = cluster.primaries()[0]
    before = sockets_to(port)
    node = _node(cluster, port)
    a, b = await node.dedicated.acquire(), await node.dedicated.acquire()
    node.dedicated.release(a)
    assert node.dedicated.drop_idle() == 1
    await until(lambda: sockets_to(port) == before + 1, what="the idle socket to close")
    assert await b.execute("PING") in ("PONG", True)  # the leased one is untouched
    node.dedicated.release(b)
    await node.aclose()
    assert sockets_to(port) == before


async def test_counters_keep_a_replaced_connections_counts(cluster):
    port = cluster.primaries()[0]
    node = _node(cluster, port)
    tag = tag_on(cluster, port)
    first = await node.shared()
    for i in range(5):
        await node.execute("SET", f"{tag}:count:{i}", i)
    my_id = await node.execute("CLIENT", "ID")
    before = node.stats().total("commands")
    killer = _node(cluster, port)
    assert await killer.execute("CLIENT", "KILL", "ID", my_id) == 1
    await until(lambda: not first.usable, what="the reader to see the close")
    await node.execute("SET", f"{tag}:count:after", 1)
    assert node.stats().total("commands") == before + 1
    await killer.aclose()
    await node.aclose()
    assert node.stats().total("commands") == before + 1
