#!/usr/bin/env python3
"""Benchmark clusterpool against redis-py's RedisCluster and a plain one-node redis.Redis.

Runs all three clients side by side in one process against a local Redis
Cluster (started here with ``scripts/cluster.py``'s LocalCluster, loopback only,
or an existing one given with ``--url``) and prints a table of throughputs and
ratios. The plain ``redis.Redis`` talks to one primary only, with keys chosen so
that they live on that node: it is the floor no cluster client can beat by much.

Within each repetition the clients run one after the other (A, B, C, A, B, C, ...)
so that machine noise hits them all alike; the median of ``--repeat`` runs is
reported.

    .venv/bin/python scripts/bench.py                 # full run (a few minutes)
    .venv/bin/python scripts/bench.py --quick         # smoke test (< 30 s)
    .venv/bin/python scripts/bench.py --only seq,mget --repeat 3
    .venv/bin/python scripts/bench.py --json out.json # also write JSON ("-" = stdout)
    .venv/bin/python scripts/bench.py --profile       # + cProfile of 20k clusterpool GETs

Scenarios (``--only`` takes a comma-separated list): seq, threads, replica,
pipeline, mget, construct, keyslot, memory, otel (GETs with clusterpool.otel off, on
with OpenTelemetry's no-op providers, and on with the SDK's; needs the otel extra),
cache (client-side caching: hits vs uncached GETs, glide's cached GET, a miss's cost), hedge
(hedged reads with late replicas, on a cluster of its own: scripts/bench_hedge.py).

Two more columns appear when they can: valkey-glide's sync client
(``pip install "redis-clusterpool[bench]"``, package ``valkey-glide-sync``) in seq,
pipeline (its non-atomic ClusterBatch) and construct; and ``redis-benchmark``
(the C client, when the binary is installed) against the plain client's node
in seq and threads: the wire's limit for one (or 16) connections. seq also
runs a bare Python socket + hiredis loop on that node ("raw socket"): what
no Python client can beat.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import signal
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for p in (HERE, ROOT):
    if p not in sys.path:
        sys.path.insert(0, p)

import redis  # noqa: E402
import redis.crc  # noqa: E402
from redis.cluster import ClusterNode, RedisCluster  # noqa: E402

import clusterpool  # noqa: E402
from clusterpool import CacheConfig, ClusterClient  # noqa: E402
from clusterpool.slots import key_slot  # noqa: E402
from cluster import LocalCluster  # noqa: E402

SCENARIOS = ("seq", "threads", "replica", "pipeline", "mget", "construct", "keyslot", "memory", "otel", "cache", "hedge")
OTEL_OFF, OTEL_NOOP, OTEL_SDK = "otel off", "otel no-op", "otel sdk"
CP, RC, PLAIN = "clusterpool", "RedisCluster", "plain Redis"
GLIDE, WIRE = "glide", "redis-benchmark"
RAW = "raw socket"  # a bare Python socket + hiredis loop: no client
NA = "n/a (not implemented)"
SOCKET_TIMEOUT = 10.0
VALUE = b"x" * 32

# target ratios: scenario -> [(label, ratio key, comparison, threshold)]; a target whose
# ratio could not be measured (no glide, no redis-benchmark) shows as n/a
TARGETS: dict[str, list[tuple[str, str, str, float]]] = {
    "seq": [("cp/plain >= 1.0", "cp/plain", ">=", 1.0),
            ("cp/redis-benchmark >= 0.6", "cp/wire", ">=", 0.6)],
    "threads": [("cp/plain >= 1.0", "cp/plain", ">=", 1.0)],
    "replica": [("replica/primary >= 0.95", "replica/primary", ">=", 0.95)],
    "pipeline": [("cp/plain >= 0.9", "cp/plain", ">=", 0.9),
                 ("cp/glide >= 1.1", "cp/glide", ">=", 1.1)],
    "mget": [("cp/rc >= 2", "cp/rc", ">=", 2.0)],
    "construct": [("cp/rc <= 0.5", "cp/rc", "<=", 0.5),
                  ("cp/glide <= 1.0", "cp/glide", "<=", 1.0),
                  ("cp/plain <= 2.5", "cp/plain", "<=", 2.5)],
    "keyslot": [("cp/redis.crc >= 1.0", "cp/redis.crc", ">=", 1.0)],
    "cache": [("hit/uncached >= 30", "hit/uncached", ">=", 30.0),
              ("hit/glide cached >= 10", "hit/glide", ">=", 10.0),
              ("miss/no cache >= 0.95", "miss/no cache", ">=", 0.95)],
    "hedge": [("hedged/healthy throughput >= 0.97", "hedge/healthy", ">=", 0.97),
              ("tail+hedge p99 <= 2x healthy", "tail+hedge/healthy p99", "<=", 2.0)],
}
REDIS_BENCHMARK = "/usr/bin/redis-benchmark"


def _load_glide() -> Any:
    """valkey-glide's sync client module, or None when it is not installed."""
    try:
        import glide_sync
    except ImportError:
        return None
    return glide_sync


glide = _load_glide()


def find_redis_benchmark() -> str | None:
    import shutil

    path = shutil.which("redis-benchmark") or REDIS_BENCHMARK
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


def wire_ops(binary: str, host: str, port: int, key: str, n: int, clients: int = 1) -> float:
    """redis-benchmark's SET then GET of `key` (n/2 each, `clients` connections), as the
    ops/s of the same alternating mix: n / (time of the SETs + time of the GETs)."""
    total = 0.0
    half = max(n // 2, 1)
    for cmd in (["SET", key, VALUE.decode()], ["GET", key]):
        out = subprocess.run(
            [binary, "-h", host, "-p", str(port), "-c", str(clients), "-n", str(half), "--csv", "-q", *cmd],
            capture_output=True, text=True, timeout=300, check=True,
        ).stdout
        rows = [line for line in out.splitlines() if line.startswith('"') and not line.startswith('"test"')]
        if not rows:
            raise RuntimeError(f"redis-benchmark printed no result: {out!r}")
        rps = float(rows[-1].split('","')[1])
        total += half / rps
    return 2 * half / total


# --------------------------------------------------------------------------- machine


def _version_of(mod: str) -> str:
    try:
        from importlib.metadata import version

        return version(mod)
    except Exception:  # noqa: BLE001
        return "not installed"


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    server = "?"
    try:
        out = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
        server = next((t[2:] for t in out.split() if t.startswith("v=")), out.strip() or "?")
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "redis-py": redis.__version__,
        "hiredis": _version_of("hiredis"),
        "redis-server": server,
        "clusterpool": getattr(clusterpool, "__version__", "?"),
        "glide": _version_of("valkey-glide-sync") if glide is not None else "not installed",
        "redis-benchmark": find_redis_benchmark() or "not installed",
        "platform": platform.platform(),
    }


# --------------------------------------------------------------------------- clients


class Env:
    """The cluster, the three clients and the key sets."""

    def __init__(self, cluster: LocalCluster, nkeys: int):
        self.cluster = cluster
        self.nodes = cluster.startup_nodes
        primaries = cluster.primaries()
        self.plain_port = primaries[0]
        self.plain_host = cluster.host
        owned = set(cluster.slots_of(self.plain_port))
        # keys spread over every slot (cluster clients) and keys of one node (plain Redis)
        self.keys = [f"bench:{i}" for i in range(nkeys)]
        self.plain_keys: list[str] = []
        i = 0
        while len(self.plain_keys) < nkeys:
            k = f"bench:{i}"
            if key_slot(k.encode()) in owned:
                self.plain_keys.append(k)
            i += 1
        self.owned = owned
        self.cp = self.new_cp()
        self.rc = self.new_rc()
        self.plain = self.new_plain()
        self.glide = self.new_glide() if glide is not None else None
        self.wire = find_redis_benchmark()

    def new_cp(self, **kw: Any) -> ClusterClient:
        return ClusterClient(startup_nodes=self.nodes, socket_timeout=SOCKET_TIMEOUT, **kw)

    def new_rc(self, **kw: Any) -> RedisCluster:
        return RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in self.nodes],
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=2.0,
            **kw,
        )

    def new_plain(self, **kw: Any) -> redis.Redis:
        return redis.Redis(
            host=self.plain_host,
            port=self.plain_port,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=2.0,
            **kw,
        )

    def new_glide(self) -> Any:
        """valkey-glide's sync cluster client (its own Rust core, one multiplexed connection per node)."""
        cfg = glide.GlideClusterClientConfiguration(
            [glide.NodeAddress(h, p) for h, p in self.nodes], request_timeout=int(SOCKET_TIMEOUT * 1000)
        )
        return glide.GlideClusterClient.create(cfg)

    def clients(self) -> list[tuple[str, Any, list[str]]]:
        return [(CP, self.cp, self.keys), (RC, self.rc, self.keys), (PLAIN, self.plain, self.plain_keys)]

    def with_glide(self) -> list[tuple[str, Any, list[str]]]:
        extra = [(GLIDE, self.glide, self.keys)] if self.glide is not None else []
        return self.clients() + extra

    def close(self) -> None:
        for c in (self.cp, self.rc, self.plain, self.glide):
            with contextlib.suppress(Exception):
                c.close()


def rc_connections(rc: RedisCluster) -> int:
    total = 0
    for node in rc.get_nodes():
        pool = getattr(getattr(node, "redis_connection", None), "connection_pool", None)
        total += _pool_connections(pool)
    return total


def _pool_connections(pool: Any) -> int:
    if pool is None:
        return 0
    return len(getattr(pool, "_available_connections", ())) + len(getattr(pool, "_in_use_connections", ()))


def connections(name: str, client: Any) -> int | None:
    try:
        if name == CP:
            return int(client.stats().total_connections)
        if name == RC:
            return rc_connections(client)
        return _pool_connections(client.connection_pool)
    except Exception:  # noqa: BLE001
        return None


# --------------------------------------------------------------------------- workloads


def seq_ops(client: Any, keys: list[str], n: int) -> float:
    """Alternate SET / GET over varied keys; return ops/s."""
    k = len(keys)
    s, g = client.set, client.get
    t0 = time.perf_counter()
    for i in range(n):
        key = keys[(i >> 1) % k]
        if i & 1:
            g(key)
        else:
            s(key, VALUE)
    return n / (time.perf_counter() - t0)


def raw_socket_ops(host: str, port: int, keys: list[str], n: int) -> float:
    """The same alternating SET/GET over a bare socket + hiredis loop (no client at all): the
    floor for any Python client, next to redis-benchmark's for a C one."""
    import socket

    import hiredis

    sock = socket.create_connection((host, port), timeout=SOCKET_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader, buf, k = hiredis.Reader(), bytearray(65536), len(keys)
    pack = hiredis.pack_command
    try:
        t0 = time.perf_counter()
        for i in range(n):
            key = keys[(i >> 1) % k]
            sock.sendall(pack(("GET", key)) if i & 1 else pack(("SET", key, VALUE)))
            reply = reader.gets()
            while reply is False:
                got = sock.recv_into(buf)
                if not got:
                    raise ConnectionError("server closed the connection")
                reader.feed(buf, 0, got)
                reply = reader.gets()
        return n / (time.perf_counter() - t0)
    finally:
        sock.close()


def get_ops(get: Callable[[Any], Any], keys: list[str], n: int) -> float:
    k = len(keys)
    t0 = time.perf_counter()
    for i in range(n):
        get(keys[i % k])
    return n / (time.perf_counter() - t0)


def threaded_ops(client: Any, keys: list[str], total: int, nthreads: int = 16) -> float:
    per = max(total // nthreads, 1)
    barrier = threading.Barrier(nthreads + 1)
    errors: list[BaseException] = []
    k = len(keys)

    def work(tid: int) -> None:
        s, g = client.set, client.get
        off = tid * 7919
        try:
            barrier.wait(30)
            for i in range(per):
                key = keys[(off + (i >> 1)) % k]
                if i & 1:
                    g(key)
                else:
                    s(key, VALUE)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,), daemon=True) for t in range(nthreads)]
    for t in threads:
        t.start()
    barrier.wait(30)
    t0 = time.perf_counter()
    for t in threads:
        t.join(300)
        if t.is_alive():
            raise TimeoutError("benchmark thread did not finish in 300 s")
    dt = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return per * nthreads / dt


def make_pipeline(name: str, client: Any) -> Any:
    if name == GLIDE:
        return _GlideBatch(client)
    if name == CP:
        try:
            return client.pipeline(transaction=False)
        except TypeError:
            return client.pipeline()
    if name == RC:
        return client.pipeline()
    return client.pipeline(transaction=False)


class _GlideBatch:
    """glide's non-atomic ClusterBatch behind the pipeline interface the workload uses."""

    def __init__(self, client: Any):
        self.client = client
        self.batch = glide.ClusterBatch(is_atomic=False)
        self.set, self.get = self.batch.set, self.batch.get

    def execute(self) -> list[Any]:
        return self.client.exec(self.batch, raise_on_error=True)

    def reset(self) -> None:
        pass


def pipeline_run(name: str, client: Any, keys: list[str], size: int) -> float:
    """One pipeline of `size` commands (alternating SET/GET); return commands/s."""
    t0 = time.perf_counter()
    pipe = make_pipeline(name, client)
    k = len(keys)
    for i in range(size):
        key = keys[(i >> 1) % k]
        if i & 1:
            pipe.get(key)
        else:
            pipe.set(key, VALUE)
    res = pipe.execute()
    dt = time.perf_counter() - t0
    if len(res) != size:
        raise RuntimeError(f"{name} pipeline returned {len(res)} results for {size} commands")
    with contextlib.suppress(Exception):
        pipe.reset()
    return size / dt


def mget_calls(client: Any, batches: list[list[str]], n: int) -> float:
    mg = client.mget_nonatomic
    nb = len(batches)
    t0 = time.perf_counter()
    for i in range(n):
        r = mg(batches[i % nb])
        if len(r) != len(batches[i % nb]):
            raise RuntimeError("mget_nonatomic returned a wrong number of values")
    return n / (time.perf_counter() - t0)


# --------------------------------------------------------------------------- runner


class Bench:
    def __init__(self, env: Env, args: argparse.Namespace):
        self.env = env
        self.args = args
        self.repeat = args.repeat
        self.ops = args.ops
        self.results: dict[str, dict[str, Any]] = {}

    def log(self, msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    def record(self, scenario: str, title: str, unit: str, samples: dict[str, list[float]],
               ratios: dict[str, tuple[str, str]], higher_is_better: bool = True,
               extra: dict[str, Any] | None = None, na: dict[str, str] | None = None) -> None:
        med = {k: statistics.median(v) for k, v in samples.items() if v}
        out_ratios = {}
        for rname, (a, b) in ratios.items():
            sa, sb = samples.get(a) or [], samples.get(b) or []
            if sa and len(sa) == len(sb) and all(sb):
                # median of the per-repetition ratios: the clients of one repetition ran
                # back to back, so they share that moment's machine noise
                out_ratios[rname] = statistics.median(x / y for x, y in zip(sa, sb))
            elif a in med and b in med and med[b]:
                out_ratios[rname] = med[a] / med[b]
        entry: dict[str, Any] = {
            "title": title,
            "unit": unit,
            "higher_is_better": higher_is_better,
            "median": med,
            "samples": samples,
            "ratios": out_ratios,
            "na": na or {},
            "extra": extra or {},
        }
        targets = []
        for label, rkey, op, thr in TARGETS.get(scenario, []):
            val = out_ratios.get(rkey)
            met = None if val is None else (val >= thr if op == ">=" else val <= thr)
            targets.append({"target": label, "ratio": val, "met": met})
        if targets:
            entry["targets"] = targets
        self.results[scenario] = entry
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in med.items())
        rs = ", ".join(f"{k}={v:.2f}x" for k, v in out_ratios.items())
        self.log(f"  -> {shown}; {rs}")

    # ---- scenarios ----------------------------------------------------------------

    def warm(self) -> None:
        for _name, c, keys in self.env.clients():
            seq_ops(c, keys, 400)
        with contextlib.suppress(Exception):
            reader = self.env.cp.reader
            for k in self.env.keys[:200]:
                reader.get(k)

    def seq(self) -> None:
        n = self.ops
        self.log(f"seq: {n} alternating SET/GET, 1 thread, x{self.repeat}")
        env = self.env
        clients = env.with_glide()
        samples: dict[str, list[float]] = {name: [] for name, _, _ in clients}
        if env.wire:
            samples[WIRE] = []
        samples[RAW] = []
        for _ in range(self.repeat):
            for name, c, keys in clients:
                samples[name].append(seq_ops(c, keys, n))
            if env.wire:
                samples[WIRE].append(wire_ops(env.wire, env.plain_host, env.plain_port, env.plain_keys[0], n))
            samples[RAW].append(raw_socket_ops(env.plain_host, env.plain_port, env.plain_keys, n))
        self.record("seq", "sequential GET/SET, 1 thread", "ops/s", samples,
                    {"cp/plain": (CP, PLAIN), "cp/rc": (CP, RC), "cp/glide": (CP, GLIDE), "cp/wire": (CP, WIRE),
                     "raw/wire": (RAW, WIRE)})

    def threads(self) -> None:
        n = self.ops
        self.log(f"threads: {n} ops over 16 threads sharing one client, x{self.repeat}")
        env = self.env
        samples: dict[str, list[float]] = {CP: [], RC: [], PLAIN: []}
        if env.wire:
            samples[WIRE] = []
        for _ in range(self.repeat):
            for name, c, keys in env.clients():
                samples[name].append(threaded_ops(c, keys, n, 16))
            if env.wire:
                samples[WIRE].append(wire_ops(env.wire, env.plain_host, env.plain_port, env.plain_keys[0], n, 16))
        conns = {name: connections(name, c) for name, c, _ in env.clients()}
        self.record("threads", "16 threads sharing one client", "ops/s", samples,
                    {"cp/plain": (CP, PLAIN), "cp/rc": (CP, RC), "cp/wire": (CP, WIRE)},
                    extra={"connections_after": conns})

    def replica(self) -> None:
        n = self.ops
        self.log(f"replica: {n} GETs via client.reader vs primary, x{self.repeat}")
        env = self.env
        cp = env.cp
        reader = cp.reader
        # make sure the keys exist and have reached the replicas
        for k in env.keys:
            cp.set(k, VALUE)
        time.sleep(0.5)  # let replication catch up (a miss would still be a valid read)
        samples: dict[str, list[float]] = {"replica": [], "primary": []}
        for _ in range(self.repeat):
            samples["primary"].append(get_ops(cp.get, env.keys, n))
            samples["replica"].append(get_ops(reader.get, env.keys, n))
        self.record("replica", "replica reads, 1 thread (clusterpool)", "ops/s", samples,
                    {"replica/primary": ("replica", "primary")})

    def cache(self) -> None:
        """Client-side caching: GET hits on 100 hot keys vs the same GETs uncached, glide's cached
        GET (server-assisted), and the cost of a miss (distinct keys, cache emptied each round)."""
        n = self.ops
        self.log(f"cache: {n} GETs uncached, {n * 20} cached hits, {n} misses, 1 thread, x{self.repeat}")
        env = self.env
        hot = env.keys[:100]
        for k in hot:
            env.cp.set(k, VALUE)
        cached = env.new_cp(cache_config=CacheConfig(max_size=2 * n + 1000))
        deadline = time.monotonic() + 15
        while cached.stats().cache.entries < len(hot) and time.monotonic() < deadline:  # links come up
            for k in hot:
                cached.get(k)
        g_cached = None
        if glide is not None:
            cfg = glide.GlideClusterClientConfiguration(
                [glide.NodeAddress(h, p) for h, p in env.nodes], request_timeout=int(SOCKET_TIMEOUT * 1000),
                client_side_cache=glide.ClientSideCache("bench", max_cache_kb=65536, entry_ttl_ms=600_000,
                                                        server_assisted=True))
            g_cached = glide.GlideClusterClient.create(cfg)
            for k in hot:
                g_cached.get(k)
        misses = [f"bench:miss:{i}" for i in range(n)]
        plain_cp = env.cp
        samples: dict[str, list[float]] = {"uncached": [], "hit": [], "miss": [], "no cache": []}
        if g_cached is not None:
            samples["glide"] = []
        try:
            for _ in range(self.repeat):
                samples["uncached"].append(get_ops(plain_cp.get, hot, n))
                samples["hit"].append(get_ops(cached.get, hot, n * 20))
                if g_cached is not None:
                    samples["glide"].append(get_ops(g_cached.get, hot, n))
                cached.cache_flush()
                samples["miss"].append(get_ops(cached.get, misses, n))
                samples["no cache"].append(get_ops(plain_cp.get, misses, n))
            stats = cached.stats().cache
        finally:
            cached.close()
            if g_cached is not None:
                g_cached.close()
        na = {} if g_cached is not None else {"glide": "valkey-glide-sync not installed"}
        self.record("cache", "client-side caching, GET, 1 thread", "ops/s", samples,
                    {"hit/uncached": ("hit", "uncached"), "hit/glide": ("hit", "glide"),
                     "miss/no cache": ("miss", "no cache")},
                    extra={"cache": str(stats)}, na=na)

    def pipeline(self) -> None:
        size = self.args.pipeline_size
        self.log(f"pipeline: {size} commands per pipeline, x{self.repeat}")
        na = {}
        if not hasattr(self.env.cp, "pipeline"):
            na[CP] = NA
            print(f"pipeline: clusterpool {NA}")
        env = self.env
        # keys over every slot for the cluster clients, one node's keys for plain Redis
        keys = [f"pipe:{i}" for i in range(size)]
        plain_keys = [k for k in (f"pipe:{i}" for i in range(size * 8)) if key_slot(k.encode()) in env.owned]
        plain_keys = plain_keys[:size]
        samples: dict[str, list[float]] = {name: [] for name, _, _ in env.with_glide()}
        if CP in na:
            del samples[CP]
        clients = [(n, c, plain_keys if n == PLAIN else keys) for n, c, _ in env.with_glide() if n not in na]
        for name, c, ks in clients:  # warm-up
            try:
                pipeline_run(name, c, ks, 200)
            except Exception as e:  # noqa: BLE001
                if name != CP:
                    raise
                na[CP] = f"error: {e!r}"
                print(f"pipeline: clusterpool failed: {e!r}")
                samples.pop(CP, None)
        clients = [x for x in clients if x[0] not in na]
        for _ in range(self.repeat):
            for name, c, ks in clients:
                samples[name].append(pipeline_run(name, c, ks, size))
        self.record("pipeline", f"{size:,}-command pipeline over all slots", "cmds/s", samples,
                    {"cp/plain": (CP, PLAIN), "cp/rc": (CP, RC), "cp/glide": (CP, GLIDE)}, na=na)

    def mget(self) -> None:
        calls = max(self.ops // 100, 20)
        self.log(f"mget: {calls} mget_nonatomic calls of 100 keys across slots, x{self.repeat}")
        env = self.env
        na = {}
        if not hasattr(env.cp, "mget_nonatomic"):
            na[CP] = NA
            print(f"mget: clusterpool {NA}")
        keys = env.keys
        batches = [[keys[(b * 100 + j * 37) % len(keys)] for j in range(100)] for b in range(16)]
        clients = [(CP, env.cp), (RC, env.rc)]
        clients = [x for x in clients if x[0] not in na]
        samples: dict[str, list[float]] = {n: [] for n, _ in clients}
        for name, c in list(clients):
            try:
                mget_calls(c, batches, 5)
            except Exception as e:  # noqa: BLE001
                if name != CP:
                    raise
                na[CP] = f"error: {e!r}"
                print(f"mget: clusterpool failed: {e!r}")
                samples.pop(CP, None)
                clients.remove((name, c))
        for _ in range(self.repeat):
            for name, c in clients:
                samples[name].append(mget_calls(c, batches, calls))
        self.record("mget", "MGET of 100 keys across slots (mget_nonatomic)", "calls/s", samples,
                    {"cp/rc": (CP, RC)}, na=na)

    def construct(self) -> None:
        n = self.args.construct
        self.log(f"construct: {n} fresh clients each (construct + first GET + close), x{self.repeat}")
        env = self.env
        makers = [(CP, env.new_cp), (RC, env.new_rc), (PLAIN, env.new_plain)]
        if env.glide is not None:
            makers.append((GLIDE, env.new_glide))
        samples: dict[str, list[float]] = {name: [] for name, _ in makers}
        key = {CP: env.keys[0], RC: env.keys[0], PLAIN: env.plain_keys[0], GLIDE: env.keys[0]}
        for _ in range(self.repeat):
            per: dict[str, list[float]] = {name: [] for name, _ in makers}
            for _i in range(n):
                for name, mk in makers:
                    t0 = time.perf_counter()
                    c = mk()
                    try:
                        c.get(key[name])
                        per[name].append((time.perf_counter() - t0) * 1000)
                    finally:
                        c.close()
            for name in per:
                samples[name].append(statistics.median(per[name]))
        self.record("construct", "client construction + first command", "ms", samples,
                    {"cp/rc": (CP, RC), "cp/plain": (CP, PLAIN), "cp/glide": (CP, GLIDE)},
                    higher_is_better=False)

    def keyslot(self) -> None:
        n = self.args.keyslot_keys
        self.log(f"keyslot: {n:,} pre-encoded keys, x{self.repeat}")
        keys = [f"user:{i}:profile".encode() for i in range(n)]
        # every 10th key carries a hash tag
        for i in range(0, n, 10):
            keys[i] = f"{{user:{i}}}:profile".encode()
        fns = [(CP, key_slot), ("redis.crc", redis.crc.key_slot)]
        if any(key_slot(k) != redis.crc.key_slot(k) for k in keys[:20000]):
            raise RuntimeError("clusterpool key_slot disagrees with redis.crc.key_slot")
        samples: dict[str, list[float]] = {CP: [], "redis.crc": []}
        sink = collections.deque(maxlen=0)
        for _ in range(self.repeat):
            for name, fn in fns:
                t0 = time.perf_counter()
                sink.extend(map(fn, keys))
                samples[name].append(n / (time.perf_counter() - t0))
        self.record("keyslot", f"key -> slot, {n:,} keys", "keys/s", samples,
                    {"cp/redis.crc": (CP, "redis.crc")})

    def otel(self) -> None:
        """Single GETs on three clients: never instrumented (the hot path's one `is None`
        check), instrumented with the API's no-op providers, and with the SDK's (spans are
        recorded, then dropped: no exporter; metrics aggregated, never read)."""
        n = self.ops
        self.log(f"otel: {n} GETs, clusterpool.otel off / no-op providers / SDK providers, x{self.repeat}")
        try:
            from opentelemetry.metrics import NoOpMeterProvider
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import InMemoryMetricReader
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.trace import NoOpTracerProvider

            from clusterpool import otel
        except ImportError:
            self.log("  -> skipped: pip install 'redis-clusterpool[otel]' opentelemetry-sdk")
            return
        env = self.env
        off, noop, sdk = env.new_cp(), env.new_cp(), env.new_cp()
        otel.instrument(noop, NoOpTracerProvider(), NoOpMeterProvider())
        otel.instrument(sdk, TracerProvider(), MeterProvider(metric_readers=[InMemoryMetricReader()]))
        clients = [(OTEL_OFF, off), (OTEL_NOOP, noop), (OTEL_SDK, sdk)]
        samples: dict[str, list[float]] = {name: [] for name, _ in clients}
        try:
            for _name, c in clients:
                get_ops(c.get, env.keys, 400)
            for _ in range(self.repeat):
                for name, c in clients:
                    samples[name].append(get_ops(c.get, env.keys, n))
        finally:
            for _name, c in clients:
                c.close()
        med = {k: statistics.median(v) for k, v in samples.items()}
        per_get = {f"{k} us/GET": 1e6 / v for k, v in med.items()}
        self.record("otel", "GET, clusterpool.otel off / no-op / SDK", "ops/s", samples,
                    {"noop/off": (OTEL_NOOP, OTEL_OFF), "sdk/off": (OTEL_SDK, OTEL_OFF)}, extra=per_get)

    def hedge(self) -> None:
        """Hedged reads (scripts/bench_hedge.py, on a cluster of its own): p99 with one replica
        per shard late, extra reads, and the throughput hedging costs on a healthy cluster."""
        import bench_hedge

        out = bench_hedge.run(self.args.quick, log=self.log)
        samples = {"healthy": [out["healthy"]["ops/s"]], "healthy+hedge": [out["healthy+hedge"]["ops/s"]],
                   "healthy p99": [out["healthy"]["p99_ms"]], "tail+hedge p99": [out["tail+hedge"]["p99_ms"]]}
        self.record("hedge", "hedged reads (bench_hedge.py)", "ops/s", samples,
                    {"hedge/healthy": ("healthy+hedge", "healthy"),
                     "tail+hedge/healthy p99": ("tail+hedge p99", "healthy p99")}, extra=out)

    def memory(self) -> None:
        n = self.args.memory_ops
        self.log(f"memory: construct + {n} ops under tracemalloc, x{self.repeat}")
        env = self.env
        makers = [(CP, env.new_cp, env.keys), (RC, env.new_rc, env.keys), (PLAIN, env.new_plain, env.plain_keys)]
        samples: dict[str, list[float]] = {CP: [], RC: [], PLAIN: []}
        conns: dict[str, list[float]] = {CP: [], RC: [], PLAIN: []}
        retained: dict[str, list[float]] = {CP: [], RC: [], PLAIN: []}
        for _ in range(self.repeat):
            for name, mk, keys in makers:
                gc.collect()
                tracemalloc.start()
                try:
                    base = tracemalloc.get_traced_memory()[0]
                    c = mk()
                    try:
                        seq_ops(c, keys, n)
                        gc.collect()
                        cur, peak = tracemalloc.get_traced_memory()
                        conns[name].append(connections(name, c) or 0)
                    finally:
                        c.close()
                finally:
                    tracemalloc.stop()
                samples[name].append((peak - base) / 1024)
                retained[name].append((cur - base) / 1024)
        extra = {
            "connections": {k: statistics.median(v) for k, v in conns.items()},
            "retained_kib": {k: statistics.median(v) for k, v in retained.items()},
        }
        self.record("memory", f"memory after {n:,} ops (tracemalloc peak)", "KiB", samples,
                    {"cp/rc": (CP, RC), "cp/plain": (CP, PLAIN)}, higher_is_better=False, extra=extra)

    # ---- profile ------------------------------------------------------------------

    def profile(self, n: int = 20000, top: int = 15) -> str:
        cp = self.env.cp
        keys = self.env.keys
        get = cp.get
        for k in keys:
            cp.set(k, VALUE)
        prof = cProfile.Profile()
        prof.enable()
        for i in range(n):
            get(keys[i % len(keys)])
        prof.disable()
        buf = io.StringIO()
        st = pstats.Stats(prof, stream=buf)
        st.sort_stats("tottime").print_stats(top)
        text = buf.getvalue()
        # drop the preamble noise, keep the header + rows
        lines = text.splitlines()
        start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
        return f"cProfile: {n:,} clusterpool GETs, top {top} by tottime\n" + "\n".join(lines[start:])


# --------------------------------------------------------------------------- output


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if unit == "ms":
        return f"{v:.2f}"
    if unit == "KiB":
        return f"{v:,.0f}"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.2f}"


def table(results: dict[str, dict[str, Any]]) -> str:
    head = ["scenario", "unit", CP, RC, PLAIN, GLIDE, WIRE, RAW, "ratios", "targets"]
    rows = []
    for sc in SCENARIOS:
        r = results.get(sc)
        if r is None:
            continue
        med, unit, na = r["median"], r["unit"], r["na"]
        if sc == "replica":
            cells = [f"{_fmt(med.get('replica'))} (reader) / {_fmt(med.get('primary'))} (primary)", "-", "-", "-", "-", "-"]
        elif sc == "otel":
            cells = [" / ".join(_fmt(med.get(k)) for k in (OTEL_OFF, OTEL_NOOP, OTEL_SDK)) + " (off / no-op / sdk)",
                     "-", "-", "-", "-", "-"]
        elif sc == "hedge":
            cells = [", ".join(f"{k} p99 {v['p99_ms']:.2f} ms (+{v['extra_%']:.1f}% reads)"
                               for k, v in r["extra"].items() if "p99_ms" in v), "-", "-", "-", "-", "-"]
        elif sc == "keyslot":
            cells = [_fmt(med.get(CP)), f"{_fmt(med.get('redis.crc'))} (redis.crc)", "-", "-", "-", "-"]
        else:
            cells = []
            for c in (CP, RC, PLAIN, GLIDE, WIRE, RAW):
                if c in na:
                    cells.append("n/a")
                elif c in med:
                    s = _fmt(med[c], unit)
                    if sc == "memory":
                        cn = r["extra"]["connections"].get(c)
                        s += f" ({cn:.0f} conns)" if cn is not None else ""
                    elif sc == "threads" and c != WIRE:
                        cn = r["extra"]["connections_after"].get(c)
                        s += f" ({cn} conns)" if cn is not None else ""
                    cells.append(s)
                else:
                    cells.append("-")
        ratios = ", ".join(f"{k} {v:.2f}x" for k, v in r["ratios"].items()) or "-"
        tgts = "; ".join(
            f"{t['target']}: {'n/a' if t['met'] is None else ('yes' if t['met'] else 'NO')}"
            for t in r.get("targets", [])
        )
        rows.append([r["title"], unit, *cells, ratios, tgts])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |"]
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        out.append("| " + " | ".join(str(x).ljust(w) for x, w in zip(row, widths)) + " |")
    return "\n".join(out)


def header(info: dict[str, Any], args: argparse.Namespace, where: str) -> str:
    return (
        f"machine: {info['nproc']} CPUs, {info['cpu']}; {info['platform']}\n"
        f"python {info['python']}, redis-py {info['redis-py']}, hiredis {info['hiredis']}, "
        f"redis-server {info['redis-server']}, clusterpool {info['clusterpool']}, "
        f"glide {info['glide']}, redis-benchmark {info['redis-benchmark']}\n"
        f"cluster: {where}\n"
        f"settings: repeat={args.repeat} (median), ops={args.ops}, pipeline={args.pipeline_size}, "
        f"construct={args.construct}, keyslot={args.keyslot_keys:,}, memory_ops={args.memory_ops}"
    )


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="existing cluster (redis://host:port) instead of starting one")
    ap.add_argument("--quick", action="store_true", help="small counts for a smoke test (< 30 s)")
    ap.add_argument("--repeat", type=int, help="repetitions per scenario, median reported (default 5)")
    ap.add_argument("--ops", type=int, help="commands per repetition for seq/threads/replica (default 20000)")
    ap.add_argument("--only", help=f"comma-separated subset of: {', '.join(SCENARIOS)}")
    ap.add_argument("--json", nargs="?", const="-", metavar="PATH",
                    help="write the results as JSON to PATH (stdout if no PATH)")
    ap.add_argument("--profile", action="store_true",
                    help="also cProfile 20k clusterpool GETs and print the top 15 by tottime")
    a = ap.parse_args(argv)
    q = a.quick
    a.repeat = a.repeat or (2 if q else 5)
    a.ops = a.ops or (2000 if q else 20000)
    a.pipeline_size = 10000
    a.construct = 3 if q else 10
    a.keyslot_keys = 200_000 if q else 1_000_000
    a.memory_ops = 2000 if q else 10000
    if a.repeat < 1 or a.ops < 2:
        ap.error("--repeat must be >= 1 and --ops >= 2")
    if a.only:
        a.only = [s.strip() for s in a.only.split(",") if s.strip()]
        bad = [s for s in a.only if s not in SCENARIOS]
        if bad:
            ap.error(f"unknown scenario(s) {bad}; choose from {', '.join(SCENARIOS)}")
    else:
        a.only = list(SCENARIOS)
    return a


def _sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    info = machine_info()
    t_start = time.monotonic()
    cluster: LocalCluster | None = None
    env: Env | None = None
    try:
        if args.url:
            addr = args.url.split("://", 1)[-1].rsplit("@", 1)[-1].rstrip("/")
            cluster = LocalCluster.existing(addr)
            where = f"existing {addr}"
        else:
            print("starting a local cluster (3 primaries, 1 replica each)...", file=sys.stderr, flush=True)
            cluster = LocalCluster(primaries=3, replicas=1).start()
            where = f"local, 3 primaries + 3 replicas, ports {cluster.ports[0]}-{cluster.ports[-1]}"
        hdr = header(info, args, where)
        print(hdr, flush=True)
        env = Env(cluster, nkeys=1000)
        bench = Bench(env, args)
        bench.warm()
        for sc in args.only:
            getattr(bench, sc)()
        prof_text = bench.profile() if args.profile else None
        print()
        print(table(bench.results))
        print(f"\n(median of {args.repeat}; ratios are medians of per-repetition ratios; total {time.monotonic() - t_start:.1f} s)")
        if prof_text:
            print()
            print(prof_text)
        if args.json:
            doc = {"machine": info, "cluster": where, "settings": {
                k: getattr(args, k) for k in ("repeat", "ops", "pipeline_size", "construct",
                                              "keyslot_keys", "memory_ops", "quick")},
                "results": bench.results}
            if prof_text:
                doc["profile"] = prof_text
            text = json.dumps(doc, indent=1, default=str)
            if args.json == "-":
                print(text)
            else:
                with open(args.json, "w") as f:
                    f.write(text + "\n")
                print(f"JSON written to {args.json}", file=sys.stderr)
        return 0
    finally:
        if env is not None:
            env.close()
        if cluster is not None and cluster.managed:
            cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
