"""Bad input and misbehaving endpoints: a clear error or correct behaviour, never a hang or a leak."""

from __future__ import annotations

import os
import socket
import threading

import pytest
from redis import exceptions as rx

from clusterpool import ClusterClient, ClusterUnreachableError, SlotNotCoveredError
from waiting import poll


class BrokenServer:
    """A TCP endpoint that answers every connection with `reply` (or nothing) and closes."""

    def __init__(self, reply: bytes | None) -> None:
        self.reply = reply
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            try:
                conn.recv(65536)
                if self.reply is not None:
                    conn.sendall(self.reply)
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()
        for c in self._conns:
            c.close()
        self._thread.join(2)


@pytest.mark.parametrize("reply", [b"garbage\r\n", b"$-5\r\n", b"\x00\xff" * 8], ids=["text", "bad-length", "binary"])
def test_a_server_speaking_broken_resp_fails_fast_with_a_clear_error(reply):
    server = BrokenServer(reply)
    fds = len(os.listdir("/proc/self/fd"))
    try:
        client = ClusterClient("127.0.0.1", server.port)
        with pytest.raises(ClusterUnreachableError, match="does not speak the Redis protocol"):
            client.connect()
        client.close()
    finally:
        server.close()
    assert len(os.listdir("/proc/self/fd")) <= fds


def test_a_server_that_never_answers_fails_within_the_refresh_timeout():
    server = BrokenServer(None)
    try:
        client = ClusterClient("127.0.0.1", server.port)
        with pytest.raises(ClusterUnreachableError, match="127.0.0.1"):
            client.connect()
        client.close()
    finally:
        server.close()


def test_a_slot_nobody_serves_raises_slot_not_covered_before_sending(fresh_cluster):
    cluster = fresh_cluster
    with ClusterClient(startup_nodes=cluster.startup_nodes, max_redirections=4) as client:
        key = "uncovered:{x}"
        slot = client.slot(key)
        for port in cluster.ports:  # every node forgets the slot's owner
            r = cluster.client(port)
            r.execute_command("CLUSTER", "DELSLOTS", slot)
            r.close()
        poll(lambda: client.refresh().slot_table[slot] is None, what="slot to leave the map")
        with pytest.raises(SlotNotCoveredError, match=str(slot)) as info:
            client.get(key)
        assert isinstance(info.value, rx.SlotNotCoveredError)


def test_huge_values_round_trip(cluster):
    with ClusterClient(startup_nodes=cluster.startup_nodes) as client:
        value = os.urandom(32 * 1024 * 1024)
        assert client.set("huge:{1}", value)
        assert client.get("huge:{1}") == value
        pipe = client.pipeline()
        pipe.set("huge:{2}", value).get("huge:{2}")
        assert pipe.execute() == [True, value]
        client.delete("huge:{1}", "huge:{2}")


def test_binary_keys_route_and_round_trip(cluster):
    with ClusterClient(startup_nodes=cluster.startup_nodes) as client:
        keys = [bytes([i, 255 - i, 0, i]) for i in range(256)]
        assert all(client.set(k, k) for k in keys)
        assert client.mget_nonatomic(keys) == keys
        for k in keys[:16]:
            r = cluster.client(cluster.ports[0])
            assert client.slot(k) == int(r.execute_command("CLUSTER", "KEYSLOT", k))
            r.close()


def test_passwords_never_appear_in_errors_reprs_or_snapshots(cluster):
    secret = "s3cr3t-pw"
    with pytest.raises(Exception) as bad_url:
        ClusterClient.from_url(f"redis://user:{secret}@127.0.0.1:notaport")
    assert secret not in str(bad_url.value)
    client = ClusterClient.from_url(f"redis://default:{secret}@127.0.0.1:1")
    with pytest.raises(ClusterUnreachableError) as unreachable:
        client.connect()
    assert secret not in str(unreachable.value) and secret not in repr(client)
    client.close()
    def on_every_node(fn):
        for port in cluster.ports:
            r = cluster.client(port)
            try:
                fn(r)
            finally:
                r.close()

    on_every_node(lambda r: r.acl_setuser("cp-redact", enabled=True, passwords=[f"+{secret}"],
                                          commands=["+@all"], keys=["*"], channels=["*"]))
    try:
        with ClusterClient(startup_nodes=cluster.startup_nodes, username="cp-redact", password=secret) as ok:
            ok.set("redact:{1}", 1)
            shown = " ".join([repr(ok), repr(ok.topology()), repr(ok.stats()), repr(ok.nodes()),
                              str(ok.topology().as_dict())])
            assert secret not in shown
    finally:
        on_every_node(lambda r: r.acl_deluser("cp-redact"))
