"""How to open one connection to one node: a frozen value, and the function that opens it.

How this works: `NodeSettings` holds the address, the role (a replica connection sends
READONLY after the handshake), the per-command timeout and the redis-py connection
keywords (username/password, protocol for HELLO, decode_responses, client_name, ssl_*...).
`open_connection()` builds redis-py's asyncio `Connection` (or `SSLConnection`), runs its
handshake (HELLO / AUTH / CLIENT SETNAME / SETINFO) and READONLY within the connect
timeout, then clears the connection's own socket timeout: from then on timeouts are
per command and belong to the caller, so a slow reply never tears down a shared socket.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.connection import Connection, SSLConnection
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.asyncio.retry import Retry

from ..options import CONNECTION_KEYS
from ..errors import ConfigurationError

# Keywords that NodeSettings holds itself rather than passing through.
_OWN = frozenset({"socket_timeout", "socket_connect_timeout"})
_PASSED = (CONNECTION_KEYS - _OWN) | {"ssl"}
_SECRET = frozenset({"password", "ssl_password"})

DEFAULT: Any = object()  # "the configured timeout", distinct from None ("wait for ever")


@dataclass(frozen=True, slots=True)
class NodeSettings:
    """Everything needed to open a connection to one node; passwords stay out of the repr."""

    host: str
    port: int
    readonly: bool = False
    socket_timeout: float | None = None  # per command; None waits for ever
    socket_connect_timeout: float | None = 5.0  # TCP connect + handshake + READONLY
    kwargs: tuple[tuple[str, Any], ...] = field(default=(), repr=False)

    @classmethod
    def make(cls, host: str, port: int, *, readonly: bool = False, **kwargs: Any) -> NodeSettings:
        """Validated settings: unknown keywords and bad timeouts fail here, before any I/O."""
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigurationError(f"port must be an int in 1..65535, got {port!r}")
        unknown = sorted(set(kwargs) - _PASSED - _OWN)
        if unknown:
            raise ConfigurationError(f"unknown connection keyword(s): {', '.join(unknown)}")
        st = kwargs.pop("socket_timeout", None)
        ct = kwargs.pop("socket_connect_timeout", 5.0)
        for name, v in (("socket_timeout", st), ("socket_connect_timeout", ct)):
            if v is not None and (not isinstance(v, int | float) or v <= 0):
                raise ConfigurationError(f"{name} must be a positive number or None, got {v!r}")
        if kwargs.get("protocol", 2) not in (2, 3, "2", "3"):
            raise ConfigurationError(f"protocol must be 2 or 3, got {kwargs['protocol']!r}")
        return cls(host, port, readonly, st, ct, tuple(sorted(kwargs.items())))

    @property
    def name(self) -> str:
        """`host:port`, as the cluster names nodes."""
        return f"{self.host}:{self.port}"

    @property
    def options(self) -> dict[str, Any]:
        """The redis-py connection keywords (a copy)."""
        return dict(self.kwargs)

    def describe(self) -> str:
        """A log-safe one-line description (secrets masked)."""
        opts = ", ".join(f"{k}={'***' if k in _SECRET else v!r}" for k, v in self.kwargs)
        role = "replica" if self.readonly else "primary"
        return f"{self.name} ({role}{', ' + opts if opts else ''})"


async def open_connection(settings: NodeSettings) -> Connection:
    """A connected, handshaken redis-py asyncio connection with no socket timeout of its own.

    Fails with redis-py's ConnectionError / TimeoutError / AuthenticationError; the socket
    is closed on every failure and on cancellation.
    """
    opts = settings.options
    ssl = bool(opts.pop("ssl", False))
    cls = SSLConnection if ssl else Connection
    conn = cls(
        host=settings.host,
        port=settings.port,
        socket_timeout=settings.socket_connect_timeout,
        socket_connect_timeout=settings.socket_connect_timeout,
        retry=Retry(NoBackoff(), 0),
        **opts,
    )
    try:
        async with asyncio.timeout(settings.socket_connect_timeout):
            await conn.connect()
            if settings.readonly:
                await conn.send_command("READONLY", check_health=False)
                reply = await conn.read_response()
                if reply not in (b"OK", "OK", True):
                    raise RedisConnectionError(f"READONLY failed on {settings.name}: {reply!r}")
    except TimeoutError:
        await close_connection(conn)
        raise RedisTimeoutError(f"connecting to {settings.name} timed out") from None
    except BaseException:
        await close_connection(conn)
        raise
    conn.socket_timeout = None
    return conn


async def close_connection(conn: Connection) -> None:
    """Close the socket and return once it is closed (bounded by the connect timeout)."""
    try:
        await conn.disconnect()
    except Exception:  # noqa: BLE001 - closing a broken socket may fail; it is gone anyway
        pass
    await asyncio.sleep(0)  # a transport closed by redis-py's own error path closes its socket next iteration
