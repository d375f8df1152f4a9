"""Local redis-server / valkey-server processes for the test harness: finding the binary, free loopback ports,
starting, signalling and reaping one node, reading CLUSTER NODES (standard library + redis-py).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

import redis

NUM_SLOTS = 16384
BUS_PORT_OFFSET = 10000
STATE_FILE = "cluster.json"
DEFAULT_CLI_DIR = os.path.join(tempfile.gettempdir(), "clusterpool-cluster")
POLL_INTERVAL = 0.05
# Flags that make a node "not healthy" in some node's view of the cluster.
BAD_FLAGS = {"fail", "fail?", "handshake", "noaddr"}



# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


SERVERS = ("redis", "valkey")
SERVER_ENV = "CLUSTERPOOL_TEST_SERVER"


def server_kind(kind: str | None = None) -> str:
    """Which server a cluster runs: ``kind``, else ``CLUSTERPOOL_TEST_SERVER``, else redis."""
    k = (kind or os.environ.get(SERVER_ENV) or "redis").strip().lower()
    if k not in SERVERS:
        raise ValueError(f"server must be one of {SERVERS}, not {k!r} (from {SERVER_ENV}?)")
    return k


def find_server(kind: str = "redis", explicit: str | None = None) -> str:
    """Return the path of a ``<kind>-server`` binary (``REDIS_SERVER``/``VALKEY_SERVER`` env wins)."""
    kind = server_kind(kind)
    binary = f"{kind}-server"
    candidates = [
        explicit,
        os.environ.get(f"{kind.upper()}_SERVER"),
        shutil.which(binary),
        f"/usr/bin/{binary}",
        f"/usr/local/bin/{binary}",
    ]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    hint = {
        "redis": "sudo apt-get install -y redis-server",
        "valkey": "sudo apt-get install -y -t bookworm-backports valkey-server (or scripts/bootstrap.sh)",
    }[kind]
    raise RuntimeError(f"{binary} not found: run `{hint}` (or set {kind.upper()}_SERVER=/path)")


def find_redis_server(explicit: str | None = None) -> str:
    """Return the path of a redis-server binary (``REDIS_SERVER`` env wins)."""
    return find_server("redis", explicit)


def find_valkey_server(explicit: str | None = None) -> str:
    """Return the path of a valkey-server binary (``VALKEY_SERVER`` env wins)."""
    return find_server("valkey", explicit)


def server_version(path: str) -> tuple[int, ...]:
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
        for tok in out.split():
            if tok.startswith("v="):
                return tuple(int(x) for x in tok[2:].split(".")[:3])
    except (OSError, ValueError, subprocess.SubprocessError):
        pass
    return (7, 0, 0)


def port_free(host: str, port: int) -> bool:
    if not 0 < port < 65536:
        return False
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Node and bus ports must stay below the kernel's ephemeral range: a port that
# is free when checked could otherwise be taken by any outgoing connection (our
# own clients' included) before redis-server binds it.
EPHEMERAL_LOW = ephemeral_low()


def port_range_problem(base: int, count: int, ephemeral_low: int = EPHEMERAL_LOW) -> str | None:
    """Why nodes on ports base..base+count-1 cannot run here, or None: each node also listens on
    its cluster bus port (port + 10000), and both must stay below the ephemeral range."""
    last = base + count - 1
    if base < 1:
        return f"base port {base}: ports start at 1"
    if last + BUS_PORT_OFFSET >= ephemeral_low:
        highest = ephemeral_low - BUS_PORT_OFFSET - count
        return (f"base port {base}: {count} nodes use ports {base}-{last} and cluster bus ports "
                f"{base + BUS_PORT_OFFSET}-{last + BUS_PORT_OFFSET} (port + {BUS_PORT_OFFSET}), which must stay "
                f"below {ephemeral_low}, where this machine's ephemeral client ports begin "
                f"(/proc/sys/net/ipv4/ip_local_port_range); use a base port of at most {highest}")
    return None


def node_ports_free(host: str, port: int) -> bool:
    return (
        port + BUS_PORT_OFFSET < EPHEMERAL_LOW
        and port_free(host, port)
        and port_free(host, port + BUS_PORT_OFFSET)
    )


def free_port_run(
    count: int, host: str = "127.0.0.1", lo: int = 20000, hi: int | None = None, attempts: int = 200
) -> int:
    """Find ``base`` so that base..base+count-1 and their bus ports are all free."""
    import random

    if hi is None:
        hi = EPHEMERAL_LOW - BUS_PORT_OFFSET - 32  # room above the run for added nodes
    span = hi - lo - count
    for _ in range(attempts):
        base = lo + random.randrange(max(span, 1))
        if all(node_ports_free(host, base + i) for i in range(count)):
            return base
    raise RuntimeError(f"no free run of {count} ports in {lo}-{hi}")


def poll(
    pred: Callable[[], object],
    timeout: float,
    what: str,
    interval: float = POLL_INTERVAL,
    describe: Callable[[], str] | None = None,
):
    """Call ``pred`` until it returns a truthy value; raise TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            res = pred()
            if res:
                return res
        except (redis.RedisError, OSError) as e:
            last_exc = e
        if time.monotonic() >= deadline:
            extra = ""
            if describe is not None:
                try:
                    extra = "; " + describe()
                except Exception as e:  # noqa: BLE001  # pragma: no cover - diagnostics only
                    extra = f"; (describe failed: {e!r})"
            if last_exc is not None:
                extra += f"; last error: {last_exc!r}"
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}{extra}")
        time.sleep(interval)


def parse_addr(s: str) -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    return (host or "127.0.0.1"), int(port)


def parse_cluster_nodes(text: str) -> list[dict]:
    """Parse CLUSTER NODES output into dicts.

    keys: id, host, port, flags (set), master_id (or None), link, epoch, slots (list[int]),
    myself (bool), healthy (bool), role ("primary"/"replica").
    """
    nodes = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        addr = parts[1].split(",", 1)[0]
        hostport = addr.split("@", 1)[0]
        host, _, port = hostport.rpartition(":")
        flags = set(parts[2].split(","))
        slots: list[int] = []
        for tok in parts[8:]:
            if tok.startswith("["):
                continue  # migrating / importing markers
            if "-" in tok:
                a, b = tok.split("-", 1)
                slots.extend(range(int(a), int(b) + 1))
            else:
                slots.append(int(tok))
        nodes.append(
            {
                "id": parts[0],
                "host": host,
                "port": int(port) if port.isdigit() else 0,
                "flags": flags,
                "master_id": None if parts[3] == "-" else parts[3],
                "epoch": int(parts[6]),
                "link": parts[7],
                "slots": slots,
                "myself": "myself" in flags,
                "healthy": not (flags & BAD_FLAGS) and port not in ("", "0"),
                "role": "primary" if "master" in flags else "replica",
            }
        )
    return nodes


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False


def pid_stopped(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("T", "t")
    except (OSError, IndexError):
        return True


def pid_is_redis(pid: int, port: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return ("redis" in cmd or "valkey" in cmd) and (f":{port}" in cmd or f"node-{port}" in cmd)


def die_with_parent():  # pragma: no cover - runs in the child after fork
    """preexec_fn: ask Linux to SIGKILL the child when the parent (thread) dies."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001, S110 - best effort, non-Linux
        pass


class NodeProcess:
    def __init__(self, port: int, directory: str):
        self.port = port
        self.dir = directory
        self.proc: subprocess.Popen | None = None
        self.pid: int | None = None
        self.log: Any = None  # file handle for stdout/stderr

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return self.pid is not None and pid_alive(self.pid)

    def wait(self, timeout: float) -> bool:
        if self.proc is not None:
            try:
                self.proc.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def signal(self, sig: int) -> None:
        if self.pid is None:
            return
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def close_log(self) -> None:
        if self.log is not None:
            try:
                self.log.close()
            except OSError:
                pass
            self.log = None

