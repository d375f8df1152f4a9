"""A real Redis Cluster on loopback for tests, demos, chaos runs and benchmarks.

`LocalCluster(primaries=3, replicas=1).start()` starts one from Debian's
`redis-server` on free loopback ports and stops it on `stop()` (or at exit). It
can kill -9, pause (SIGSTOP), restart, fail over, migrate slots step by step,
and add and remove nodes; every wait is bounded by a timeout. Also a CLI::

    python -m clusterpool.testing start --base-port 7000 --primaries 3 --replicas 1 --dir DIR
    python -m clusterpool.testing status --dir DIR
    python -m clusterpool.testing kill 7000 --dir DIR
    python -m clusterpool.testing stop --dir DIR
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .processes import (
    BUS_PORT_OFFSET,
    DEFAULT_CLI_DIR,
    NUM_SLOTS,
    NodeProcess,
    STATE_FILE,
    die_with_parent,
    find_redis_server,
    find_server,
    find_valkey_server,
    free_port_run,
    node_ports_free,
    parse_addr,
    parse_cluster_nodes,
    pid_alive,
    pid_is_redis,
    pid_stopped,
    poll,
    port_range_problem,
    server_kind,
    server_version,
)

__all__ = [
    "NUM_SLOTS",
    "LocalCluster",
    "find_redis_server",
    "find_valkey_server",
    "free_port_run",
    "main",
]

# --------------------------------------------------------------------------
# LocalCluster
# --------------------------------------------------------------------------


class LocalCluster:
    """A throw-away Redis Cluster made of local redis-server (or valkey-server) processes.

    ``ports`` lists every managed node (added ones included, removed ones not),
    whether running or killed.  Query methods talk to live nodes.  ``server`` picks
    ``"redis"`` or ``"valkey"`` (default: ``CLUSTERPOOL_TEST_SERVER``, else redis);
    ``zones`` gives each node, in start order (primaries, then each primary's
    replicas in turn), a Valkey ``availability-zone`` (None: none set).
    """

    def __init__(
        self,
        primaries: int = 3,
        replicas: int = 1,
        base_port: int | None = None,
        host: str = "127.0.0.1",
        data_dir: str | None = None,
        node_timeout_ms: int = 2000,
        redis_server: str | None = None,
        keep: bool = False,
        require_full_coverage: bool = True,
        die_with_parent: bool = True,
        server: str | None = None,
        zones: Iterable[str | None] | None = None,
    ):
        if primaries < 1:
            raise ValueError("need at least one primary")
        if replicas < 0:
            raise ValueError("replicas must be >= 0")
        self.host = host
        self.n_primaries = primaries
        self.n_replicas = replicas
        self.base_port = base_port
        self.node_timeout_ms = node_timeout_ms
        self.keep = keep
        self.require_full_coverage = require_full_coverage
        self.die_with_parent = die_with_parent
        self.server = server_kind(server)
        self._redis_server = redis_server
        self._zone_list = list(zones) if zones is not None else []
        if len(self._zone_list) > primaries * (1 + replicas):
            raise ValueError(f"{len(self._zone_list)} zones for {primaries * (1 + replicas)} nodes")
        self._zones: dict[int, str] = {}
        self._owns_dir = data_dir is None
        self._made_dir = False  # start() created data_dir (it did not exist)
        self.data_dir = data_dir
        self._managed = True
        self._nodes: dict[int, NodeProcess] = {}
        self._paused: set = set()
        self._ids: dict[int, str] = {}
        self._killed_info: dict[int, dict] = {}
        self._stopped = False
        self._started = False
        self._seed: tuple[str, int] | None = None  # existing-cluster mode
        self._version: tuple[int, ...] = (7, 0, 0)

    # ---- construction helpers -------------------------------------------------

    @classmethod
    def existing(cls, address: str, host: str | None = None) -> LocalCluster:
        """Wrap an already running cluster (``"host:port"``); read-only helpers only."""
        h, p = parse_addr(address)
        self = cls.__new__(cls)
        cls.__init__(self, host=host or h)
        self._managed = False
        self._seed = (h, p)
        self.host = h
        self.keep = True
        self._stopped = True
        try:
            self._discover()
        except (redis.RedisError, OSError) as e:
            raise RuntimeError(f"cannot reach existing cluster at {address}: {e}") from e
        return self

    @classmethod
    def from_state(cls, data_dir: str) -> LocalCluster:
        """Re-attach to a cluster started by the CLI (reads ``<dir>/cluster.json``)."""
        path = os.path.join(data_dir, STATE_FILE)
        with open(path) as f:
            st = json.load(f)
        self = cls(
            primaries=st["primaries"],
            replicas=st["replicas"],
            base_port=st["base_port"],
            host=st["host"],
            data_dir=st["data_dir"],
            node_timeout_ms=st["node_timeout_ms"],
            redis_server=st["redis_server"],
            keep=True,
            server=st.get("server", "redis"),
            die_with_parent=False,
        )
        self._owns_dir = st.get("owns_dir", False)
        self._made_dir = st.get("made_dir", False)
        self._version = tuple(st.get("version", (7, 0, 0)))
        self._started = True
        for p, pid in st["nodes"].items():
            port = int(p)
            node = NodeProcess(port, os.path.join(str(self.data_dir), f"node-{port}"))
            node.pid = pid if (pid and pid_alive(pid) and pid_is_redis(pid, port)) else None
            self._nodes[port] = node
        self._ids = {int(k): v for k, v in st.get("ids", {}).items()}
        self._zones = {int(k): v for k, v in st.get("zones", {}).items()}
        self._paused = {
            p for p in st.get("paused", []) if self._nodes.get(p) and self._nodes[p].alive()
        }
        return self

    def save_state(self) -> str:
        state = {
            "host": self.host,
            "base_port": self.base_port,
            "primaries": self.n_primaries,
            "replicas": self.n_replicas,
            "data_dir": self.data_dir,
            "node_timeout_ms": self.node_timeout_ms,
            "redis_server": self._redis_server,
            "server": self.server,
            "zones": {str(p): z for p, z in self._zones.items()},
            "owns_dir": self._owns_dir,
            "made_dir": self._made_dir,
            "version": list(self._version),
            "nodes": {str(p): (n.pid if n.alive() else None) for p, n in self._nodes.items()},
            "ids": {str(p): i for p, i in self._ids.items()},
            "paused": sorted(self._paused),
        }
        path = os.path.join(str(self.data_dir), STATE_FILE)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f, indent=1)
        os.replace(tmp, path)
        return path

    # ---- properties -------------------------------------------------------------

    @property
    def managed(self) -> bool:
        return self._managed

    @property
    def ports(self) -> list[int]:
        if not self._managed:
            return sorted(self._discover())
        return sorted(self._nodes)

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [(self.host, p) for p in self._live_ports()]

    @property
    def url(self) -> str:
        live = self._live_ports()
        if not live:
            raise RuntimeError("no live node")
        return f"redis://{self.host}:{live[0]}"

    def __repr__(self) -> str:
        kind = "managed" if self._managed else "existing"
        return f"<LocalCluster {kind} {self.host} ports={self.ports}>"

    # ---- context manager ---------------------------------------------------------

    def __enter__(self) -> LocalCluster:  # noqa: PYI034
        if self._managed and not self._started:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._managed:
            self.stop()

    def _require_managed(self, what: str) -> None:
        if not self._managed:
            raise RuntimeError(f"{what}() is not available for an existing (unmanaged) cluster")

    # ---- process management --------------------------------------------------------

    def _node_conf(self, port: int, d: str) -> str:
        lines = [
            f"port {port}",
            f"bind {self.host}",
            "protected-mode no",
            "daemonize no",
            "cluster-enabled yes",
            "cluster-config-file nodes.conf",
            f"cluster-node-timeout {self.node_timeout_ms}",
            "cluster-require-full-coverage " + ("yes" if self.require_full_coverage else "no"),
            # replicas may always fail over, no matter how stale (deterministic tests)
            "cluster-replica-validity-factor 0",
            "appendonly no",
            'save ""',
            # replicas sync at once (the default waits 5 s), so a primary killed right
            # after start-up does not take unreplicated data with it
            "repl-diskless-sync-delay 0",
            f"dir {d}",
            f"logfile {os.path.join(d, 'redis.log')}",
            "loglevel notice",
        ]
        v = self._version
        if v >= (6, 0, 0):
            lines.append("cluster-allow-reads-when-down no")
        if v >= (6, 2, 0):
            # no automatic replica migration: topology only changes when a test says so
            lines.append("cluster-allow-replica-migration no")
        if v >= (7, 0, 0):
            # don't wait for replicas to catch up on SIGTERM
            lines.append("shutdown-timeout 0")
            # DEBUG (RELOAD, SLEEP ...) from loopback: tests make a node answer LOADING with it
            lines.append("enable-debug-command local")
        if port in self._zones:
            lines.append(f"availability-zone {self._zones[port]}")
        return "\n".join(lines) + "\n"

    def _spawn(self, port: int) -> NodeProcess:
        node = self._nodes.get(port)
        if node is None:
            node = NodeProcess(port, os.path.join(str(self.data_dir), f"node-{port}"))
            self._nodes[port] = node
        os.makedirs(node.dir, exist_ok=True)
        conf = os.path.join(node.dir, "redis.conf")
        with open(conf, "w") as f:
            f.write(self._node_conf(port, node.dir))
        node.close_log()
        node.log = open(os.path.join(node.dir, "stdout.log"), "ab")  # noqa: SIM115
        node.proc = subprocess.Popen(
            [find_server(self.server, self._redis_server), conf],
            cwd=node.dir,
            stdin=subprocess.DEVNULL,
            stdout=node.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            preexec_fn=die_with_parent if self.die_with_parent else None,  # noqa: PLW1509
        )
        node.pid = node.proc.pid
        self._paused.discard(port)
        return node

    def _log_tail(self, port: int, n: int = 15) -> str:
        node = self._nodes.get(port)
        if node is None:
            return ""
        out = []
        for name in ("redis.log", "stdout.log"):
            try:
                with open(os.path.join(node.dir, name), errors="replace") as f:
                    tail = f.readlines()[-n:]
                if tail:
                    out.append(f"--- {name} of {port} ---\n" + "".join(tail))
            except OSError:
                pass
        return "\n".join(out)

    def _wait_ping(self, port: int, timeout: float) -> None:
        node = self._nodes.get(port)

        def ok():
            if node is not None and not node.alive():
                raise RuntimeError(f"redis-server on port {port} exited:\n{self._log_tail(port)}")
            with self.client(port) as c:
                return c.ping()

        poll(ok, timeout, f"node {port} to answer PING")

    def start(self, timeout: float = 60) -> LocalCluster:
        self._require_managed("start")
        if self._started:
            raise RuntimeError("cluster already started")
        server = find_server(self.server, self._redis_server)
        self._redis_server = server
        self._version = server_version(server)
        total = self.n_primaries * (1 + self.n_replicas)
        if self.base_port is None:
            self.base_port = free_port_run(total, self.host)
        else:
            problem = port_range_problem(self.base_port, total)
            if problem is not None:
                raise ValueError(problem)
            busy = [
                p
                for p in range(self.base_port, self.base_port + total)
                if not node_ports_free(self.host, p)
            ]
            if busy:
                raise RuntimeError(f"ports already in use (or their bus port +10000): {busy}")
        if self.data_dir is None:
            self.data_dir = tempfile.mkdtemp(prefix="clusterpool-")
        elif not os.path.isdir(self.data_dir):
            os.makedirs(self.data_dir)
            self._made_dir = True  # stop() may remove it; a directory it was given stays
        self._started = True
        self._stopped = False
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        left = lambda: max(deadline - time.monotonic(), 0.1)
        try:
            ports = list(range(self.base_port, self.base_port + total))
            self._zones = {p: z for p, z in zip(ports, self._zone_list) if z is not None}
            for p in ports:
                self._spawn(p)
            for p in ports:
                self._wait_ping(p, left())
            for p in ports:
                self._ids[p] = self._cmd(p, "CLUSTER", "MYID")
            prim = ports[: self.n_primaries]
            # slots: contiguous ranges, like redis-cli
            per = NUM_SLOTS / self.n_primaries
            for i, p in enumerate(prim):
                lo, hi = round(i * per), round((i + 1) * per) - 1
                self._add_slots(p, lo, hi)
            # distinct config epochs before anyone meets -> no epoch collisions
            for i, p in enumerate(ports):
                self._cmd(p, "CLUSTER", "SET-CONFIG-EPOCH", i + 1)
            for p in ports[1:]:
                self._cmd(ports[0], "CLUSTER", "MEET", self.host, p)
            self._wait_all_know(ports, left())
            for j, pp in enumerate(prim):
                for i in range(self.n_replicas):
                    rp = ports[self.n_primaries + j * self.n_replicas + i]
                    self._cmd(rp, "CLUSTER", "REPLICATE", self._ids[pp])
            self.wait_ok(left())
        except BaseException:
            self.stop()
            raise
        return self

    def _add_slots(self, port: int, lo: int, hi: int) -> None:
        try:
            self._cmd(port, "CLUSTER", "ADDSLOTSRANGE", lo, hi)
        except redis.ResponseError as e:
            if "unknown subcommand" not in str(e).lower():
                raise
            self._cmd(port, "CLUSTER", "ADDSLOTS", *range(lo, hi + 1))

    def _wait_all_know(self, ports: list[int], timeout: float) -> None:
        want = set(ports)

        def ok():
            for p in ports:
                seen = {
                    n["port"]
                    for n in self._nodes_view(p)
                    if "handshake" not in n["flags"] and n["port"]
                }
                if not want <= seen:
                    return False
            return True

        poll(ok, timeout, f"all nodes to know each other {sorted(want)}")

    def stop(self) -> None:
        """Terminate every node (SIGTERM, then SIGKILL), wait, and remove what start() made: the
        node directories and the state file, and the data dir itself only when start() created it."""
        if not self._managed or self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        nodes = list(self._nodes.values())
        for n in nodes:
            if n.alive():
                n.signal(signal.SIGCONT)
                n.signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for n in nodes:
            if not n.wait(max(deadline - time.monotonic(), 0.01)):
                n.signal(signal.SIGKILL)
        for n in nodes:
            if not n.wait(10):  # pragma: no cover - should never happen
                sys.stderr.write(f"warning: redis-server pid {n.pid} did not exit\n")
            n.close_log()
        self._paused.clear()
        if not self.keep and self.data_dir and os.path.isdir(self.data_dir):
            if self._owns_dir:
                shutil.rmtree(self.data_dir, ignore_errors=True)
            else:
                for n in nodes:
                    shutil.rmtree(n.dir, ignore_errors=True)
                for name in (STATE_FILE, STATE_FILE + ".tmp"):
                    try:
                        os.unlink(os.path.join(self.data_dir, name))
                    except OSError:
                        pass
                if self._made_dir:
                    try:
                        os.rmdir(self.data_dir)  # only when empty: files someone else put there stay
                    except OSError:
                        pass

    def is_running(self, port: int) -> bool:
        if not self._managed:
            try:
                with self.client(port) as c:
                    return bool(c.ping())
            except (redis.RedisError, OSError):
                return False
        n = self._nodes.get(port)
        return n is not None and n.alive()

    def _node(self, port: int) -> NodeProcess:
        n = self._nodes.get(port)
        if n is None:
            raise KeyError(f"no managed node on port {port}")
        return n

    def kill(self, port: int, timeout: float = 10) -> None:
        """SIGKILL the node and wait for the process to exit."""
        self._require_managed("kill")
        n = self._node(port)
        if not n.alive():
            return
        # remember what it was, so wait_promoted() can find the successor
        info: dict[str, Any] = {"id": self._ids.get(port), "slots": [], "replicas": []}
        if port not in self._paused:
            try:
                info["id"] = self.node_id(port)
                info["slots"] = self.slots_of(port)
                info["replicas"] = self.replicas_of(port)
            except (redis.RedisError, OSError, RuntimeError, KeyError):
                pass
        self._killed_info[port] = info
        n.signal(signal.SIGKILL)
        if not n.wait(timeout):
            raise TimeoutError(f"node {port} (pid {n.pid}) did not die")
        self._paused.discard(port)
        n.close_log()

    def pause(self, port: int, timeout: float = 5) -> None:
        """SIGSTOP the node (it stops answering but keeps its sockets)."""
        self._require_managed("pause")
        n = self._node(port)
        if not n.alive():
            raise RuntimeError(f"node {port} is not running")
        n.signal(signal.SIGSTOP)
        self._paused.add(port)
        poll(lambda: pid_stopped(n.pid or 0), timeout, f"node {port} to stop")

    def resume(self, port: int, timeout: float = 10) -> None:
        """SIGCONT the node and wait until it answers PING."""
        self._require_managed("resume")
        n = self._node(port)
        n.signal(signal.SIGCONT)
        self._paused.discard(port)
        if n.alive():
            self._wait_ping(port, timeout)

    def is_paused(self, port: int) -> bool:
        return port in self._paused

    def zone(self, port: int) -> str | None:
        """The availability zone given to this node (None: none)."""
        return self._zones.get(port)

    def set_zone(self, port: int, zone: str) -> None:
        """CONFIG SET the node's availability-zone (Valkey 8+); kept across restart()."""
        self._cmd(port, "CONFIG", "SET", "availability-zone", zone)
        self._zones[port] = zone

    def restart(self, port: int, timeout: float = 30) -> None:
        """Start a stopped/killed node again from its own dir and nodes.conf; wait_ok()."""
        self._require_managed("restart")
        n = self._node(port)
        if n.alive():
            raise RuntimeError(f"node {port} is still running; kill() it first")
        deadline = time.monotonic() + timeout
        if not node_ports_free(self.host, port):
            poll(
                lambda: node_ports_free(self.host, port),
                min(timeout, 10),
                f"ports {port}/{port + BUS_PORT_OFFSET} to become free",
            )
        self._spawn(port)
        self._wait_ping(port, max(deadline - time.monotonic(), 0.1))
        self.wait_ok(max(deadline - time.monotonic(), 0.1))

    # ---- low-level queries ----------------------------------------------------------

    def client(self, port: int, **kwargs) -> redis.Redis:
        """A new plain (non-cluster) redis.Redis for one node; the caller closes it."""
        opts: dict[str, Any] = {
            "host": self.host,
            "port": port,
            "decode_responses": True,
            "socket_timeout": 2.0,
            "socket_connect_timeout": 1.0,
            "retry": Retry(NoBackoff(), 0),
        }
        opts.update(kwargs)
        return redis.Redis(**opts)

    def _cmd(self, port: int, *args):
        with self.client(port) as c:
            return c.execute_command(*args)

    def _nodes_view(self, port: int) -> list[dict]:
        return parse_cluster_nodes(self._cmd(port, "CLUSTER", "NODES"))

    def _queryable(self) -> list[int]:
        """Ports worth asking: running and not paused (managed) / known healthy (existing)."""
        if self._managed:
            return [
                p for p in sorted(self._nodes) if self._nodes[p].alive() and p not in self._paused
            ]
        return sorted(self._discover())

    def _live_ports(self) -> list[int]:
        if self._managed:
            return self._queryable()
        return sorted(self._discover())

    def _discover(self) -> list[int]:
        """Existing mode: healthy node ports from the seed's (or any known node's) view."""
        seeds = [self._seed] if self._seed else []
        seeds += [(self.host, p) for p in getattr(self, "_known", [])]
        last: BaseException | None = None
        for h, p in seeds:
            try:
                with self.client(p, host=h) as c:
                    view = parse_cluster_nodes(c.execute_command("CLUSTER", "NODES"))
                ports = sorted(n["port"] for n in view if n["healthy"])
                self._known = ports
                for n in view:
                    self._ids[n["port"]] = n["id"]
                return ports
            except (redis.RedisError, OSError) as e:
                last = e
        raise redis.ConnectionError(f"no reachable node (last error: {last!r})")

    def _any_view(self) -> tuple[int, list[dict]]:
        last: BaseException | None = None
        for p in self._queryable():
            try:
                return p, self._nodes_view(p)
            except (redis.RedisError, OSError) as e:
                last = e
        raise RuntimeError(f"no live node answered CLUSTER NODES (last error: {last!r})")

    def node_id(self, port: int) -> str:
        try:
            nid = self._cmd(port, "CLUSTER", "MYID")
            self._ids[port] = nid
            return nid
        except (redis.RedisError, OSError):
            if port in self._ids:
                return self._ids[port]
            _, view = self._any_view()
            for n in view:
                if n["port"] == port:
                    self._ids[port] = n["id"]
                    return n["id"]
            raise

    def role(self, port: int) -> str:
        r = self._cmd(port, "ROLE")
        kind = r[0] if isinstance(r, (list, tuple)) else str(r)
        return "primary" if kind == "master" else "replica"

    def _running_healthy(self, view: list[dict]) -> list[dict]:
        out = []
        for n in view:
            if "fail" in n["flags"] or "handshake" in n["flags"] or "noaddr" in n["flags"]:
                continue
            if self._managed and not self.is_running(n["port"]):
                continue
            out.append(n)
        return out

    def primaries(self) -> list[int]:
        _, view = self._any_view()
        return sorted(n["port"] for n in self._running_healthy(view) if n["role"] == "primary")

    def replicas(self) -> list[int]:
        _, view = self._any_view()
        return sorted(n["port"] for n in self._running_healthy(view) if n["role"] == "replica")

    def replicas_of(self, primary_port: int) -> list[int]:
        pid = self.node_id(primary_port)
        _, view = self._any_view()
        return sorted(
            n["port"]
            for n in self._running_healthy(view)
            if n["role"] == "replica" and n["master_id"] == pid
        )

    def primary_of(self, replica_port: int) -> int:
        view = self._nodes_view(replica_port)
        me = next(n for n in view if n["myself"])
        if me["master_id"] is None:
            raise ValueError(f"node {replica_port} is not a replica")
        for n in view:
            if n["id"] == me["master_id"]:
                return n["port"]
        raise RuntimeError(f"primary {me['master_id']} of {replica_port} not in its view")

    def _shards_problem(self, port: int, healthy: set[int]) -> str | None:
        """What node `port`'s CLUSTER SHARDS gets wrong while CLUSTER NODES is already settled.

        Valkey groups CLUSTER SHARDS by shard id, which spreads by gossip after a replica is
        attached: until then the replica is a shard of its own (no primary), or a node is left
        out, and a client reading the map then sees a shard without a primary.
        """
        try:
            shards = self._cmd(port, "CLUSTER", "SHARDS")
        except redis.ResponseError:  # before Redis 7.0
            return None
        listed: set[int] = set()
        orphans: list[int] = []
        for shard in shards:
            nodes = [_as_dict(n) for n in _as_dict(shard).get("nodes", [])]
            listed |= {int(n["port"]) for n in nodes}
            if not any(n.get("role") in ("master", "primary") for n in nodes):
                orphans += [int(n["port"]) for n in nodes if n.get("health") == "online"]
        orphans = sorted(set(orphans) - self._paused)
        if orphans:
            return f"CLUSTER SHARDS lists replicas {orphans} in a shard without a primary"
        missing = sorted(healthy - listed)
        if missing:
            return f"CLUSTER SHARDS leaves out {missing}"
        return None

    def _slot_map(self, port: int) -> list[tuple[int, int, int]]:
        """[(start, end, primary_port)] sorted, from CLUSTER SLOTS of one node."""
        rows = self._cmd(port, "CLUSTER", "SLOTS")
        out = []
        for row in rows:
            start, end, prim = int(row[0]), int(row[1]), row[2]
            out.append((start, end, int(prim[1])))
        out.sort()
        # merge adjacent ranges with the same owner so views compare equal
        merged: list[tuple[int, int, int]] = []
        for s, e, p in out:
            if merged and merged[-1][2] == p and merged[-1][1] + 1 == s:
                merged[-1] = (merged[-1][0], e, p)
            else:
                merged.append((s, e, p))
        return merged

    def _first_live(self) -> int:
        q = self._queryable()
        if not q:
            raise RuntimeError("no live node")
        return q[0]

    def slot_owner(self, slot: int) -> int:
        last: BaseException | None = None
        for p in self._queryable():
            try:
                for s, e, owner in self._slot_map(p):
                    if s <= slot <= e:
                        return owner
                raise LookupError(f"slot {slot} is not assigned")
            except (redis.RedisError, OSError) as e:
                last = e
        raise RuntimeError(f"no live node answered CLUSTER SLOTS (last error: {last!r})")

    def slots_of(self, port: int) -> list[int]:
        _, view = self._any_view()
        for n in view:
            if n["port"] == port:
                return sorted(n["slots"])
        return []

    def cluster_info(self, port: int) -> dict[str, str]:
        txt = self._cmd(port, "CLUSTER", "INFO")
        if isinstance(txt, dict):
            return {k: str(v) for k, v in txt.items()}
        return dict(line.split(":", 1) for line in txt.splitlines() if ":" in line)

    @staticmethod
    def key_slot(key: str) -> int:
        """CRC16 hash slot of a key (with {hash tag} support)."""
        k = key.encode() if isinstance(key, str) else key
        s = k.find(b"{")
        if s != -1:
            e = k.find(b"}", s + 1)
            if e != -1 and e != s + 1:
                k = k[s + 1 : e]
        crc = 0
        for b in k:
            crc ^= b << 8
            for _ in range(8):
                crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
                crc &= 0xFFFF
        return crc % NUM_SLOTS

    # ---- waiting --------------------------------------------------------------------

    def _consistency_problem(self) -> str | None:
        """None if the cluster is settled; otherwise a description of what isn't."""
        live = self._queryable()
        if not live:
            return "no live node"
        expected = set(live)
        slot_maps = {}
        prim_sets = {}
        for p in live:
            info = self.cluster_info(p)
            if info.get("cluster_state") != "ok":
                return f"node {p}: cluster_state={info.get('cluster_state')}"
            view = self._nodes_view(p)
            healthy = {n["port"] for n in view if n["healthy"]} - self._paused
            if self._managed and healthy != expected:
                return f"node {p} sees healthy nodes {sorted(healthy)}, expected {sorted(expected)}"
            me = next((n for n in view if n["myself"]), None)
            if me is not None and me["role"] == "replica":
                masters = [n for n in view if n["id"] == me["master_id"]]
                if not masters or not masters[0]["healthy"]:
                    return f"replica {p}: its primary is unknown/unhealthy"
                if p not in self._paused:
                    r = self.client(p)
                    try:
                        link = r.info("replication").get("master_link_status")
                    finally:
                        r.close()
                    if link != "up":
                        return f"replica {p}: link to its primary is {link}"
            prim_sets[p] = sorted(
                {n["port"] for n in view if n["healthy"] and n["role"] == "primary"} - self._paused
            )
            slot_maps[p] = self._slot_map(p)
            shards_problem = self._shards_problem(p, healthy)
            if shards_problem:
                return f"node {p}: {shards_problem}"
        ref = live[0]
        for p in live[1:]:
            if slot_maps[p] != slot_maps[ref]:
                return f"slot maps of {ref} and {p} differ"
            if prim_sets[p] != prim_sets[ref]:
                return f"primaries differ: {ref} sees {prim_sets[ref]}, {p} sees {prim_sets[p]}"
        if self.require_full_coverage:
            covered = sum(e - s + 1 for s, e, _ in slot_maps[ref])
            if covered != NUM_SLOTS:
                return f"only {covered} slots covered"
        owners = {o for _, _, o in slot_maps[ref]}
        if not owners <= set(prim_sets[ref]) | self._paused:
            return f"slot owners {sorted(owners)} not all healthy primaries {prim_sets[ref]}"
        return None

    def wait_ok(self, timeout: float = 30) -> LocalCluster:
        """Wait until every live node says cluster_state:ok and all agree on
        the slot map, the set of primaries and the set of healthy nodes."""
        state = {"why": "not checked yet"}

        def ok():
            try:
                state["why"] = self._consistency_problem()
            except (redis.RedisError, OSError, StopIteration) as e:
                state["why"] = repr(e)
            return state["why"] is None

        poll(ok, timeout, "cluster to be ok", interval=0.1, describe=lambda: state["why"])
        return self

    def failover(self, replica_port: int, mode: str | None = None, timeout: float = 30) -> None:
        """CLUSTER FAILOVER [FORCE|TAKEOVER] on a replica; wait until it is primary + ok."""
        if self.role(replica_port) != "replica":
            raise ValueError(f"node {replica_port} is not a replica")
        args = ["CLUSTER", "FAILOVER"] + ([mode.upper()] if mode else [])
        deadline = time.monotonic() + timeout
        # a manual failover can silently time out (5s); reissue it if so
        while True:
            self._cmd(replica_port, *args)
            try:
                poll(
                    lambda: self.role(replica_port) == "primary",
                    min(max(deadline - time.monotonic(), 0.1), 10),
                    f"{replica_port} to become primary",
                )
                break
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise
        self.wait_ok(max(deadline - time.monotonic(), 0.1))

    def wait_promoted(self, dead_primary_port: int, timeout: float = 30) -> int:
        """After killing a primary: wait until one of its former replicas is primary and
        the live nodes are ok; return the new primary's port."""
        info = self._killed_info.get(dead_primary_port, {})
        dead_id = info.get("id") or self._ids.get(dead_primary_port)
        candidates = set(info.get("replicas") or [])
        if not candidates and dead_id:
            try:
                _, view = self._any_view()
                candidates = {n["port"] for n in view if n["master_id"] == dead_id}
            except RuntimeError:
                pass
        if not candidates:
            raise RuntimeError(f"no known replicas of {dead_primary_port} to promote")
        deadline = time.monotonic() + timeout

        def promoted():
            for p in sorted(candidates):
                if self.is_running(p) and p not in self._paused and self.role(p) == "primary":
                    return p
            return None

        port = poll(
            promoted,
            timeout,
            f"a replica of {dead_primary_port} ({sorted(candidates)}) to be promoted",
        )
        self.wait_ok(max(deadline - time.monotonic(), 0.1))
        return port

    # ---- slot migration ----------------------------------------------------------------

    def begin_migration(self, slot: int, dst_port: int) -> int:
        """SETSLOT IMPORTING on dst, then MIGRATING on src. Returns src port."""
        src = self.slot_owner(slot)
        if src == dst_port:
            raise ValueError(f"slot {slot} is already owned by {dst_port}")
        self._cmd(dst_port, "CLUSTER", "SETSLOT", slot, "IMPORTING", self.node_id(src))
        self._cmd(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", self.node_id(dst_port))
        return src

    def migrate_keys(
        self, slot: int, dst_port: int, count: int | None = None, batch: int = 100
    ) -> int:
        """MIGRATE keys of ``slot`` from its owner to dst (all if count is None)."""
        src = self.slot_owner(slot)
        if src == dst_port:
            return 0
        moved = 0
        while count is None or moved < count:
            n = batch if count is None else min(batch, count - moved)
            keys = self._cmd(src, "CLUSTER", "GETKEYSINSLOT", slot, n)
            if not keys:
                break
            self._cmd(src, "MIGRATE", self.host, dst_port, "", 0, 5000, "REPLACE", "KEYS", *keys)
            moved += len(keys)
        return moved

    def finish_migration(
        self, slot: int, dst_port: int, timeout: float = 30, _wait: bool = True
    ) -> None:
        """Move any keys still left, then SETSLOT NODE dst on dst, src and all other
        primaries; wait until every node agrees."""
        src = self.slot_owner(slot)
        dst_id = self.node_id(dst_port)
        if src != dst_port:
            self.migrate_keys(slot, dst_port)
        order = [dst_port] + ([src] if src != dst_port else [])
        for p in self._queryable():
            if p not in order and self.role(p) == "primary":
                order.append(p)
        for p in order:
            try:
                self._cmd(p, "CLUSTER", "SETSLOT", slot, "NODE", dst_id)
            except redis.ResponseError:
                if p in (dst_port, src):
                    raise  # others will learn via gossip anyway
        if _wait:
            self._wait_slots_owned([slot], dst_port, timeout)

    def _wait_slots_owned(self, slots: list[int], dst_port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout

        def ok():
            for p in self._queryable():
                m = self._slot_map(p)
                for slot in slots:
                    if not any(s <= slot <= e and o == dst_port for s, e, o in m):
                        return False
            return True

        poll(ok, timeout, f"all nodes to agree {len(slots)} slot(s) belong to {dst_port}")
        self.wait_ok(max(deadline - time.monotonic(), 0.1))

    def move_slot(self, slot: int, dst_port: int, timeout: float = 30) -> None:
        self.move_slots([slot], dst_port, timeout)

    def move_slots(self, slots: Iterable[int], dst_port: int, timeout: float = 60) -> None:
        slots = list(slots)
        for slot in slots:
            if self.slot_owner(slot) == dst_port:
                continue
            self.begin_migration(slot, dst_port)
            self.migrate_keys(slot, dst_port)
            self.finish_migration(slot, dst_port, _wait=False)
        self._wait_slots_owned(slots, dst_port, timeout)

    # ---- topology changes ------------------------------------------------------------

    def _next_free_port(self) -> int:
        p = max(self._nodes) + 1 if self._nodes else (self.base_port or 20000)
        while not node_ports_free(self.host, p):
            p += 1
            if p + BUS_PORT_OFFSET > 65535:
                raise RuntimeError("ran out of ports")
        return p

    def add_node(self, replica_of: int | None = None, timeout: float = 30) -> int:
        """Start a new empty node, MEET it, optionally REPLICATE; return its port."""
        self._require_managed("add_node")
        deadline = time.monotonic() + timeout
        left = lambda: max(deadline - time.monotonic(), 0.1)
        port = self._next_free_port()
        self._spawn(port)
        try:
            self._wait_ping(port, left())
            self._ids[port] = self._cmd(port, "CLUSTER", "MYID")
            others = [p for p in self._queryable() if p != port]
            self._cmd(port, "CLUSTER", "MEET", self.host, others[0])
            self._wait_all_know(others + [port], left())
            if replica_of is not None:
                self._cmd(port, "CLUSTER", "REPLICATE", self.node_id(replica_of))

                def linked():
                    with self.client(port) as c:
                        info = c.info("replication")
                    return (
                        info.get("role") == "slave"
                        and info.get("master_link_status") == "up"
                        and int(info.get("master_port", 0)) == replica_of
                    )

                poll(linked, left(), f"replica {port} link to {replica_of} to be up")
            self.wait_ok(left())
        except BaseException:
            # leave nothing half-added behind
            n = self._nodes.pop(port, None)
            if n is not None:
                n.signal(signal.SIGKILL)
                n.wait(5)
                n.close_log()
            raise
        return port

    def remove_node(self, port: int, timeout: float = 30) -> None:
        """FORGET an empty node on every other node, shut it down, wait until nobody
        lists it. Raises ValueError if it still owns slots."""
        self._require_managed("remove_node")
        n = self._node(port)
        owned = self.slots_of(port)
        if owned:
            raise ValueError(
                f"node {port} still owns {len(owned)} slot(s); move them "
                f"away first (e.g. move_slots)"
            )
        nid = self.node_id(port)
        deadline = time.monotonic() + timeout
        others = [p for p in self._queryable() if p != port]
        # FORGET everywhere quickly (60s ban list); replicas too
        for p in others:
            try:
                self._cmd(p, "CLUSTER", "FORGET", nid)
            except redis.ResponseError as e:
                if "unknown node" not in str(e).lower():
                    raise
        if n.alive():
            n.signal(signal.SIGCONT)
            n.signal(signal.SIGTERM)
            if not n.wait(5):
                n.signal(signal.SIGKILL)
                n.wait(5)
        n.close_log()
        self._paused.discard(port)
        del self._nodes[port]
        self._ids.pop(port, None)
        shutil.rmtree(n.dir, ignore_errors=True)

        def forgotten():
            for p in self._queryable():
                if any(x["id"] == nid for x in self._nodes_view(p)):
                    return False
            return True

        poll(forgotten, max(deadline - time.monotonic(), 0.1), f"nodes to forget {port}")
        self.wait_ok(max(deadline - time.monotonic(), 0.1))

    # ---- reporting -------------------------------------------------------------------

    def status_lines(self) -> list[str]:
        out = []
        for p in self.ports:
            if not self.is_running(p):
                out.append(f"{self.host}:{p}  down")
                continue
            if p in self._paused:
                out.append(f"{self.host}:{p}  paused")
                continue
            try:
                role = self.role(p)
                state = self.cluster_info(p).get("cluster_state")
                extra = ""
                if role == "replica":
                    extra = f" of {self.primary_of(p)}"
                else:
                    extra = f" slots={len(self.slots_of(p))}"
                out.append(f"{self.host}:{p}  {role}{extra}  cluster_state={state}")
            except (redis.RedisError, OSError, RuntimeError, StopIteration) as e:
                out.append(f"{self.host}:{p}  error {e!r}")
        return out



# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def _dir_option(top: bool) -> argparse.ArgumentParser:
    """--dir for the top level (with the default) and for each subcommand (SUPPRESS: given after
    the subcommand it overrides, not given it leaves the top level's value)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--dir", default=os.environ.get("CLUSTERPOOL_CLUSTER_DIR", DEFAULT_CLI_DIR) if top
                   else argparse.SUPPRESS,
                   help=f"data dir holding the nodes and the state file, before or after the subcommand "
                        f"(default: $CLUSTERPOOL_CLUSTER_DIR, then {DEFAULT_CLI_DIR})")
    return p


def main(argv: list[str] | None = None) -> int:
    """The harness CLI (see the module docstring); returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m clusterpool.testing", description=__doc__.split("\n\n")[0],
                                 parents=[_dir_option(True)])
    sub = ap.add_subparsers(dest="cmd", required=True)
    shared = _dir_option(False)  # --dir also after the subcommand: `stop --dir DIR`

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, parents=[shared])

    st = add("start", "start a cluster and leave it running")
    st.add_argument("--base-port", type=int, default=7000,
                    help="port of the first node; node i uses base+i and its cluster bus port base+i+10000, "
                         "which must stay below the ephemeral range (32768): at most 22762 for 6 nodes "
                         "(default: %(default)s)")
    st.add_argument("--primaries", type=int, default=3, help="number of primaries (default: %(default)s)")
    st.add_argument("--replicas", type=int, default=1, help="replicas per primary (default: %(default)s)")
    st.add_argument("--node-timeout", type=int, default=2000,
                    help="cluster-node-timeout in ms: how soon a dead primary is failed over "
                         "(default: %(default)s)")
    st.add_argument("--timeout", type=float, default=60,
                    help="seconds to wait for the cluster to be ok (default: %(default)s)")
    add("stop", "stop the cluster; remove the node directories and state file, and the data dir "
                "itself only if start created it")
    s = add("status", "show nodes")
    s.add_argument("--addr", help="host:port of an existing cluster instead of --dir")
    for name in ("kill", "pause", "resume", "restart"):
        s = add(name, f"{name} one node")
        s.add_argument("port", type=int)
    s = add("failover", "CLUSTER FAILOVER on a replica")
    s.add_argument("port", type=int)
    s.add_argument("--mode", choices=["force", "takeover"])
    s = add("wait-ok", "wait until the cluster is ok")
    s.add_argument("--timeout", type=float, default=30)
    s = add("add-node", "add a node (optionally as replica of PORT)")
    s.add_argument("--replica-of", type=int)
    s = add("remove-node", "remove an empty node")
    s.add_argument("port", type=int)
    s = add("move-slot", "migrate a slot to a node")
    s.add_argument("slot", type=int)
    s.add_argument("port", type=int)
    a = ap.parse_args(argv)
    data_dir = os.path.abspath(a.dir)
    state_path = os.path.join(data_dir, STATE_FILE)

    if a.cmd == "start":
        if os.path.exists(state_path):
            old = LocalCluster.from_state(data_dir)
            if any(old.is_running(p) for p in old.ports):
                print(
                    f"a cluster is already running from {data_dir} "
                    f"(run `stop --dir {data_dir}` first)",
                    file=sys.stderr,
                )
                return 1
        c = LocalCluster(
            primaries=a.primaries,
            replicas=a.replicas,
            base_port=a.base_port,
            data_dir=data_dir,
            node_timeout_ms=a.node_timeout,
            keep=True,
            die_with_parent=False,
        )
        c.start(timeout=a.timeout)
        atexit.unregister(c.stop)  # leave it running
        c.save_state()
        print(f"{c.host}:{c.ports[0]}")
        return 0

    if a.cmd == "status" and a.addr:
        c = LocalCluster.existing(a.addr)
        print("\n".join(c.status_lines()))
        return 0

    if not os.path.exists(state_path):
        if a.cmd == "stop":
            return 0
        print(f"no cluster state in {data_dir} (start one first)", file=sys.stderr)
        return 1
    c = LocalCluster.from_state(data_dir)
    if a.cmd == "stop":
        c.keep = False
        c._stopped = False
        c.stop()
        return 0
    if a.cmd == "status":
        print("\n".join(c.status_lines()))
        return 0
    try:
        if a.cmd == "kill":
            c.kill(a.port)
        elif a.cmd == "pause":
            c.pause(a.port)
        elif a.cmd == "resume":
            c.resume(a.port)
        elif a.cmd == "restart":
            c.die_with_parent = False
            c.restart(a.port)
        elif a.cmd == "failover":
            c.failover(a.port, a.mode)
        elif a.cmd == "wait-ok":
            c.wait_ok(a.timeout)
        elif a.cmd == "add-node":
            print(c.add_node(replica_of=a.replica_of))
        elif a.cmd == "remove-node":
            c.remove_node(a.port)
        elif a.cmd == "move-slot":
            c.move_slot(a.slot, a.port)
    finally:
        for n in c._nodes.values():
            n.close_log()
        c.save_state()
    return 0


def _as_dict(reply: Any) -> dict[Any, Any]:
    """A map reply as a dict, whether redis-py parsed it into one (RESP3, its callbacks) or not."""
    return reply if isinstance(reply, dict) else dict(zip(reply[0::2], reply[1::2]))
