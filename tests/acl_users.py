"""ACL users of the kinds managed services hand out (issue 28), made on every node of a test cluster.

Each row is a user's ACL rules; `acl_user()` creates it (under a name of its own, so ACL LOG
entries are this test's) on every node and removes it after, with the keys the test wrote.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

import clusterpool
from waiting import poll

PASSWORD = "acl-test-secret"
PREFIX = "acl:"  # the prefix-limited user's keys, and every key these tests write

# row -> ACL rules (after `reset on >password &*`)
ROWS = {
    "no_nodes": ("~*", "+@all", "-cluster|nodes"),
    "no_shards": ("~*", "+@all", "-cluster|shards"),
    "no_shards_no_nodes": ("~*", "+@all", "-cluster|shards", "-cluster|nodes"),
    "prefix": (f"~{PREFIX}*", "+@all"),
    # reads, discovery and READONLY for replica connections; no COMMAND, INFO, PING or writes
    "read_only": ("~*", "-@all", "+@read", "+cluster", "+readonly"),
}
# not a row of the issue: a user the client cannot serve (no way to read the slot map)
NO_MAP = {"no_map": ("~*", "+@all", "-cluster|shards", "-cluster|slots")}
# nor this: a user whose connections may not be tracked (client-side caching stays off)
NO_TRACKING = {"no_tracking": ("~*", "+@all", "-client|tracking")}
WRITERS = tuple(r for r in ROWS if r != "read_only")
# row -> the discovery commands its ACL denies
DENIED = {"no_nodes": ("cluster|nodes",), "no_shards": ("cluster|shards",),
          "no_shards_no_nodes": ("cluster|shards", "cluster|nodes")}
KEYS = tuple(f"{PREFIX}{i}" for i in range(30))  # spread over every shard


# Fixtures for both clients' tests (imported by name; `row` can be overridden with parametrize):
# `user` is the connection keywords of a `row` user on the session cluster, `seeded` the KEYS' values.

@pytest.fixture(name="row", params=list(ROWS))
def row_fixture(request):
    return request.param


@pytest.fixture(name="user")
def user_fixture(cluster, row):
    with acl_user(cluster, row) as kw:
        yield kw


@pytest.fixture(name="seeded")
def seeded_fixture(cluster, user):
    return seed(cluster)


@contextmanager
def acl_user(cluster, row: str) -> Iterator[dict[str, str]]:
    """The connection keywords of a new user with `row`'s rules on every node of `cluster`; on exit
    the user is deleted everywhere and the keys under PREFIX are gone (the cluster as found)."""
    name = f"cpacl-{row}-{uuid.uuid4().hex[:8]}"
    ports = cluster.primaries() + cluster.replicas()
    try:
        for port in ports:
            with cluster.client(port) as r:
                rules = {**ROWS, **NO_MAP, **NO_TRACKING}[row]
                r.execute_command("ACL", "SETUSER", name, "reset", "on", f">{PASSWORD}", "&*", *rules)
        yield {"username": name, "password": PASSWORD}
    finally:
        for port in cluster.primaries() + cluster.replicas():
            with cluster.client(port) as r:
                r.execute_command("ACL", "DELUSER", name)
        drop_keys(cluster)


def seed(cluster) -> dict[str, str]:
    """KEYS written by the default user, readable on every replica when this returns."""
    values = {k: f"v-{k}" for k in KEYS}
    with clusterpool.ClusterClient(startup_nodes=cluster.startup_nodes, decode_responses=True) as c:
        c.mset_nonatomic(values)
    for primary in cluster.primaries():
        written = _offset(cluster, primary)
        for replica in cluster.replicas_of(primary):
            poll(lambda r=replica, w=written: _offset(cluster, r) >= w, what=f"{replica} to replicate the seeded keys")
    # Redis 7.0's CLUSTER SLOTS leaves out a replica until the answering node has heard (by gossip,
    # every node_timeout/2 at worst) that its offset is not 0: wait for that, so a client reading
    # the map from SLOTS knows the replicas (a state of the cluster, not of the client under test)
    poll(lambda: all(_slots_replicas(cluster, p) == set(cluster.replicas()) for p in cluster.ports),
         what="every node's CLUSTER SLOTS to list every replica")
    return values


def _slots_replicas(cluster, port: int) -> set[int]:
    with cluster.client(port) as r:
        return {int(node[1]) for entry in r.execute_command("CLUSTER", "SLOTS") for node in entry[3:]}


def _offset(cluster, port: int) -> int:
    with cluster.client(port) as r:
        return int(r.info("replication")["master_repl_offset"])


def drop_keys(cluster) -> None:
    with clusterpool.ClusterClient(startup_nodes=cluster.startup_nodes) as c:
        keys = list(c.scan_iter(match=f"{PREFIX}*", count=1000))
        for k in keys:
            c.delete(k)


def denials(cluster, username: str, command: str) -> dict[int, int]:
    """{port: how often `command` was refused to `username`} from each node's ACL LOG."""
    out = {}
    for port in cluster.primaries() + cluster.replicas():
        with cluster.client(port) as r:
            entries = r.acl_log(count=128)
        out[port] = sum(int(e["count"]) for e in entries
                        if e.get("username") == username and e.get("object") == command)
    return out
