"""Per-node pools against a real cluster: acquire timeout, server-side kills, fork."""

from __future__ import annotations

import os
import threading
import time
import uuid

import pytest
import redis

import clusterpool
from clusterpool import ClusterClient
from waiting import poll


@pytest.fixture
def client(cluster):
    c = ClusterClient(startup_nodes=cluster.startup_nodes)
    c.ping()
    yield c
    c.close()


def test_pool_timeout_names_the_node(cluster):
    with ClusterClient(
        startup_nodes=cluster.startup_nodes, max_connections=1, pool_timeout=0.2
    ) as c:
        key = "pt" + uuid.uuid4().hex
        c.set(key, 1)
        node = c.node_for(key)
        pool = c.core.state(node.name).pool
        held = pool.acquire()
        try:
            with pytest.raises(clusterpool.PoolTimeoutError) as ei:
                c.get(key)
            assert node.name in str(ei.value)
            assert isinstance(ei.value, redis.exceptions.ConnectionError)
        finally:
            pool.release(held)
        assert c.get(key) == b"1"  # the connection is free again
        assert c.stats().acquire_timeouts == 1


def test_client_kill_on_every_node_mid_traffic_surfaces_no_read_error(cluster, client):
    keys = [f"ck{uuid.uuid4().hex[:8]}:{i}" for i in range(60)]
    for k in keys:
        client.set(k, k)
    errors: list[BaseException] = []
    count = [0]
    stop = threading.Event()

    def reads():
        i = 0
        while not stop.is_set():
            k = keys[i % len(keys)]
            try:
                assert client.get(k) == k.encode()
            except Exception as e:  # noqa: BLE001
                errors.append(e)
            count[0] += 1
            i += 1

    t = threading.Thread(target=reads)
    t.start()
    killed = 0
    try:
        poll(lambda: count[0] >= 200, what="reads to run")
        for _ in range(3):
            for port in cluster.primaries() + cluster.replicas():
                with redis.Redis(host=cluster.host, port=port, socket_timeout=5) as r:
                    killed += r.client_kill_filter(_type="normal", skipme=True)
            start = count[0]
            poll(lambda start=start: count[0] >= start + 100, what="reads after CLIENT KILL")
    finally:
        stop.set()
        t.join(30)
    assert killed > 0  # the client's connections really were killed
    assert not errors, errors[:3]


def test_forked_child_works_and_parent_still_works(client):
    key = "fork" + uuid.uuid4().hex
    client.set(key, "parent")
    assert client.get(key) == b"parent"
    pid = os.fork()
    if pid == 0:  # child: must not share the parent's sockets or threads
        code = 1
        try:
            if client.get(key) == b"parent":
                client.set(key + ":child", "ok")
                code = 0
        except BaseException:  # noqa: BLE001
            code = 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + 30
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("forked child did not finish")
        time.sleep(0.05)
    assert os.waitstatus_to_exitcode(status) == 0
    assert client.get(key + ":child") == b"ok"
    for i in range(50):
        client.set(key, i)
        assert client.get(key) == str(i).encode()
