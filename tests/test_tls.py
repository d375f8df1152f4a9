"""rediss:// against a real TLS-only cluster (tls-port, tls-cluster yes), certificates made with openssl."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import redis

from clusterpool.testing import find_redis_server, free_port_run
from clusterpool import ClusterClient
from waiting import poll

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    cert, key = str(d / "cert.pem"), str(d / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    base = free_port_run(3)
    ports = [base, base + 1, base + 2]
    procs = []
    for p in ports:
        nd = d / str(p)
        nd.mkdir()
        conf = nd / "redis.conf"
        conf.write_text("\n".join([
            "port 0", f"tls-port {p}", "bind 127.0.0.1", "cluster-enabled yes", "tls-cluster yes",
            "tls-replication yes", f"tls-cert-file {cert}", f"tls-key-file {key}", f"tls-ca-cert-file {cert}",
            "tls-auth-clients no", "cluster-node-timeout 2000", 'save ""', "appendonly no", f"dir {nd}",
            f"logfile {nd / 'redis.log'}",
        ]) + "\n")
        procs.append(subprocess.Popen([find_redis_server(), str(conf)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))

    def raw(p):
        return redis.Redis(host="127.0.0.1", port=p, ssl=True, ssl_ca_certs=cert, socket_timeout=2,
                           decode_responses=True)

    try:
        for p in ports:
            poll(lambda p=p: raw(p).ping(), timeout=15, what=f"TLS node {p}")
        thirds = [(0, 5460), (5461, 10922), (10923, 16383)]
        for p, (a, b) in zip(ports, thirds):
            raw(p).execute_command("CLUSTER", "ADDSLOTSRANGE", a, b)
            raw(p).execute_command("CLUSTER", "SET-CONFIG-EPOCH", ports.index(p) + 1)
        for p in ports[1:]:
            raw(ports[0]).execute_command("CLUSTER", "MEET", "127.0.0.1", p)
        poll(lambda: all("cluster_state:ok" in raw(p).execute_command("CLUSTER", "INFO") for p in ports), timeout=30,
             what="TLS cluster ok")
        yield ports, cert
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)


def test_rediss_url_reaches_a_tls_only_cluster(tls_cluster):
    ports, cert = tls_cluster
    with ClusterClient.from_url(f"rediss://127.0.0.1:{ports[0]}", ssl_ca_certs=cert) as client:
        for i in range(300):
            client.set(f"tls:{i}", i)
        assert client.mget_nonatomic([f"tls:{i}" for i in range(300)]) == [str(i).encode() for i in range(300)]
        assert {n.port for n in client.nodes()} == set(ports)
        assert client.dbsize() >= 300


def test_tls_with_an_unknown_ca_fails_with_a_clear_error(tls_cluster):
    ports, _ = tls_cluster
    with ClusterClient.from_url(f"rediss://127.0.0.1:{ports[0]}") as client, \
            pytest.raises(redis.exceptions.ConnectionError, match=f"127.0.0.1:{ports[0]}"):
        client.connect()
