"""clusterpool.asyncio ClusterPubSub against real clusters: classic and sharded delivery, handlers,
resubscription after a slot migration and a failover, cancellation, clean shutdown; and, at the
end, the drop-in scenarios run on redis.asyncio's RedisCluster and on ours alike."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import pytest
import pytest_asyncio
from async_helpers import KINDS, compared_client, other_tasks, sockets_to, until
from redis.asyncio.cluster import ClusterNode
from redis.exceptions import DataError, RedisClusterException

from clusterpool import key_slot
from clusterpool.asyncio import ClusterClient
from clusterpool.asyncio.inbox import Inbox

pytestmark = pytest.mark.asyncio


def uid() -> str:
    return uuid.uuid4().hex[:10]


def _client(cluster, **kw) -> ClusterClient:
    return ClusterClient(startup_nodes=cluster.startup_nodes, decode_responses=True, **kw)


def pubsub_tasks() -> list[asyncio.Task]:
    """Running tasks of any pubsub (readers, closers, keepers)."""
    return [t for t in other_tasks() if t.get_coro().__qualname__.split(".")[0] in ("Links", "Keeper")]


def channels_on_distinct_shards(cluster, prefix: str) -> dict[int, str]:
    """One channel name per primary (so per shard): primary port -> channel."""
    owners: dict[int, str] = {}
    i = 0
    while len(owners) < len(cluster.primaries()):
        ch = f"{prefix}{i}"
        owners.setdefault(cluster.slot_owner(key_slot(ch.encode())), ch)
        i += 1
    return owners


async def next_message(ps, kind: str, timeout: float = 10.0) -> dict:
    """The next message of `kind` (others are skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            m = await ps.get_message(timeout=None)
            if m is not None and m["type"] == kind:
                return m


async def deliver_until_received(ps, publish, channel: str, timeout: float = 40.0) -> dict:
    """Publish until a message on `channel` arrives (messages sent while a subscription moves are lost)."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                await publish()
            except Exception:  # noqa: BLE001 - the publisher itself may be mid-failover
                pass
            m = await ps.get_message(timeout=0.2)
            if m is not None and m["type"] == "smessage" and m["channel"] == channel:
                return m


# ---------------------------------------------------------------- the inbox (no server)


class _Named:
    def __init__(self, name: str) -> None:
        self.name = name


async def test_inbox_takes_in_order_or_the_oldest_of_one_node():
    a, b = _Named("a:1"), _Named("b:1")
    box = Inbox()
    for link, item in ((a, 1), (b, 2), (a, 3)):
        box.put(link, item)
    assert box.take("b:1") == (b, 2)
    assert box.take("b:1") is None
    assert [box.take(), box.take(), box.take()] == [(a, 1), (a, 3), None]


async def test_inbox_holds_a_links_reader_at_per_link_items_until_one_is_taken():
    a, b = _Named("a:1"), _Named("b:1")
    box = Inbox(per_link=2)
    box.put(a, 1)
    box.put(a, 2)
    waiting = asyncio.create_task(box.room(a))
    await box.room(b)  # another link's reader is not held
    await asyncio.sleep(0)
    assert not waiting.done()
    box.take()
    await asyncio.wait_for(waiting, 5)


async def test_inbox_wait_cancelled_takes_nothing():
    a = _Named("a:1")
    box = Inbox()
    task = asyncio.create_task(box.wait(None))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    box.put(a, 1)
    assert box.take() == (a, 1)
    assert await asyncio.wait_for(box.wait(0.01), 5) is None  # times out quietly


# ---------------------------------------------------------------- classic


async def test_subscribe_and_publish_round_trip(cluster):
    ch = f"news:{uid()}"
    async with _client(cluster) as client, client.pubsub() as ps:
        await ps.subscribe(ch)
        assert (await next_message(ps, "subscribe"))["channel"] == ch
        await client.publish(ch, "hello")
        m = await next_message(ps, "message")
    assert m == {"type": "message", "pattern": None, "channel": ch, "data": "hello"}


async def test_psubscribe_receives_matching_channels(cluster):
    base = f"ev:{uid()}"
    async with _client(cluster) as client, client.pubsub() as ps:
        await ps.psubscribe(f"{base}:*")
        assert (await next_message(ps, "psubscribe"))["channel"] == f"{base}:*"
        await client.publish(f"{base}:one", "1")
        m = await next_message(ps, "pmessage")
    assert (m["pattern"], m["channel"], m["data"]) == (f"{base}:*", f"{base}:one", "1")


async def test_handlers_are_called_instead_of_returning_messages(cluster):
    ch, ach = f"h:{uid()}", f"ah:{uid()}"
    got: list[dict] = []

    async def async_handler(m):
        got.append(m)

    async with _client(cluster) as client, client.pubsub() as ps:
        await ps.subscribe(**{ch: got.append, ach: async_handler})
        task = asyncio.create_task(ps.run(poll_timeout=0.1))
        try:
            async def both_delivered():
                await client.publish(ch, "sync")
                await client.publish(ach, "async")
                return {m["channel"] for m in got} == {ch, ach}

            await until(both_delivered, what="both handlers called")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert {(m["channel"], m["data"]) for m in got} == {(ch, "sync"), (ach, "async")}


async def test_run_refuses_a_subscription_without_handler(cluster):
    async with _client(cluster) as client, client.pubsub() as ps:
        await ps.subscribe(f"bare:{uid()}")
        with pytest.raises(Exception, match="has no handler registered"):
            await ps.run()


async def test_get_message_timeout_returns_none(cluster):
    async with _client(cluster) as client, client.pubsub(ignore_subscribe_messages=True) as ps:
        await ps.subscribe(f"quiet:{uid()}")
        assert await ps.get_message(timeout=0.2) is None


async def test_listen_yields_messages_until_unsubscribed(cluster):
    ch = f"l:{uid()}"
    async with _client(cluster) as client, client.pubsub() as ps:
        await ps.subscribe(ch)
        seen = []
        async for m in ps.listen():
            seen.append(m["type"])
            if m["type"] == "subscribe":
                await client.publish(ch, "x")
            elif m["type"] == "message":
                await ps.unsubscribe(ch)
    assert seen == ["subscribe", "message", "unsubscribe"]
    assert not ps.subscribed


# ---------------------------------------------------------------- sharded


async def test_ssubscribe_receives_spublish_on_every_shard(cluster):
    owners = channels_on_distinct_shards(cluster, f"s:{uid()}:")
    chans = list(owners.values())
    async with _client(cluster) as client, client.pubsub() as ps:
        await ps.ssubscribe(*chans)
        assert ps.nodes()["sharded"] == sorted(f"{cluster.host}:{p}" for p in owners)  # one connection per owner
        confirmed = {(await next_message(ps, "ssubscribe"))["channel"] for _ in chans}
        assert confirmed == set(chans)
        for ch in chans:
            assert await client.spublish(ch, f"m-{ch}") == 1  # routed to the slot's owner, where we listen
        got: dict[str, dict] = {}
        while len(got) < len(chans):
            m = await next_message(ps, "smessage")
            got[m["channel"]] = m
    assert got == {ch: {"type": "smessage", "pattern": None, "channel": ch, "data": f"m-{ch}"} for ch in chans}


async def test_sunsubscribe_releases_the_nodes_connection(cluster):
    owners = channels_on_distinct_shards(cluster, f"u:{uid()}:")
    keep, drop = list(owners.values())[:2]
    async with _client(cluster) as client, client.pubsub() as ps:
        await ps.ssubscribe(keep, drop)
        await ps.sunsubscribe(drop)
        assert (await next_message(ps, "sunsubscribe"))["channel"] == drop
        assert set(ps.shard_channels) == {keep}
        await until(lambda: len(ps.nodes()["sharded"]) == 1, what="idle connection closed")
        assert await client.spublish(drop, "gone") == 0
        await client.spublish(keep, "here")
        assert (await next_message(ps, "smessage"))["channel"] == keep


async def test_shard_messages_are_bytes_without_decode_responses(cluster):
    ch = f"b:{uid()}"
    async with ClusterClient(startup_nodes=cluster.startup_nodes) as client, client.pubsub() as ps:
        await ps.ssubscribe(ch)
        assert (await next_message(ps, "ssubscribe"))["channel"] == ch.encode()
        await client.spublish(ch, b"\x00raw")
        m = await next_message(ps, "smessage")
    assert m == {"type": "smessage", "pattern": None, "channel": ch.encode(), "data": b"\x00raw"}


async def test_get_sharded_message_reads_only_the_target_nodes(cluster):
    owners = channels_on_distinct_shards(cluster, f"t:{uid()}:")
    (p1, c1), (p2, c2) = list(owners.items())[:2]
    async with _client(cluster) as client, client.pubsub(ignore_subscribe_messages=True) as ps:
        await ps.ssubscribe(c1, c2)
        await until(lambda: len(ps.nodes()["sharded"]) == 2, what="two connections")
        target = client.get_node(cluster.host, p2)
        await client.spublish(c1, "one")
        await client.spublish(c2, "two")
        async with asyncio.timeout(10):
            m = None
            while m is None:
                m = await ps.get_sharded_message(timeout=0.2, target_node=target)
        assert m["channel"] == c2
        assert (await next_message(ps, "smessage"))["channel"] == c1  # kept for the next reader


async def test_pinned_node_holds_the_classic_subscriptions(cluster):
    port = cluster.primaries()[-1]
    async with _client(cluster) as client, client.pubsub(host=cluster.host, port=port) as ps:
        await ps.subscribe(f"pin:{uid()}")
        assert ps.nodes()["classic"] == [f"{cluster.host}:{port}"]
        assert ps.get_pubsub_node().port == port


async def test_a_pinned_node_not_in_the_cluster_is_refused_at_the_first_subscribe_before_discovery(cluster):
    """pubsub() does no I/O: with no map yet, the pinned node is checked when the map is first needed."""
    import redis

    client = _client(cluster)
    try:
        async with client.pubsub(host="127.0.0.1", port=1) as ps:
            with pytest.raises(redis.RedisClusterException, match="doesn't exist in the cluster"):
                await ps.subscribe("nowhere")
            assert ps.nodes() == {"classic": [], "sharded": []}
    finally:
        await client.aclose()


async def test_unknown_or_unsupported_options_are_refused_at_once(cluster):
    from clusterpool.errors import ConfigurationError

    client = _client(cluster)
    with pytest.raises(ConfigurationError, match="unknown pubsub option"):
        client.pubsub(colour="blue")
    with pytest.raises(ConfigurationError, match="push_handler_func"):
        client.pubsub(push_handler_func=print)
    await client.aclose()


async def test_reinitialize_with_an_unchanged_map_keeps_every_subscription_in_place(cluster):
    owners = channels_on_distinct_shards(cluster, f"ri:{uid()}:")
    async with _client(cluster) as client, client.pubsub(ignore_subscribe_messages=True) as ps:
        await ps.ssubscribe(*owners.values())
        before = ps.nodes()
        await ps.reinitialize_shard_subscriptions()
        assert ps.nodes() == before
        for ch in owners.values():
            await deliver_until_received(ps, lambda ch=ch: client.spublish(ch, "x"), ch, timeout=10)


# ---------------------------------------------------------------- cancellation and shutdown


async def test_cancelled_get_message_leaves_the_pubsub_working(cluster):
    ch = f"cx:{uid()}"
    async with _client(cluster) as client, client.pubsub(ignore_subscribe_messages=True) as ps:
        await ps.subscribe(ch)
        await until(lambda: ps.nodes()["classic"], what="subscribed")
        for _ in range(20):
            task = asyncio.create_task(ps.get_message(timeout=None))
            await asyncio.sleep(0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        async def delivered():
            await client.publish(ch, "after")
            m = await ps.get_message(timeout=0.2)
            return m is not None and m["data"] == "after"

        await until(delivered, what="delivery after cancellations")


async def test_subscribes_cancelled_midway_leave_the_pubsub_working(cluster):
    owners = channels_on_distinct_shards(cluster, f"cs:{uid()}:")
    rng = random.Random(7)
    async with _client(cluster) as client, client.pubsub(ignore_subscribe_messages=True) as ps:
        for i in range(30):
            call = ps.ssubscribe(f"cs:{uid()}") if i % 2 else ps.subscribe(f"cc:{uid()}")
            task = asyncio.create_task(call)
            for _ in range(rng.randrange(4)):
                await asyncio.sleep(0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        chans = list(owners.values())
        await ps.ssubscribe(*chans)
        for ch in chans:
            await deliver_until_received(ps, lambda ch=ch: client.spublish(ch, "ok"), ch, timeout=20)


async def test_connections_killed_by_the_server_are_remade_with_their_subscriptions(cluster):
    a, b, sch = f"ka:{uid()}", f"kb:{uid()}", f"ks:{uid()}"
    async with _client(cluster) as client:
        async with client.pubsub(ignore_subscribe_messages=True) as ps:
            await ps.subscribe(a)
            await ps.ssubscribe(sch)
            for name in {*ps.nodes()["classic"], *ps.nodes()["sharded"]}:
                with cluster.client(int(name.rsplit(":", 1)[1])) as r:
                    r.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            await ps.subscribe(b)  # maybe before the keeper has moved `a`: both must end up on one link

            async def delivered(ch, publish):
                async def check():
                    await publish(ch, "x")
                    m = await ps.get_message(timeout=0.2)
                    return m is not None and m["channel"] == ch
                await until(check, what=f"delivery on {ch}")

            await delivered(a, client.publish)
            await delivered(b, client.publish)
            await delivered(sch, client.spublish)
            assert set(ps.channels) == {a, b} and set(ps.shard_channels) == {sch}
            assert pubsub_tasks()  # readers and the keeper run while subscribed
        assert pubsub_tasks() == []


async def test_aclose_leaves_no_task_and_no_socket(cluster):
    owners = channels_on_distinct_shards(cluster, f"c:{uid()}:")
    outside = other_tasks()
    async with _client(cluster) as client:
        await client.ping()
        base = {p: sockets_to(p) for p in cluster.primaries()}
        before = other_tasks()  # the client's own (refresh, shared connections)
        ps = client.pubsub(ignore_subscribe_messages=True)
        await ps.subscribe(f"plain:{uid()}")
        await ps.ssubscribe(*owners.values())
        waiter = asyncio.create_task(ps.get_message(timeout=None))
        await until(lambda: all(sockets_to(p) > base[p] for p in owners), what="pubsub sockets open")
        await ps.aclose()
        assert await waiter is None  # a reader blocked in get_message is let go
        assert all(sockets_to(p) == base[p] for p in cluster.primaries())
        assert not ps.subscribed
        assert other_tasks() == before
    assert other_tasks() == outside


async def test_closing_the_client_closes_its_pubsubs(cluster):
    before = other_tasks()
    client = _client(cluster)
    ps = client.pubsub()
    await ps.ssubscribe(f"bye:{uid()}")
    await client.aclose()
    assert not ps.subscribed
    assert other_tasks() == before


# ---------------------------------------------------------------- moving subscriptions (destructive)


async def _moved_shard_case(cluster, move) -> None:
    """A shard channel keeps delivering after `move(primary)` gives its slot to another node
    (returned); the other shard's channel is untouched."""
    async with _client(cluster) as client, _client(cluster) as publisher:
        owners = channels_on_distinct_shards(cluster, "mv:")
        victim, ch = next(iter(owners.items()))
        other = owners[[p for p in owners if p != victim][0]]
        ps = client.pubsub(ignore_subscribe_messages=True)
        await ps.ssubscribe(ch, other)
        await deliver_until_received(ps, lambda: publisher.spublish(ch, "before"), ch)

        new_owner = await asyncio.to_thread(move, victim, key_slot(ch.encode()))

        # after a failover the demoted primary still relays the shard's messages (it replicates
        # the new one), so delivery alone does not show the move: wait for the keeper to move
        await until(lambda: f"{cluster.host}:{new_owner}" in ps.nodes()["sharded"],
                    what="the shard subscription to move to the slot's new owner")
        m = await deliver_until_received(ps, lambda: publisher.spublish(ch, "after"), ch)
        assert m["data"] == "after"
        assert set(ps.shard_channels) == {ch, other}
        await deliver_until_received(ps, lambda: publisher.spublish(other, "still"), other)
        await ps.aclose()


@pytest.mark.slow
@pytest.mark.chaos
async def test_shard_channel_is_resubscribed_after_its_slot_migrates(fresh_cluster):
    c = fresh_cluster

    def migrate(primary, slot):
        dst = next(p for p in c.primaries() if p != primary)
        c.move_slot(slot, dst)
        return dst

    await _moved_shard_case(c, migrate)


@pytest.mark.slow
@pytest.mark.chaos
async def test_shard_channel_is_resubscribed_after_its_primary_is_killed(fresh_cluster):
    c = fresh_cluster

    def kill(primary, slot):
        c.kill(primary)
        return c.wait_promoted(primary, 60)

    await _moved_shard_case(c, kill)


@pytest.mark.slow
@pytest.mark.chaos
async def test_shard_channel_is_resubscribed_after_a_manual_failover(fresh_cluster):
    c = fresh_cluster

    def failover(primary, slot):
        replica = c.replicas_of(primary)[0]
        c.failover(replica)
        return replica

    await _moved_shard_case(c, failover)


@pytest.mark.chaos
async def test_ssubscribe_on_a_stale_map_follows_moved_to_the_new_owner(fresh_cluster):
    c = fresh_cluster
    # no periodic refresh, no CLUSTER INFO watch (health_interval): only MOVED tells it of the move
    async with _client(c, refresh_interval=3600, health_interval=3600) as client, _client(c) as publisher:
        ch = f"stale:{uid()}"
        slot = key_slot(ch.encode())
        src = c.slot_owner(slot)
        dst = next(p for p in c.primaries() if p != src)
        await client.initialize()
        await asyncio.to_thread(c.move_slot, slot, dst)
        assert client.node_for(ch).port == src  # the client's map still says src
        ps = client.pubsub(ignore_subscribe_messages=True)
        await ps.ssubscribe(ch)  # answered with MOVED by src
        await deliver_until_received(ps, lambda: publisher.spublish(ch, "x"), ch)
        assert ps.nodes()["sharded"] == [f"{c.host}:{dst}"]
        await ps.aclose()


@pytest.mark.chaos
async def test_classic_subscription_moves_when_its_node_dies(fresh_cluster):
    c = fresh_cluster
    async with _client(c) as client:
        ps = client.pubsub(ignore_subscribe_messages=True)
        ch = f"classic:{uid()}"
        await ps.subscribe(ch)
        node = ps.nodes()["classic"][0]
        port = int(node.rsplit(":", 1)[1])
        await asyncio.to_thread(c.kill, port)
        await asyncio.to_thread(c.wait_promoted, port, 60)

        async def delivered():
            try:
                await client.publish(ch, "hello")
            except Exception:  # noqa: BLE001 - the publisher may still be routing around the dead node
                return False
            m = await ps.get_message(timeout=0.3)
            return m is not None and m["data"] == "hello"

        await until(delivered, timeout=60, what="delivery after the classic node died")
        assert ps.nodes()["classic"] and ps.nodes()["classic"][0] != node
        await ps.aclose()


async def test_resp3_push_messages_have_the_same_shapes(cluster):
    ch, sch = f"r3:{uid()}", f"r3s:{uid()}"
    async with _client(cluster, protocol=3) as client, client.pubsub() as ps:
        await ps.subscribe(ch)
        await ps.ssubscribe(sch)
        assert (await next_message(ps, "subscribe"))["channel"] == ch
        assert (await next_message(ps, "ssubscribe"))["channel"] == sch
        await client.publish(ch, "a")
        await client.spublish(sch, "b")
        assert await next_message(ps, "message") == {"type": "message", "pattern": None, "channel": ch, "data": "a"}
        assert await next_message(ps, "smessage") == {"type": "smessage", "pattern": None, "channel": sch, "data": "b"}


async def test_a_pubsub_dropped_without_aclose_is_closed_with_its_client(cluster):
    import gc

    before = other_tasks()
    client = _client(cluster)
    await client.pubsub().ssubscribe(f"orphan:{uid()}")  # no reference kept
    gc.collect()
    await client.aclose()
    assert other_tasks() == before


# ---------------------------------------------------------------- drop-in: as redis.asyncio's RedisCluster


@pytest_asyncio.fixture(params=KINDS)
async def r(request: pytest.FixtureRequest, cluster: Any) -> Any:
    """Each drop-in test runs twice: on redis.asyncio's RedisCluster and on ours."""
    client = await compared_client(request.param, cluster)
    yield client
    await client.aclose()

def msg(kind: str, channel: Any, data: Any) -> dict[str, Any]:
    return {"type": kind, "pattern": None, "channel": channel, "data": data}


async def collect(get: Any, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The next `n` messages from `get` (get_message or get_sharded_message)."""
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            m = await get(timeout=0.2)
            if m is not None:
                out.append(m)
    return out


async def test_pubsub_takes_the_node_positionally(r, cluster):
    ch = f"pos:{uid()}"
    port = cluster.primaries()[1]
    # as RedisCluster's pubsub(node=None, host=None, port=None)
    async with r.pubsub(r.get_node(cluster.host, port)) as ps:
        node = ps.get_pubsub_node()
        assert (node.host, node.port) == (cluster.host, port)
        assert node == r.get_node(cluster.host, port) == ps.node  # the client's node object for it
        await ps.subscribe(ch)
        assert await collect(ps.get_message, 1) == [msg("subscribe", ch, 1)]
        assert await r.publish(ch, "x", target_nodes=node) == 1


async def test_pubsub_refuses_a_node_not_in_the_map_at_once(r, cluster):
    with pytest.raises(RedisClusterException) as e:
        r.pubsub(node=ClusterNode(cluster.host, 2))
    assert f"{cluster.host}:2" in str(e.value)
    with pytest.raises(RedisClusterException):
        r.pubsub(host=cluster.host, port=2)
    with pytest.raises(DataError):
        r.pubsub(host=cluster.host)


async def test_get_redis_connection_is_the_pubsubs_own_connection_once_subscribed(r, cluster):
    node = r.get_node(cluster.host, cluster.primaries()[2])
    async with r.pubsub(node=node) as ps:
        assert ps.get_redis_connection() is None  # nothing connected before the first subscribe
        await ps.subscribe(f"conn:{uid()}")
        conn = ps.get_redis_connection()
        assert (conn.host, conn.port) == (node.host, node.port)


@pytest.mark.parametrize("unsubscribe", ["channel", "all"])
async def test_shard_subscribe_unsubscribe_and_subscribe_again_confirm_in_order(r, unsubscribe):
    ch = f"again:{uid()}"
    async with r.pubsub() as ps:
        await ps.ssubscribe(ch)
        await (ps.sunsubscribe() if unsubscribe == "all" else ps.sunsubscribe(ch))
        await ps.ssubscribe(ch)
        assert ps.subscribed
        assert await collect(ps.get_sharded_message, 3) == [
            msg("ssubscribe", ch, 1), msg("sunsubscribe", ch, 0), msg("ssubscribe", ch, 1)]
        assert ps.subscribed and list(ps.shard_channels) == [ch]
        assert await r.spublish(ch, "x") == 1
        assert await collect(ps.get_sharded_message, 1) == [msg("smessage", ch, "x")]  # no confirmation more


async def test_pending_unsubscribe_shard_channels_until_the_confirmation_is_read(r):
    ch = f"pend:{uid()}"
    async with r.pubsub() as ps:
        assert ps.pending_unsubscribe_shard_channels == set()
        await ps.ssubscribe(ch)
        assert await collect(ps.get_sharded_message, 1) == [msg("ssubscribe", ch, 1)]
        await ps.sunsubscribe(ch)
        assert ps.pending_unsubscribe_shard_channels == {ch}
        assert await collect(ps.get_sharded_message, 1) == [msg("sunsubscribe", ch, 0)]
        assert ps.pending_unsubscribe_shard_channels == set()


async def test_a_shard_channel_handler_may_ssubscribe_from_inside_it(r):
    tag = uid()
    first, second = f"{{{tag}}}:a", f"{{{tag}}}:b"  # one slot, so one connection and counts 1, 2
    ps = r.pubsub()
    calls: list[Any] = []

    async def handler(message: dict[str, Any]) -> None:
        calls.append(message["data"])
        if len(calls) == 1:
            await ps.ssubscribe(second)

    try:
        await ps.ssubscribe(**{first: handler})
        assert await collect(ps.get_sharded_message, 1) == [msg("ssubscribe", first, 1)]
        assert await r.spublish(first, "go") == 1
        returned = []
        async with asyncio.timeout(10):
            while not calls:
                returned.append(await ps.get_sharded_message(timeout=0.2))
        assert calls == ["go"] and set(returned) == {None}  # the call that ran the handler returns None
        assert await collect(ps.get_sharded_message, 1) == [msg("ssubscribe", second, 2)]  # to the next call
        assert await r.spublish(second, "hi") == 1
        assert await collect(ps.get_sharded_message, 1) == [msg("smessage", second, "hi")]
    finally:
        await ps.aclose()
