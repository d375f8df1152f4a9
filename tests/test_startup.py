"""Start-up against a real cluster: the shipped command specs match the server, commands they
do not know are looked up lazily, and the handshake costs one HELLO per connection."""

from __future__ import annotations

import pytest
import redis

from clusterpool import ClusterClient
from clusterpool.commands import CommandTable, bundled_entries
from clusterpool.connection import command_info


def raw(cluster, port, **kw):
    return redis.Redis(host=cluster.host, port=port, socket_timeout=5, **kw)


def calls(cluster, cmd):
    """cmdstat_<cmd> calls summed over every node of the cluster."""
    total = 0
    for port in cluster.ports:
        with raw(cluster, port) as r:
            total += int(r.info("commandstats").get(f"cmdstat_{cmd}", {}).get("calls", 0))
    return total


def live_reply(cluster, protocol):
    with raw(cluster, cluster.primaries()[0], protocol=protocol) as r:
        conn = r.connection_pool.get_connection()
        try:
            conn.send_command("COMMAND")
            return conn.read_response()
        finally:
            r.connection_pool.release(conn)


@pytest.mark.parametrize("protocol", [2, 3])
def test_bundled_specs_match_the_servers_command_reply(cluster, protocol):
    live = CommandTable.from_reply(live_reply(cluster, protocol))
    bundled = CommandTable.bundled_with()
    names = []
    for entry in live_reply(cluster, protocol):
        top = entry[0].decode() if isinstance(entry[0], bytes) else entry[0]
        names.append(top)
        subs = entry[9] if len(entry) > 9 and entry[9] else []
        names.extend(s[0].decode() if isinstance(s[0], bytes) else s[0] for s in subs)
    differ = [n for n in names if live.get(n) != bundled.get(n)]
    assert len(names) > 300
    assert differ == []


def test_every_bundled_command_is_known_to_the_server(cluster):
    live = CommandTable.from_reply(live_reply(cluster, 3))
    assert [n for n in bundled_entries() if n not in live] == []


def test_command_info_of_a_command_missing_from_the_bundle_is_used(cluster):
    asked = []
    with raw(cluster, cluster.primaries()[0], protocol=3) as r:
        conn = r.connection_pool.get_connection()
        try:
            def fetch(name):
                asked.append(name)
                return command_info(conn, name)

            partial = {k: v for k, v in bundled_entries().items() if k != "object"}
            table = CommandTable(bundled=partial, fetch=fetch)
            info, argv = table.resolve(("OBJECT", "ENCODING", "k"))
            table.resolve(("OBJECT", "FREQ", "k"))
        finally:
            r.connection_pool.release(conn)
    assert info == CommandTable.bundled_with().get("object|encoding")
    assert info.keys(argv) == ["k"]
    assert asked == ["object"]


def test_unknown_command_is_looked_up_once_then_sent(cluster, startup_nodes):
    before = calls(cluster, "command|info")
    with ClusterClient(startup_nodes=startup_nodes) as c:
        for _ in range(2):
            with pytest.raises(redis.ResponseError, match="unknown command"):
                c.execute_command("NOSUCHCOMMAND", "x")
    assert calls(cluster, "command|info") - before == 1


def test_start_up_fetches_no_command_table(cluster, startup_nodes):
    before = calls(cluster, "command")
    with ClusterClient(startup_nodes=startup_nodes) as c:
        c.set("startup:k", "v")
        assert c.get("startup:k") == b"v"
        c.eval("return redis.call('get', KEYS[1])", 1, "startup:k")
    assert calls(cluster, "command") == before


def test_one_hello_per_connection(fresh_cluster):
    for port in fresh_cluster.ports:
        with raw(fresh_cluster, port) as r:
            r.config_resetstat()
    base = calls(fresh_cluster, "hello")  # the resets' own connections
    with ClusterClient(startup_nodes=fresh_cluster.startup_nodes, health_interval=3600) as c:
        for i in range(30):  # keys on every primary, reads on replicas too
            c.set(f"hello:{i}", i)
            c.reader.get(f"hello:{i}")
        opened = sum(p.created for p in c.stats().nodes)
        hellos = calls(fresh_cluster, "hello") - base - len(fresh_cluster.ports)  # minus calls()' own
    assert opened >= 6
    assert hellos == opened
