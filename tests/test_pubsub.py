"""ClusterPubSub against real clusters: classic and sharded delivery, failover of a shard, close()."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from clusterpool import ClusterClient, key_slot
from waiting import poll


def uid():
    return uuid.uuid4().hex[:10]


def next_message(ps, kind, timeout=10.0):
    """The next message of `kind` (others are skipped), polling get_message until a deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = ps.get_message(timeout=0.2)
        if m is not None and m["type"] == kind:
            return m
    raise AssertionError(f"no {kind} message within {timeout}s")


def deliver_until_received(ps, publish, channel, timeout=30.0):
    """Publish repeatedly until a message on `channel` arrives (messages sent while a
    subscription moves are lost, so one publish is not enough during a failover)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            publish()
        except redis.RedisError:
            pass  # the publisher itself may be mid-failover
        m = ps.get_message(timeout=0.2)
        if m is not None and m["type"] == "smessage" and m["channel"] == channel:
            return m
    raise AssertionError(f"{channel} not delivered within {timeout}s")


def channels_on_distinct_shards(cluster, prefix):
    """One channel name per primary (so per shard)."""
    owners = {}
    i = 0
    while len(owners) < len(cluster.primaries()):
        ch = f"{prefix}{i}"
        owners.setdefault(cluster.slot_owner(key_slot(ch.encode())), ch)
        i += 1
    return owners  # primary port -> channel


@pytest.fixture
def client(cluster):
    c = ClusterClient(startup_nodes=cluster.startup_nodes, decode_responses=True)
    yield c
    c.close()


# ---------------------------------------------------------------- classic


def test_subscribe_receives_publish(client):
    ch = f"news:{uid()}"
    with client.pubsub() as ps:
        ps.subscribe(ch)
        assert next_message(ps, "subscribe")["channel"] == ch
        client.publish(ch, "hello")
        m = next_message(ps, "message")
    assert m == {"type": "message", "pattern": None, "channel": ch, "data": "hello"}


def test_psubscribe_receives_matching_channels(client):
    base = f"ev:{uid()}"
    with client.pubsub(ignore_subscribe_messages=True) as ps:
        ps.psubscribe(f"{base}:*")
        poll(lambda: ps.subscribed, what="psubscribed")
        client.publish(f"{base}:one", "1")
        client.publish(f"{base}:two", "2")
        got = [next_message(ps, "pmessage") for _ in range(2)]
    # the two channels hash to different nodes, whose bus messages may reach the subscriber's
    # node in either order
    assert sorted((m["pattern"], m["channel"], m["data"]) for m in got) == [
        (f"{base}:*", f"{base}:one", "1"),
        (f"{base}:*", f"{base}:two", "2"),
    ]


def test_publish_reaches_subscriber_on_every_node(client, cluster):
    """PUBLISH goes to a random primary; the cluster bus broadcasts it to the subscriber's node."""
    ch = f"bc:{uid()}"
    with client.pubsub(ignore_subscribe_messages=True) as ps:
        ps.subscribe(ch)
        for port in cluster.primaries():
            client.publish(ch, str(port), target_nodes=f"{cluster.host}:{port}")
        got = [next_message(ps, "message")["data"] for _ in cluster.primaries()]
    assert sorted(got) == sorted(str(p) for p in cluster.primaries())


def test_handler_subscriptions_with_run_in_thread(client):
    ch = f"h:{uid()}"
    received = []
    ps = client.pubsub()
    ps.subscribe(**{ch: received.append})
    t = ps.run_in_thread(sleep_time=0.05, daemon=True)
    try:
        poll(lambda: client.publish(ch, "x") >= 0 and received, what="handler called")
    finally:
        t.stop()
        t.join(5)
    assert received[0]["data"] == "x"


# ---------------------------------------------------------------- sharded


def test_ssubscribe_spublish_across_shards(client, cluster):
    owners = channels_on_distinct_shards(cluster, f"s:{uid()}:")
    chans = list(owners.values())
    with client.pubsub(ignore_subscribe_messages=True) as ps:
        ps.ssubscribe(*chans)
        assert len(ps.nodes()["sharded"]) == len(owners)  # one connection per owner
        for ch in chans:
            assert client.spublish(ch, f"m-{ch}") == 1  # routed to the slot owner, where we listen
        got = {}
        while len(got) < len(chans):
            m = next_message(ps, "smessage")
            got[m["channel"]] = m
    assert got == {ch: {"type": "smessage", "pattern": None, "channel": ch, "data": f"m-{ch}"} for ch in chans}


def test_sunsubscribe_stops_delivery_and_releases_node(client, cluster):
    owners = channels_on_distinct_shards(cluster, f"u:{uid()}:")
    keep, drop = list(owners.values())[:2]
    with client.pubsub() as ps:
        ps.ssubscribe(keep, drop)
        ps.sunsubscribe(drop)
        assert next_message(ps, "sunsubscribe")["channel"] == drop
        assert set(ps.shard_channels) == {keep}
        poll(lambda: len(ps.nodes()["sharded"]) == 1, what="idle connection closed")
        assert client.spublish(drop, "gone") == 0
        client.spublish(keep, "here")
        assert next_message(ps, "smessage")["channel"] == keep


def test_sharded_message_is_bytes_without_decode_responses(cluster):
    """Without decode_responses, channel and data are bytes, as in redis-py."""
    ch = f"b:{uid()}"
    with ClusterClient(startup_nodes=cluster.startup_nodes) as client, client.pubsub() as ps:
        ps.ssubscribe(ch)
        assert next_message(ps, "ssubscribe")["channel"] == ch.encode()
        client.spublish(ch, b"\x00raw")
        m = next_message(ps, "smessage")
    assert m == {"type": "smessage", "pattern": None, "channel": ch.encode(), "data": b"\x00raw"}


def test_close_leaves_no_pubsub_connection(cluster):
    name = f"ps{uid()}"
    client = ClusterClient(startup_nodes=cluster.startup_nodes, client_name=name, decode_responses=True)
    try:
        owners = channels_on_distinct_shards(cluster, f"c:{uid()}:")

        def ours():
            out = []
            for port in cluster.ports:
                with cluster.client(port) as r:
                    out += [(port, c) for c in r.client_list() if c.get("name") == name
                            and ("P" in c.get("flags", "") or int(c.get("ssub", 0) or 0) > 0)]
            return out

        ps = client.pubsub()
        ps.subscribe("plain")
        ps.ssubscribe(*owners.values())
        poll(lambda: len({p for p, _ in ours()}) == len(owners), what="pubsub clients listed")
        ps.close()
        poll(lambda: ours() == [], what="no pubsub client of ours left")
        assert not ps.subscribed
    finally:
        client.close()


# ---------------------------------------------------------------- failover (destructive)


def _failover_case(fresh_cluster, break_shard):
    client = ClusterClient(startup_nodes=fresh_cluster.startup_nodes, decode_responses=True)
    publisher = ClusterClient(startup_nodes=fresh_cluster.startup_nodes, decode_responses=True)
    try:
        owners = channels_on_distinct_shards(fresh_cluster, "fo:")
        victim_primary, victim_ch = next(iter(owners.items()))
        other_ch = owners[[p for p in owners if p != victim_primary][0]]
        ps = client.pubsub(ignore_subscribe_messages=True)
        ps.ssubscribe(victim_ch, other_ch)
        deliver_until_received(ps, lambda: publisher.spublish(victim_ch, "before"), victim_ch)

        new_primary = break_shard(victim_primary)

        # a demoted primary still relays the shard's messages (it replicates the new one), so
        # delivery alone does not show the move: read on until the subscription has moved
        moved_to = f"{fresh_cluster.host}:{new_primary}"
        poll(lambda: ps.get_message(timeout=0.05) is None and moved_to in ps.nodes()["sharded"], 40,
             what="the shard subscription to move to the new primary")
        m = deliver_until_received(ps, lambda: publisher.spublish(victim_ch, "after"), victim_ch, timeout=40)
        assert m["data"] == "after"
        # the other shard's subscription is untouched
        deliver_until_received(ps, lambda: publisher.spublish(other_ch, "still"), other_ch)
        ps.close()
    finally:
        client.close()
        publisher.close()


@pytest.mark.slow
@pytest.mark.chaos
def test_sharded_subscription_survives_manual_failover(fresh_cluster):
    def manual(primary):
        replica = fresh_cluster.replicas_of(primary)[0]
        fresh_cluster.failover(replica)
        return replica

    _failover_case(fresh_cluster, manual)


@pytest.mark.slow
@pytest.mark.chaos
def test_sharded_subscription_survives_kill_of_owner(fresh_cluster):
    def kill(primary):
        fresh_cluster.kill(primary)
        return fresh_cluster.wait_promoted(primary)

    _failover_case(fresh_cluster, kill)


def test_closing_the_client_closes_its_pubsubs(cluster):
    client = ClusterClient(startup_nodes=cluster.startup_nodes, client_name="cp-close-pubsub")
    ps = client.pubsub()
    ps.subscribe("close-me")
    poll(lambda: ps.get_message(timeout=0.1), what="subscribe confirmation")
    client.close()

    def ours_left():
        total = 0
        for port in cluster.ports:
            r = cluster.client(port)
            try:
                total += sum(1 for c in r.client_list() if c.get("name") == "cp-close-pubsub")
            finally:
                r.close()
        return total

    poll(lambda: ours_left() == 0, what="pubsub connections closed")


@pytest.mark.chaos
def test_classic_subscription_moves_to_another_node_when_its_node_dies(fresh_cluster):
    c = fresh_cluster
    with ClusterClient(startup_nodes=c.startup_nodes, decode_responses=True, socket_timeout=1) as client:
        ps = client.pubsub(ignore_subscribe_messages=True)
        ps.subscribe("classic-move")
        poll(lambda: ps.nodes()["classic"], what="classic subscription placed")
        node = ps.nodes()["classic"][0]
        port = int(node.rsplit(":", 1)[1])
        c.kill(port)  # classic subscriptions sit on a primary
        c.wait_promoted(port)

        def delivered():
            client.publish("classic-move", "hello")
            msg = ps.get_message(timeout=0.3)
            return msg is not None and msg["data"] == "hello"

        poll(delivered, timeout=30, what="delivery after the classic node died")
        assert ps.nodes()["classic"] and ps.nodes()["classic"][0] != node
        ps.close()
