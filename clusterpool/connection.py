"""redis-py connections that know their role: replica connections send READONLY on (re)connect."""

from __future__ import annotations

import contextlib
import socket
import struct
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from redis.connection import AbstractConnection, Connection, SSLConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ._redispy import raw_socket, sync_parser
from .invalidation import Link, tracking_command


if TYPE_CHECKING:  # the mixin's attributes and methods are redis-py Connection's
    _ConnectionBase = Connection
else:
    _ConnectionBase = object


class _NodeConnectionMixin(_ConnectionBase):
    """The handshake with fewer round trips; READONLY on replica connections, also on every
    reconnect; a leaner send and read for the router's single-command path.

    redis-py sends CLIENT SETINFO LIB-NAME and LIB-VER one round trip each
    after HELLO, and on servers before 7.2 both fail (unknown subcommand).
    Here they are skipped when HELLO says the server is older than 7.2, and
    otherwise written together with READONLY (on replicas) in one packet.
    """

    readonly_mode = False
    announce = True  # send CLIENT SETINFO (probe connections do not)
    kernel_timeouts = False  # make_connection sets it (pooled and probe connections, not pub/sub's)
    # client-side caching: the node's invalidation link to redirect to (None: no tracking), and the
    # generation of the link this connection's tracking points at (None: untracked)
    tracking: Callable[[], Link | None] | None = None
    tracking_gen: int | None = None
    tracking_for: int | None = None  # the link generation tracking was last asked for (even if refused)

    def on_connect_check_health(self, check_health: bool = True) -> None:
        if self.kernel_timeouts:
            self._use_kernel_timeouts()
        info = self.driver_info
        self.driver_info = None  # redis-py's own SETINFO round trips are replaced below
        try:
            super().on_connect_check_health(check_health)
        finally:
            self.driver_info = info
        cmds: list[tuple[Any, ...]] = []
        if info is not None and self.announce and _has_setinfo(getattr(self, "handshake_metadata", None)):
            if info.formatted_name:
                cmds.append(("CLIENT", "SETINFO", "LIB-NAME", info.formatted_name))
            if info.lib_version:
                cmds.append(("CLIENT", "SETINFO", "LIB-VER", info.lib_version))
        if self.readonly_mode:
            cmds.append(("READONLY",))
        self.tracking_gen = None
        link = self.tracking() if self.tracking is not None else None
        self.tracking_for = link.gen if link is not None else None
        if link is not None:
            cmds.append(tracking_command(link.client_id))  # type: ignore[arg-type]
        if not cmds:
            return
        self.send_packed_command(self.pack_commands(cmds), check_health=False)
        for cmd in cmds:
            try:
                reply = self.read_response()
            except ResponseError as e:
                if cmd[0] == "READONLY":
                    raise RedisConnectionError(f"READONLY failed on replica connection: {e}") from e
                continue  # SETINFO refused (ACL, proxy): as redis-py, not an error; TRACKING: untracked
            if cmd[0] == "CLIENT" and cmd[1] == "TRACKING" and link is not None:
                self.tracking_gen = link.gen
            if cmd[0] == "READONLY" and reply not in (b"OK", "OK", True):
                raise RedisConnectionError(f"READONLY failed on replica connection: {reply!r}")


    def _use_kernel_timeouts(self) -> None:
        """Make the socket blocking, with the same timeout enforced by the kernel (SO_RCVTIMEO/SO_SNDTIMEO).

        A Python socket with a timeout polls before every send and every
        receive: two system calls more per command than a blocking one. A
        timeout then surfaces as EAGAIN instead of socket.timeout; the read and
        send methods below turn it back into redis-py's TimeoutError. A read
        with its own timeout (redis-py's can_read) puts the socket back into
        Python's timeout mode, which is correct, only slower. TLS sockets, and
        connections without a timeout, keep redis-py's setup.
        """
        sock, timeout = raw_socket(self), self.socket_timeout
        if type(sock) is not socket.socket or not timeout or timeout <= 0 or not sys.platform.startswith("linux"):
            if sock is not None:
                sock.settimeout(timeout)  # as redis-py sets it at connect (also after limit/unlimit)
            return
        sec = int(timeout)
        tv = struct.pack("ll", sec, int((timeout - sec) * 1_000_000))
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
        except OSError:
            return
        sock.settimeout(None)

    _unlimited: tuple[float | None, float | None] | None = None

    def limit(self, seconds: float) -> None:
        """Cap connect, read and write timeouts at `seconds` until `unlimit()`: the attempt a
        call's deadline leaves less time for than this connection's own timeouts."""
        saved = self._unlimited or (self.socket_timeout, self.socket_connect_timeout)
        seconds = max(seconds, 0.001)  # 0 would mean "no timeout" to the kernel
        read, connect = min(saved[0] or seconds, seconds), min(saved[1] or seconds, seconds)
        if (read, connect) == (self.socket_timeout, self.socket_connect_timeout):
            return  # more time left than the connection's own timeouts: nothing to change (no syscall)
        self._unlimited = saved
        changed = read != self.socket_timeout
        self.socket_timeout, self.socket_connect_timeout = read, connect
        if changed:
            self._apply_timeouts()

    def unlimit(self) -> None:
        """This connection's own timeouts again (after `limit`)."""
        saved, self._unlimited = self._unlimited, None
        if saved is not None:
            self.socket_timeout, self.socket_connect_timeout = saved
            self._apply_timeouts()

    def _apply_timeouts(self) -> None:
        """socket_timeout onto an open socket, the way it was set at connect."""
        sock = raw_socket(self)
        if sock is None:
            return
        if not self.kernel_timeouts:
            sock.settimeout(self.socket_timeout)
            return
        if not self.socket_timeout and type(sock) is socket.socket and sys.platform.startswith("linux"):
            with contextlib.suppress(OSError):  # back to no timeout: drop the kernel's from a limit
                for opt in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
                    sock.setsockopt(socket.SOL_SOCKET, opt, struct.pack("ll", 0, 0))
        self._use_kernel_timeouts()

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        """redis-py's read_response, with a kernel timeout (EAGAIN) raised as the TimeoutError it is."""
        try:
            return super().read_response(*args, **kwargs)
        except RedisConnectionError as e:
            if isinstance(e.__context__, BlockingIOError):
                raise RedisTimeoutError(f"Timeout reading from {self.host}:{self.port}") from None
            raise

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        """redis-py's send_packed_command, with a kernel timeout (EAGAIN) raised as TimeoutError."""
        try:
            super().send_packed_command(command, check_health)
        except RedisConnectionError as e:
            if isinstance(e.__context__, BlockingIOError):
                raise RedisTimeoutError("Timeout writing to socket") from None
            raise

    # the router's single-command path: redis-py's send_packed_command + read_response, minus layers
    # (str check and loop on send; eager error-text formatting and the RESP2/3 branch on read)

    def send_packed(self, data: bytes) -> None:
        """Write one packed command; errors as send_packed_command raises them."""
        if not self.is_connected:
            self.connect()
        sock = raw_socket(self)
        assert sock is not None
        try:
            sock.sendall(data)
        except (TimeoutError, BlockingIOError):  # Python's timeout, or the kernel's (EAGAIN)
            self.disconnect()
            raise RedisTimeoutError("Timeout writing to socket") from None
        except OSError as e:
            self.disconnect()
            errno, errmsg = ("UNKNOWN", e.args[0]) if len(e.args) == 1 else (e.args[0], e.args[1])
            raise RedisConnectionError(f"Error {errno} while writing to socket. {errmsg}.") from e
        except BaseException:
            self.disconnect()
            raise

    def read_reply(self, disable_decoding: bool = False) -> Any:
        """Read one reply; errors as redis-py's read_response raises them (error replies raised)."""
        try:
            response = sync_parser(self).read_response(disable_decoding=disable_decoding)
        except TimeoutError:
            self.disconnect()
            raise RedisTimeoutError(f"Timeout reading from {self.host}:{self.port}") from None
        except OSError as e:
            self.disconnect()
            raise RedisConnectionError(
                f"Error while reading from {self.host}:{self.port} : {e.args}"
            ) from e
        except RedisConnectionError as e:
            self.disconnect()
            if isinstance(e.__context__, BlockingIOError):  # the kernel's timeout (EAGAIN)
                raise RedisTimeoutError(f"Timeout reading from {self.host}:{self.port}") from None
            raise
        except BaseException:
            self.disconnect()
            raise
        if self.health_check_interval:
            self.next_health_check = time.monotonic() + self.health_check_interval  # type: ignore[assignment]
        if isinstance(response, ResponseError):
            raise response
        return response

def _has_setinfo(hello: Any) -> bool:
    """Whether the server (as its HELLO reply describes it) knows CLIENT SETINFO (7.2+); True when
    there was no HELLO reply (RESP2) to tell."""
    if not isinstance(hello, dict):
        return True
    raw = hello.get(b"version", hello.get("version"))
    if raw is None:
        return True
    try:
        version = tuple(int(x) for x in (raw.decode() if isinstance(raw, bytes) else str(raw)).split(".")[:2])
    except ValueError:
        return True
    return version >= (7, 2)


class NodeConnection(_NodeConnectionMixin, Connection):
    """A TCP connection to one cluster node."""


class SSLNodeConnection(_NodeConnectionMixin, SSLConnection):
    """A TLS connection to one cluster node."""


try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis is a dependency
    _hiredis_pack = None  # type: ignore[assignment]


def pack_one(conn: AbstractConnection, args: Sequence[Any]) -> bytes:
    """The wire form of one command, as redis-py's hiredis packer makes it, minus its per-argument checks.

    redis-py's packer re-inspects every argument of every command; hiredis
    itself accepts str, bytes, int, float and memoryview. Anything else (or no
    hiredis) goes through the connection's own packer, which raises redis-py's
    errors for bad arguments.
    """
    if _hiredis_pack is not None:
        head = args[0]
        if (" " in head) if type(head) is str else (type(head) is bytes and b" " in head):
            args = (*head.split(), *args[1:])
        try:
            return _hiredis_pack(args if type(args) is tuple else tuple(args))
        except TypeError:
            pass
    return b"".join(conn.pack_command(*args))


def pack_many(conn: AbstractConnection, commands: Sequence[Sequence[Any]]) -> Any:
    """The wire form of several commands, for one send."""
    if _hiredis_pack is None:
        return conn.pack_commands(commands)
    return [b"".join([pack_one(conn, args) for args in commands])]


def command_info(conn: AbstractConnection, name: str) -> Sequence[Any] | None:
    """The server's COMMAND INFO entry for one command, or None when it does not know the command."""
    conn.send_command("COMMAND", "INFO", name)
    reply = conn.read_response()
    return reply[0] if reply and reply[0] else None


def make_connection(host: str, port: int, kwargs: dict[str, Any], *, ssl: bool, readonly: bool,
                    tracking: Callable[[], Link | None] | None = None) -> NodeConnection | SSLNodeConnection:
    """A new (not yet connected) connection; retries are the router's job, not the connection's."""
    kwargs = {k: v for k, v in kwargs.items() if k not in ("retry", "retry_on_timeout", "retry_on_error")}
    cls: type[NodeConnection | SSLNodeConnection] = SSLNodeConnection if ssl else NodeConnection
    # no retry= given is redis-py's Retry(NoBackoff(), 0), built fresh; passing one costs a deepcopy
    conn = cls(host=host, port=port, **kwargs)
    conn.readonly_mode = readonly
    conn.kernel_timeouts = True
    if tracking is not None:
        conn.tracking = tracking
    return conn
