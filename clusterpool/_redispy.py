"""The one seam to redis-py's internals.

Everything clusterpool takes from redis-py beyond its documented API (its
`__all__`s, the connection, retry, backoff, lock, pubsub and command-mixin
classes, the exception types) comes through this module: the undocumented
module constants, helper functions and parsers, and the private attributes of
redis-py objects. When a redis-py release moves one of them, this file is the
one to change; `tests/unit/test_redispy_seam.py` keeps every other module off
them.

How it adapts: each name is looked up once, at import, by what exists (a
module, an attribute), not by comparing version strings. The range tested is
the one in pyproject.toml (redis 8.1.x-8.2.x); a name a release drops falls
back to an owned copy where we only need its value, so a new release breaks a
test here, not `import clusterpool`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import redis.client as _client
import redis.cluster as _cluster
import redis.commands as _commands
import redis.commands.helpers as _helpers
import redis.connection as _connection
import redis.utils as _utils
from redis._parsers.encoders import Encoder
from redis._parsers.helpers import get_response_callbacks as _get_response_callbacks
from redis.backoff import AbstractBackoff
from redis.event import EventDispatcher, EventDispatcherInterface
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

__all__ = [
    "EMPTY_RESPONSE", "NEVER_DECODE", "PIPELINE_BLOCKED_COMMANDS", "READ_COMMANDS", "SLOT_ID",
    "CaseInsensitiveDict", "CommandMixinState", "Encoder", "command_text", "EventDispatcher", "backoff_of", "cluster_reply_callbacks",
    "NOT_ENOUGH_DATA", "get_response_callbacks", "hiredis_reader", "list_or_args", "parse_pubsub_subscriptions",
    "parse_url", "pubsub_subscription_args", "raw_socket", "redis_version", "safe_str",
    "str_if_bytes", "stream_writer", "sync_parser", "truncate_text",
]

redis_version: str = getattr(__import__("redis"), "__version__", "unknown")

# -- option keys redis-py's command methods pass to execute_command ------------------------------
EMPTY_RESPONSE: str = getattr(_client, "EMPTY_RESPONSE", "EMPTY_RESPONSE")
NEVER_DECODE: str = getattr(_client, "NEVER_DECODE", "NEVER_DECODE")

# -- command tables ---------------------------------------------------------------------------
# The read-only commands RedisCluster lets read_from_replicas send to a replica (redis-py 8.2
# deprecates using it for that and will drop it; the copy is 8.2's set, checked in the seam test).
READ_COMMANDS: frozenset[str] = frozenset(getattr(_commands, "READ_COMMANDS", ())) or frozenset({
    "BITCOUNT", "BITFIELD_RO", "BITPOS", "DBSIZE", "DIGEST", "DUMP", "EVALSHA_RO", "EVAL_RO",
    "EXISTS", "EXPIRETIME", "FCALL_RO", "FT.ALIASLIST", "FT.EXPLAIN", "FT.INFO", "FT.PROFILE",
    "FT.SEARCH", "GEODIST", "GEOHASH", "GEOPOS", "GEOSEARCH", "GET", "GETBIT", "GETRANGE",
    "HEXISTS", "HEXPIRETIME", "HGET", "HGETALL", "HKEYS", "HLEN", "HMGET", "HPEXPIRETIME", "HPTTL",
    "HRANDFIELD", "HSCAN", "HSTRLEN", "HTTL", "HVALS", "JSON.ARRINDEX", "JSON.ARRLEN", "JSON.GET",
    "JSON.MGET", "JSON.OBJKEYS", "JSON.OBJLEN", "JSON.RESP", "JSON.STRLEN", "JSON.TYPE", "KEYS",
    "LCS", "LINDEX", "LLEN", "LPOS", "LRANGE", "MGET", "PEXPIRETIME", "PTTL", "RANDOMKEY", "SCAN",
    "SCARD", "SDIFF", "SDIFFCARD", "SINTER", "SINTERCARD", "SISMEMBER", "SMEMBERS", "SMISMEMBER",
    "SRANDMEMBER", "SSCAN", "STRLEN", "SUNION", "SUNIONCARD", "TTL", "TYPE", "XLEN", "XPENDING",
    "XRANGE", "XREAD", "XREVRANGE", "ZCARD", "ZCOUNT", "ZDIFF", "ZINTER", "ZINTERCARD",
    "ZLEXCOUNT", "ZMSCORE", "ZRANDMEMBER", "ZRANGE", "ZRANGEBYLEX", "ZRANGEBYSCORE", "ZRANK",
    "ZREVRANGE", "ZREVRANGEBYLEX", "ZREVRANGEBYSCORE", "ZREVRANK", "ZSCAN", "ZSCORE", "ZUNION",
})
# Commands RedisCluster refuses to queue in a pipeline.
PIPELINE_BLOCKED_COMMANDS: tuple[str, ...] = tuple(getattr(_cluster, "PIPELINE_BLOCKED_COMMANDS", ()))
# The target_nodes-style option RedisCluster's command methods use to pin a slot.
SLOT_ID: str = getattr(_cluster, "SLOT_ID", "slot-id")

# -- helpers redis-py's own command methods and clients use ---------------------------------
CaseInsensitiveDict: Any = _client.CaseInsensitiveDict
list_or_args: Callable[..., list[Any]] = _helpers.list_or_args
parse_pubsub_subscriptions: Callable[..., Any] = _helpers.parse_pubsub_subscriptions
pubsub_subscription_args: Callable[..., Any] = _helpers.pubsub_subscription_args
safe_str: Callable[[Any], str] = _utils.safe_str
str_if_bytes: Callable[[Any], Any] = _utils.str_if_bytes
truncate_text: Callable[..., str] = _utils.truncate_text
parse_url: Callable[[str], dict[str, Any]] = _connection.parse_url

# redis-py's reply callbacks for a protocol, as redis.Redis installs them
get_response_callbacks: Callable[..., dict[Any, Any]] = _get_response_callbacks



_command_text: Callable[[Any], str] | None = getattr(_utils, "command_text", None)


def command_text(args: Any) -> str:
    """A command as RedisCluster writes it into its error messages: 8.2 redacts credentials and
    truncates (redis.utils.command_text); 8.1 printed the argument tuple."""
    if _command_text is None:
        return str(tuple(args))
    return truncate_text(_command_text(args))


class CommandMixinState:
    """What redis-py's command mixins read from the object they are mixed into: every client,
    pipeline and transaction class of ours takes it as a base."""

    _event_dispatcher: EventDispatcherInterface = EventDispatcher()


def cluster_reply_callbacks(protocol: Any, legacy_responses: bool) -> dict[str, Any]:
    """RedisCluster's own reply parsers for CLUSTER SLOTS / SHARDS / MYSHARDID, per protocol."""
    out: dict[str, Any] = dict(getattr(_cluster.RedisCluster, "CLUSTER_COMMANDS_RESPONSE_CALLBACKS", {}))
    unified = getattr(_cluster, "parse_cluster_shards_unified", None)
    str_keys = getattr(_cluster, "parse_cluster_shards_with_str_keys", None)
    if not legacy_responses and unified is not None:
        out["CLUSTER SHARDS"] = unified
    elif protocol is None and str_keys is not None:
        out["CLUSTER SHARDS"] = str_keys
    return out


# -- private attributes of redis-py objects ----------------------------------------------------

def backoff_of(retry: Retry) -> AbstractBackoff:
    """A Retry's backoff: redis-py has no public accessor."""
    return retry._backoff


def raw_socket(conn: Any) -> Any:
    """A sync redis-py connection's socket (None while disconnected)."""
    return conn._sock


def sync_parser(conn: Any) -> Any:
    """A sync redis-py connection's reply parser (read_response without the layers around it)."""
    return conn._parser


def stream_writer(conn: Any) -> asyncio.StreamWriter:
    """An asyncio redis-py connection's StreamWriter, for writes without a coroutine per flush."""
    writer = conn._writer
    if writer is None:
        raise RedisConnectionError("the connection is not open")
    return writer


try:
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NOT_ENOUGH_DATA
    from redis._parsers.hiredis import _AsyncHiredisParser
except ImportError:  # pragma: no cover - another layout: the mux reads through redis-py
    _NOT_ENOUGH_DATA = None
    _AsyncHiredisParser = None  # type: ignore[assignment,misc]
NOT_ENOUGH_DATA: Any = _NOT_ENOUGH_DATA  # what the hiredis reader returns until a reply is complete


def hiredis_reader(conn: Any) -> tuple[Any, asyncio.StreamReader, int] | None:
    """An asyncio connection's hiredis reader, its stream and read size, or None when redis-py
    parses in Python (no hiredis, or a layout this seam does not know)."""
    parser = getattr(conn, "_parser", None)
    if _AsyncHiredisParser is None or not isinstance(parser, _AsyncHiredisParser):
        return None
    reader, stream = getattr(parser, "_reader", None), getattr(conn, "_reader", None)
    if reader is None or stream is None or not hasattr(reader, "gets"):
        return None
    return reader, stream, getattr(parser, "_read_size", 65536)

