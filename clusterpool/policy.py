"""What to do after a failed attempt (pure): redirect, retry, wait for a new map, or raise.

How this works: a driver (plain command, pipeline, transaction, pub/sub; sync or
asyncio) sends a command, and when the attempt does not give a reply it describes
what happened as a `Failure` and calls `decide(failure, budget, ...)`. The answer is
an `Action` carrying the new `Budget` (budgets are immutable values, like urllib3's
`Retry.increment()`: a driver keeps the one it got back). The driver carries the
action out (repoint a slot, mark a node, sleep, resend, raise) and decides nothing
itself. The time is passed in, never read, so every branch is unit-tested without a
clock; the backoff is a function of the attempt number, passed in too.

The rules:
  * MOVED: resend to the new owner and repoint that slot in the map; a replica that
    answers MOVED to a read is kept off reads until it proves healthy. ASK: resend
    once to the importing node with ASKING. TRYAGAIN, CLUSTERDOWN (which also asks
    for a new map) and LOADING: back off, then re-route. Every one of these is a hop;
    `max_redirections` hops end in TOO_MANY_REDIRECTIONS, and MAX_UNSERVED answers
    "CLUSTERDOWN Hash slot not served" in NOT_SERVED (nobody owns the slot).
  * Breaker open: the node is not tried; wait (up to the backoff) for a map that
    routes elsewhere, counting against the retry budget.
  * A pooled connection the server had closed fails once without counting against
    the node: drop its idle siblings and resend at once on a fresh connection.
  * Any other connection failure marks the node failed and waits, up to the backoff,
    for a map that moves the slot; the retry budget is `retries` attempts, or the
    call's deadline when `retry_timeout` is set.
  * With a deadline (retry_timeout from the start of the call, carried in the Budget),
    no wait runs past it and every path gives up at it with DEADLINE; a backoff that
    would reach it gives up at once, since no try could follow it.
  * A command that was sent when its connection broke may have run: unless it is
    read-only or the user opted in, it ends in UNKNOWN_OUTCOME instead of a retry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum

from redis import exceptions as rx

from . import errors


class Kind(str, Enum):
    """What an attempt ran into."""

    MOVED = "moved"
    ASK = "ask"
    TRYAGAIN = "tryagain"
    CLUSTERDOWN = "clusterdown"
    UNSERVED = "unserved"  # CLUSTERDOWN Hash slot not served: the answering node has no owner for the slot
    LOADING = "loading"
    CONNECTION = "connection"  # refused, reset, closed
    TIMEOUT = "timeout"
    BREAKER_OPEN = "breaker_open"  # not tried: the node's breaker is open


class Do(str, Enum):
    """What the driver does next."""

    REDIRECT = "redirect"  # send to `node` now (with ASKING when `asking`)
    RETRY_FRESH = "retry_fresh"  # same node, same ASKING, on a new connection, now
    BACKOFF = "backoff"  # sleep `delay`, then send to the slot's owner in the newest map
    WAIT_FOR_MAP = "wait_for_map"  # wait up to `delay` for a map that routes elsewhere, then send
    RAISE = "raise"


class Give(str, Enum):
    """Why the driver gives up (which error it raises)."""

    TOO_MANY_REDIRECTIONS = "too_many_redirections"
    UNKNOWN_OUTCOME = "unknown_outcome"
    UNAVAILABLE = "unavailable"  # breaker open and the budget is spent
    SPENT = "spent"  # the retry budget is spent: re-raise the connection error
    NOT_SERVED = "not_served"  # MAX_UNSERVED answers said nobody serves the slot
    DEADLINE = "deadline"  # the call's deadline (retry_timeout from its start) has passed


@dataclass(frozen=True, slots=True)
class Failure:
    """One attempt that gave no reply: what happened, on which node, and how far it got."""

    kind: Kind
    node: str
    sent: bool = False  # the command was written (it may have run)
    fresh: bool = True  # on a connection opened for this attempt, not a pooled one
    target: str = ""  # MOVED/ASK: the node named in the reply

    @property
    def replied(self) -> bool:
        """The server answered (a redirect or LOADING): the connection is still in step."""
        return self.kind in _REDIRECTS


@dataclass(frozen=True, slots=True)
class Budget:
    """How much of a command's redirection and retry allowance is used: an immutable value."""

    max_redirections: int = 16
    retries: int = 10
    deadline: float | None = None  # monotonic time the call gives up at (retry_timeout from its start); replaces `retries`
    hops: int = 0
    failures: int = 0
    unserved: int = 0  # "Hash slot not served" answers so far
    stale_retried: bool = False

    def may_retry(self, now: float) -> bool:
        """Whether another retry after a connection failure is within the budget."""
        if self.deadline is not None:
            return now < self.deadline
        return self.failures <= self.retries

    def failed(self, now: float) -> Budget:
        """One more connection failure."""
        return replace(self, failures=self.failures + 1)

    def left(self, now: float) -> float | None:
        """Seconds until the deadline (0 once it passed); None without a deadline."""
        return None if self.deadline is None else max(self.deadline - now, 0.0)


def deadline_after(retry_timeout: float | None, now: float) -> float | None:
    """The deadline of a call starting at `now` (None: no deadline, the retry count bounds it)."""
    return None if retry_timeout is None else now + retry_timeout


@dataclass(frozen=True, slots=True)
class Action:
    """The driver's next step and the budget to carry into it."""

    do: Do
    budget: Budget
    node: str = ""  # REDIRECT / RETRY_FRESH: where
    asking: bool = False
    delay: float = 0.0  # BACKOFF / WAIT_FOR_MAP: seconds at most
    give: Give | None = None  # RAISE: why
    repoint: bool = False  # MOVED: point the slot at `node` in the map now
    refresh: bool = False  # ask the refresher for a new map
    mark_failed: bool = False  # count a failure against the node (its breaker)
    keep_reads_off: bool = False  # LOADING, or MOVED from a replica: no reads there for now
    drop_idle: bool = False  # close the node's idle pooled connections (they are likely dead too)


def decide(
    failure: Failure,
    budget: Budget,
    *,
    now: float,
    backoff: Callable[[int], float],
    readonly: bool,
    retry_unknown: bool = False,
    on_replica: bool = False,
    asking: bool = False,
    keyed: bool = True,
) -> Action:
    """The action after `failure` (see the module docstring for the rules).

    `readonly`: the command cannot write; `retry_unknown`: the user allows resending writes
    that may have run; `on_replica`: the failed attempt went to a replica; `asking`: it was
    an ASK resend (kept on a fresh-connection retry); `keyed`: the command has a slot, so a
    read can go to another node of the shard at once.
    """
    action = _decide(failure, budget, now=now, backoff=backoff, readonly=readonly, retry_unknown=retry_unknown,
                     on_replica=on_replica, asking=asking, keyed=keyed)
    return action if action.budget.deadline is None else _by_deadline(action, now)


def _by_deadline(action: Action, now: float) -> Action:
    """`action` within the call's deadline: no wait past it, and at it give up with DEADLINE
    (a write that may have run still says UNKNOWN_OUTCOME, a redirect loop TOO_MANY_REDIRECTIONS)."""
    left = action.budget.left(now) or 0.0
    if action.do is Do.RAISE:
        spent = action.give in (Give.SPENT, Give.UNAVAILABLE)  # with a deadline: it passed
        return replace(action, give=Give.DEADLINE) if spent else action
    if left <= 0 or (action.do is Do.BACKOFF and action.delay >= left):
        # a backoff to the deadline leaves no time for the try after it
        return replace(action, do=Do.RAISE, give=Give.DEADLINE, node="", asking=False, delay=0.0)
    return replace(action, delay=min(action.delay, left))


def _decide(failure: Failure, budget: Budget, *, now: float, backoff: Callable[[int], float], readonly: bool,
            retry_unknown: bool, on_replica: bool, asking: bool, keyed: bool) -> Action:
    kind = failure.kind
    if kind in _REDIRECTS:
        b = replace(budget, hops=budget.hops + 1, unserved=budget.unserved + (kind is Kind.UNSERVED))
        # what the reply says about the cluster holds even when this command gives up
        said = Action(Do.RAISE, b, repoint=kind is Kind.MOVED, refresh=kind in _ASK_FOR_MAP,
                      keep_reads_off=kind is Kind.LOADING or (kind is Kind.MOVED and on_replica))
        if b.unserved >= MAX_UNSERVED:
            return replace(said, give=Give.NOT_SERVED)
        if b.hops >= b.max_redirections:
            return replace(said, give=Give.TOO_MANY_REDIRECTIONS)
        if kind is Kind.MOVED or kind is Kind.ASK:
            return replace(said, do=Do.REDIRECT, node=failure.target, asking=kind is Kind.ASK)
        delay = 0.0 if kind is Kind.LOADING and readonly and keyed else backoff(b.hops)
        return replace(said, do=Do.BACKOFF, delay=delay)

    may_have_run = failure.sent and not (readonly or retry_unknown)
    if kind is Kind.BREAKER_OPEN:
        b = budget.failed(now)
        if not b.may_retry(now):
            return Action(Do.RAISE, b, give=Give.UNAVAILABLE)
        return Action(Do.WAIT_FOR_MAP, b, delay=backoff(b.failures), refresh=True)

    if kind is Kind.CONNECTION and not failure.fresh and not budget.stale_retried:
        # a pooled connection the server had closed (CLIENT KILL, idle timeout, restart) says
        # nothing about the node yet, and its idle siblings are likely closed too
        b = replace(budget, stale_retried=True)
        if may_have_run:
            return Action(Do.RAISE, b, give=Give.UNKNOWN_OUTCOME, drop_idle=True)
        return Action(Do.RETRY_FRESH, b, node=failure.node, asking=asking, drop_idle=True)

    b = budget.failed(now)
    if may_have_run:
        return Action(Do.RAISE, b, give=Give.UNKNOWN_OUTCOME, mark_failed=True)
    if not b.may_retry(now):
        return Action(Do.RAISE, b, give=Give.SPENT, mark_failed=True)
    return Action(Do.WAIT_FOR_MAP, b, delay=backoff(b.failures), mark_failed=True, refresh=True)


_REDIRECTS = frozenset({Kind.MOVED, Kind.ASK, Kind.TRYAGAIN, Kind.CLUSTERDOWN, Kind.UNSERVED, Kind.LOADING})
_ASK_FOR_MAP = frozenset({Kind.CLUSTERDOWN, Kind.UNSERVED})

# "Hash slot not served" answers before giving up: a slot nobody owns is a configuration (DELSLOTS,
# a cluster being built), not a failover, which keeps its slots assigned to the failed primary. Four
# backoffs (0.75-1.5 s with the default retry) stay well under RedisCluster's 6-7 s there.
MAX_UNSERVED = 5


def reply_kind(e: BaseException) -> Kind | None:
    """The policy's name for an error reply that redirects or defers a command; None for any other."""
    if isinstance(e, rx.MovedError):  # before AskError: MovedError subclasses it
        return Kind.MOVED
    if isinstance(e, rx.AskError):
        return Kind.ASK
    if isinstance(e, rx.TryAgainError):
        return Kind.TRYAGAIN
    if isinstance(e, rx.ClusterDownError):
        # the server's own words (Redis and Valkey), not redis-py's
        return Kind.UNSERVED if "not served" in str(e) else Kind.CLUSTERDOWN
    if isinstance(e, rx.BusyLoadingError):  # a ConnectionError in redis-py, but a reply
        return Kind.LOADING
    return None


def failure_of(e: BaseException, node: str, *, sent: bool, fresh: bool = True) -> Failure | None:
    """What an exception raised by an attempt on `node` means to `decide`: the one place an
    exception becomes a Failure, for every path of both clients.

    An error reply that redirects or defers (MOVED, ASK, TRYAGAIN, CLUSTERDOWN, LOADING) is a
    Failure with `sent` set; a broken, refused or timed-out connection is one with the `sent`
    and `fresh` the driver saw (errors of the asyncio connection layer carry their own), and so
    is a node's pool closed under the attempt (a new map replaced it: nothing was sent, the
    newest map says where to go). None for anything else: the user's error reply (raised, or
    returned in place by a pipeline), a pool that timed out (exhausted, not failed: nothing to
    retry elsewhere), cancellation, a bug.
    """
    kind = reply_kind(e)
    if kind is not None:
        target = f"{e.host}:{e.port}" if isinstance(e, rx.AskError) else ""  # MovedError is an AskError
        return Failure(kind, node, sent=True, target=target)
    if not isinstance(e, _CONNECTION_FAILURES) or isinstance(e, errors.PoolTimeoutError):
        return None
    if isinstance(e, errors.AttemptError):
        sent, fresh = e.sent, not e.reused
    elif isinstance(e, errors.PoolClosedError):
        sent, fresh = False, True
    return Failure(failure_kind(e), node, sent=sent, fresh=fresh)


def answered(e: BaseException) -> bool:
    """Whether `e` is the server's error reply (the connection is still in step), including the
    ones redis-py raises as a ConnectionError (LOADING), not a failure of the connection."""
    return isinstance(e, rx.ResponseError) or reply_kind(e) is not None


_CONNECTION_FAILURES = (rx.ConnectionError, rx.TimeoutError, OSError)


def failure_kind(e: BaseException) -> Kind:
    """A connection-level failure: a timeout, or any other (refused, reset, closed)."""
    return Kind.TIMEOUT if isinstance(e, rx.TimeoutError | TimeoutError) else Kind.CONNECTION
