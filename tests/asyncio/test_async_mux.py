"""The shared auto-pipelined connection (clusterpool.asyncio.mux) against a real cluster node."""

from __future__ import annotations

import asyncio
import random

import pytest
from async_helpers import fd_count, other_tasks, sockets_to, tag_on, until
from redis.exceptions import AuthenticationError, DataError, MovedError

from clusterpool.asyncio import CommandTimeoutError, LostConnectionError, MuxConnection, NodeSettings
from clusterpool.asyncio.errors import NOT_SENT
from clusterpool.asyncio.flushing import flusher_of
from clusterpool.errors import ConfigurationError
from clusterpool.slots import key_slot

pytestmark = pytest.mark.asyncio


def _primary(cluster) -> int:
    return cluster.primaries()[0]


async def _open(cluster, port: int | None = None, **kw) -> MuxConnection:
    port = port if port is not None else _primary(cluster)
    kw.setdefault("decode_responses", True)
    return await MuxConnection.open(NodeSettings.make("127.0.0.1", port, **kw))


@pytest.fixture
def write_counter(monkeypatch):
    """Counts writes handed to the transport per peer port (asyncio.StreamWriter's write and
    writelines, each one transport write), on any event loop (asyncio's own, uvloop)."""
    counts: dict[int, int] = {}

    def counted(original):
        def write(self, data):
            peer = self.get_extra_info("peername")
            if peer:
                counts[peer[1]] = counts.get(peer[1], 0) + 1
            return original(self, data)

        return write

    for name in ("write", "writelines"):
        monkeypatch.setattr(asyncio.StreamWriter, name, counted(getattr(asyncio.StreamWriter, name)))
    return counts


async def test_a_burst_of_commands_goes_out_in_one_socket_write(cluster, write_counter):
    port = _primary(cluster)
    mux = await _open(cluster, port)
    tag = tag_on(cluster, port)
    before = write_counter.get(port, 0)
    replies = await asyncio.gather(*(mux.execute("SET", f"{tag}:burst:{i}", i) for i in range(500)))
    assert replies == ["OK"] * 500
    assert write_counter.get(port, 0) - before == 1
    assert mux.stats().writes == 1
    await mux.aclose()


async def test_each_reply_goes_to_its_own_caller(cluster):
    port = _primary(cluster)
    mux = await _open(cluster, port)
    tag = tag_on(cluster, port)
    keys = [f"{tag}:own:{i}" for i in range(2000)]
    await asyncio.gather(*(mux.execute("SET", k, f"v-{k}") for k in keys))
    got = await asyncio.gather(*(mux.execute("GET", k) for k in keys))
    assert got == [f"v-{k}" for k in keys]
    await mux.aclose()


async def test_random_cancellations_and_timeouts_never_hand_a_reply_to_another_caller(cluster):
    port = _primary(cluster)
    mux = await _open(cluster, port)
    tag = tag_on(cluster, port)
    rng = random.Random(16)
    outcomes = {"ok": 0, "cancelled": 0, "timeout": 0}

    async def one(i: int) -> None:
        key, value = f"{tag}:rc:{i}", f"value-{i}-{rng.random()}"
        for _ in range(rng.randrange(3)):
            await asyncio.sleep(0)
        assert await mux.execute("SET", key, value) == "OK"
        got = await mux.execute("GET", key)
        assert got == value, (key, got)
        outcomes["ok"] += 1

    async def limited(i: int) -> None:
        mode = rng.randrange(3)
        try:
            if mode == 0:
                await asyncio.wait_for(one(i), timeout=rng.choice([0, 0.0001, 0.0005, 0.002]))
            elif mode == 1:
                await mux.execute("SET", f"{tag}:rct:{i}", i, timeout=rng.choice([0.00001, 0.0003, 0.003]))
                outcomes["ok"] += 1
            else:
                await one(i)
        except (TimeoutError, CommandTimeoutError):
            outcomes["timeout"] += 1

    for round_ in range(3):
        tasks = [asyncio.ensure_future(limited(round_ * 1000 + i)) for i in range(1000)]
        for _ in range(rng.randrange(1, 4)):
            await asyncio.sleep(0)
        for t in rng.sample(tasks, 300):
            t.cancel()
        for r in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(r, asyncio.CancelledError):
                outcomes["cancelled"] += 1
            elif isinstance(r, BaseException):
                raise r
    assert outcomes["ok"] > 0 and outcomes["cancelled"] > 0 and outcomes["timeout"] > 0, outcomes
    assert mux.usable
    await until(lambda: mux.pending == 0, what="abandoned replies to be read")
    s = mux.stats()
    assert s.dropped > 0 and s.skipped > 0 and s.replies == s.commands
    # the connection is still in sync: a fresh request/reply pair matches
    assert await mux.execute("SET", f"{tag}:after", "x") == "OK"
    assert await mux.execute("GET", f"{tag}:after") == "x"
    await mux.aclose()


async def test_a_command_cancelled_before_the_write_is_not_sent(cluster):
    port = _primary(cluster)
    mux = await _open(cluster, port)
    key = f"{tag_on(cluster, port)}:never"
    await mux.execute("DEL", key)
    fut = mux.submit(("INCR", key))
    fut.cancel()
    assert await mux.execute("GET", key) is None
    assert mux.stats().skipped == 1
    await mux.aclose()


async def test_a_timed_out_reply_is_dropped_and_the_connection_stays(cluster):
    port = _primary(cluster)
    mux = await _open(cluster, port)
    tag = tag_on(cluster, port)
    with pytest.raises(CommandTimeoutError) as info:
        await mux.execute("BLPOP", f"{tag}:empty", 0.5, timeout=0.01)
    assert info.value.sent is True
    await mux.execute("SET", f"{tag}:k", "mine")
    assert await mux.execute("GET", f"{tag}:k") == "mine"  # not BLPOP's late nil
    assert mux.usable and mux.stats().dropped == 1
    await mux.aclose()


async def test_an_error_reply_raises_in_its_caller_only(cluster):
    port = _primary(cluster)
    mux = await _open(cluster, port)
    other = next(p for p in cluster.primaries() if p != port)
    foreign = f"{tag_on(cluster, other)}:x"
    mine = f"{tag_on(cluster, port)}:x"
    results = await asyncio.gather(mux.execute("GET", foreign), mux.execute("SET", mine, 1), return_exceptions=True)
    assert isinstance(results[0], MovedError) and results[1] == "OK"
    assert mux.usable
    await mux.aclose()


async def test_bad_arguments_fail_before_anything_is_queued(cluster):
    mux = await _open(cluster)
    with pytest.raises(DataError):
        await mux.execute("SET", "k", {"not": "encodable"})
    assert mux.pending == 0 and mux.stats().commands == 0
    await mux.aclose()


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("decode", [False, True])
async def test_resp2_and_resp3_replies_with_and_without_decoding(cluster, protocol, decode):
    port = _primary(cluster)
    mux = await _open(cluster, port, protocol=protocol, decode_responses=decode)
    key = f"{tag_on(cluster, port)}:h"
    await mux.execute("DEL", key)
    await mux.execute("HSET", key, "f", "v")
    got = await mux.execute("HGETALL", key)
    f, v = ("f", "v") if decode else (b"f", b"v")
    assert got == ({f: v} if protocol == 3 else [f, v])
    await mux.aclose()


async def test_client_name_is_set_in_the_handshake(cluster):
    mux = await _open(cluster, client_name="mux-test")
    assert await mux.execute("CLIENT", "GETNAME") == "mux-test"
    await mux.aclose()


async def test_replica_connections_send_readonly(cluster):
    primary = _primary(cluster)
    replica = cluster.replicas_of(primary)[0]
    key = f"{tag_on(cluster, primary)}:ro"
    plain = await _open(cluster, replica)
    ro = await _open(cluster, replica, readonly=True)
    with pytest.raises(MovedError):
        await plain.execute("GET", key)
    assert await ro.execute("GET", key) is None
    await plain.aclose()
    await ro.aclose()


async def test_asking_is_written_back_to_back_with_its_command(fresh_cluster, write_counter):
    c = fresh_cluster
    src = c.primaries()[0]
    dst = next(p for p in c.primaries() if p != src)
    tag = tag_on(c, src)
    slot = key_slot(tag.strip("{}").encode())
    c.begin_migration(slot, dst)
    mux = await _open(c, dst)
    before = write_counter.get(dst, 0)
    # asked and unasked commands for the migrating slot interleaved in one batch: an ASKING
    # that lost its command to another one would turn an unasked command into a success
    calls = [mux.execute("SET", f"{tag}:ask:{i}", i, asking=i % 2 == 0) for i in range(200)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert write_counter.get(dst, 0) - before == 1
    for i, r in enumerate(results):
        if i % 2 == 0:
            assert r == "OK", (i, r)
        else:
            assert isinstance(r, MovedError), (i, r)
    await mux.aclose()


async def test_a_killed_node_fails_pending_commands_with_sent_or_not_sent(fresh_cluster):
    c = fresh_cluster
    port = c.primaries()[0]
    tag = tag_on(c, port)
    mux = await _open(c, port)
    errors: list[BaseException] = []
    stop = asyncio.Event()

    async def writer(i: int) -> None:
        n = 0
        while not stop.is_set():
            try:
                await mux.execute("SET", f"{tag}:kill:{i}:{n}", n)
            except LostConnectionError as e:
                errors.append(e)
                return
            n += 1

    tasks = [asyncio.ensure_future(writer(i)) for i in range(200)]
    await until(lambda: mux.stats().replies > 2000, what="load on the node")
    # a BLPOP holds the replies behind it, so commands are surely in flight at the kill
    blocked = asyncio.ensure_future(mux.execute("BLPOP", f"{tag}:none", 0, timeout=None))
    await until(lambda: mux.stats().commands > mux.stats().replies + 1, what="BLPOP written")
    await asyncio.to_thread(c.kill, port)
    await until(lambda: not mux.usable, what="the connection to notice")
    with pytest.raises(LostConnectionError) as late:
        await mux.execute("GET", f"{tag}:late")
    assert late.value.sent is False  # refused at once, nothing written
    stop.set()
    await asyncio.gather(*tasks)
    with pytest.raises(LostConnectionError) as held:
        await blocked
    assert held.value.sent is True
    assert len(errors) == 200
    assert any(e.sent for e in errors)  # written, reply lost: outcome unknown
    assert all(isinstance(e.sent, bool) and e.node == f"127.0.0.1:{port}" for e in errors)
    await mux.aclose()
    assert other_tasks() == set()
    assert sockets_to(port) == 0


async def test_aclose_fails_pending_commands_and_leaves_no_task_or_socket(cluster):
    fds = fd_count()
    port = _primary(cluster)
    mux = await _open(cluster, port)
    tag = tag_on(cluster, port)
    blocked = asyncio.ensure_future(mux.execute("BLPOP", f"{tag}:none", 0, timeout=None))
    await until(lambda: mux.stats().writes == 1, what="BLPOP written")
    queued = mux.submit(("GET", f"{tag}:q"))
    await mux.aclose()
    with pytest.raises(LostConnectionError) as sent:
        await blocked
    with pytest.raises(LostConnectionError) as unsent:
        await queued
    assert sent.value.sent is True and unsent.value.sent is False
    assert other_tasks() == set()
    assert fd_count() == fds


async def test_the_loops_count_of_awaited_replies_returns_to_none_after_replies_and_a_close(cluster):
    awaited = flusher_of(asyncio.get_running_loop())
    port = _primary(cluster)
    mux = await _open(cluster, port)
    tag = tag_on(cluster, port)
    await asyncio.gather(*(mux.execute("SET", f"{tag}:aw:{i}", i, asking=i % 2 == 0) for i in range(100)))
    assert await mux.submit_packed([mux.pack(("GET", f"{tag}:aw:{i}")) for i in range(10)]) == [str(i) for i in range(10)]
    assert awaited.awaited == 0
    blocked = asyncio.ensure_future(mux.execute("BLPOP", f"{tag}:none", 0, timeout=None))
    await until(lambda: awaited.awaited == 1, what="BLPOP written")
    await mux.aclose()
    with pytest.raises(LostConnectionError):
        await blocked
    assert awaited.awaited == 0


@pytest.mark.parametrize("args", [("MULTI",), ("watch", "k"), ("SUBSCRIBE", "ch"), ("CLIENT", "REPLY", "OFF"),
                                  ("client setname", "x"), (b"SELECT", 1), ("ASKING",)])
async def test_commands_that_change_connection_state_are_refused_before_sending(cluster, args):
    mux = await _open(cluster)
    with pytest.raises(ConfigurationError):
        await mux.execute(*args)
    assert mux.stats().commands == 0 and mux.usable
    assert await mux.execute("CLIENT", "GETNAME") is None  # other CLIENT subcommands pass
    await mux.aclose()


async def test_open_fails_fast_on_a_handshake_error_and_leaks_no_socket(cluster):
    port = _primary(cluster)
    before = sockets_to(port)
    with pytest.raises(AuthenticationError):  # no such user
        await MuxConnection.open(NodeSettings.make("127.0.0.1", port, username="nobody", password="wrong"))
    assert sockets_to(port) == before


async def test_unknown_connection_keywords_fail_before_any_io():
    with pytest.raises(ConfigurationError):
        NodeSettings.make("127.0.0.1", 7000, sockettimeout=1)
    with pytest.raises(ConfigurationError):
        NodeSettings.make("127.0.0.1", 7000, socket_timeout=-1)


async def test_settings_repr_hides_the_password():
    s = NodeSettings.make("127.0.0.1", 7000, password="hunter2", username="u")
    assert "hunter2" not in repr(s) and "hunter2" not in s.describe()


async def test_commands_past_the_settings_timeout_fail_and_the_connection_stays(cluster):
    port = _primary(cluster)
    mux = await _open(cluster, port, socket_timeout=0.2)
    tag = tag_on(cluster, port)
    for i in range(3):  # answered in time: the one timer re-arms for the next command
        assert await mux.execute("SET", f"{tag}:sw:{i}", i) == "OK"
    with pytest.raises(CommandTimeoutError) as info:
        await mux.execute("BLPOP", f"{tag}:sw:empty", 1)
    assert info.value.sent is True
    # queued behind BLPOP on the server, so waiting for ever; the late nil is not its reply
    assert await mux.execute("GET", f"{tag}:sw:1", timeout=None) == "1"
    assert mux.usable and mux.stats().dropped == 1
    await mux.aclose()


async def test_a_write_the_socket_cannot_take_at_once_is_drained_and_later_commands_follow_it(cluster):
    port = _primary(cluster)
    mux = await _open(cluster, port)
    tag = tag_on(cluster, port)
    big = "x" * (32 << 20)  # far more than the socket buffers: the transport keeps the rest
    first = asyncio.ensure_future(mux.execute("SET", f"{tag}:big", big))
    await until(lambda: mux.stats().writes >= 1, what="the big write")
    later = await asyncio.gather(*(mux.execute("SET", f"{tag}:after:{i}", i) for i in range(100)))
    assert await first == "OK" and later == ["OK"] * 100
    assert await mux.execute("STRLEN", f"{tag}:big") == len(big)
    await mux.execute("DEL", f"{tag}:big")
    await mux.aclose()


async def test_a_caller_cancelled_before_its_write_is_told_not_sent(cluster):
    """Cancelled before the write, a command is never written (the write skips it), and the
    CancelledError says so (errors.NOT_SENT, which by_deadline turns into sent=False); a
    command already written is not said to be unsent. What the server saw matches, every time."""
    port = _primary(cluster)
    mux = await _open(cluster, port)
    tag = tag_on(cluster, port)
    unsent = 0
    for i in range(50):
        key = f"{tag}:cut:{i}"
        t = asyncio.ensure_future(mux.execute("SET", key, "v"))
        await asyncio.sleep(0)  # the command is queued; the write is scheduled, not done
        t.cancel()
        with pytest.raises(asyncio.CancelledError) as e:
            await t
        await mux.execute("PING")  # a written SET's reply has arrived by now
        said_unsent = e.value.args == (NOT_SENT,)
        assert (await mux.execute("EXISTS", key) == 0) is said_unsent
        unsent += said_unsent
    await mux.aclose()
    assert unsent > 0
