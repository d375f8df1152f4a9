"""Exception types: subclasses of redis-py's, so `except redis.exceptions.X` keeps working."""

from __future__ import annotations

from redis import exceptions as _rx


class ClusterPoolError(_rx.RedisError):
    """Base of the errors clusterpool adds."""


class ConfigurationError(ClusterPoolError, ValueError):
    """A client option is wrong; raised before anything is sent."""


class ClusterUnreachableError(ClusterPoolError, _rx.ConnectionError):
    """No startup or known node answered; the message lists what was tried and why each failed."""


class NotAClusterError(ClusterPoolError, _rx.RedisClusterException):
    """The server answered but runs without `cluster-enabled yes`."""


class CrossSlotError(ClusterPoolError, _rx.ClusterCrossSlotError, _rx.RedisClusterException):
    """A multi-key command's keys hash to different slots; raised before sending.

    Also a RedisClusterException, which is what RedisCluster raises for it.
    """


class CrossSlotTransactionError(CrossSlotError, _rx.CrossSlotTransactionError):
    """A transaction's (or its WATCH's) keys are in more than one slot; raised before sending."""


class CrossSlotCommandError(CrossSlotError):
    """One pipelined command's keys are in more than one slot; raised when it is queued."""


class MissingKeyError(ClusterPoolError, _rx.RedisClusterException):
    """A keyed command was given no key, so no slot says where it goes; raised before sending."""


class WriteOnReaderError(ClusterPoolError, _rx.ReadOnlyError):
    """A write command was issued through `client.reader`; raised before sending."""


class TooManyRedirectionsError(ClusterPoolError, _rx.ClusterError):
    """MOVED/ASK/TRYAGAIN/CLUSTERDOWN hops exceeded `max_redirections` for one command."""


class SlotNotCoveredError(ClusterPoolError, _rx.SlotNotCoveredError, _rx.ClusterDownError):
    """Nobody serves the slot (cluster not fully covered): RedisCluster raises ClusterDownError
    there, so this is one too, as well as redis-py's SlotNotCoveredError."""


class RetryTimeoutError(ClusterPoolError, _rx.TimeoutError):
    """The call's deadline (`retry_timeout` from its start) passed before it could be carried out;
    chained to the last failure. Every path (command, pipeline, transaction) raises this one."""


class PoolTimeoutError(ClusterPoolError, _rx.ConnectionError):
    """No connection of a node's pool became free within `pool_timeout`."""


class PoolClosedError(ClusterPoolError, _rx.ConnectionError):
    """The pool (or the whole client) was closed."""


class NodeUnavailableError(ClusterPoolError, _rx.ConnectionError):
    """The node's circuit breaker is open after repeated failures; retried after its cool-down."""


class UnknownOutcomeError(ClusterPoolError, _rx.ConnectionError):
    """A write was sent but the connection broke before its reply: it may or may not have applied."""


class AttemptError(ClusterPoolError):
    """A connection failure that says how far its command got (the asyncio connection layer's):
    `sent`, the bytes were written so a write may have run; `reused`, the connection had
    answered before, so it may just have been closed while idle."""

    sent: bool = False
    reused: bool = False


def refused(error: BaseException) -> bool:
    """Whether an error reply means the node will not run that command for us: denied by the
    user's ACL (NOPERM) or unknown to the server (an older version, a proxy). The node is up and
    answering; the caller asks for something else (discovery) or takes the answer as a sign of life
    (health probes), rather than counting it as the node's failure."""
    return isinstance(error, _rx.NoPermissionError) or (
        isinstance(error, _rx.ResponseError) and "unknown" in str(error).lower())
