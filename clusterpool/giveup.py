"""The error a command gives up with (pure): what a RAISE action, or a slot with no owner, stands for.

Both clients raise these, chained to the reply or failure that caused them, so a path
(plain command, pipeline, transaction; sync or asyncio) never picks its own class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from . import errors
from .policy import MAX_UNSERVED, Action, Budget, Failure, Give
from .resp import command_name
from .topology import Shard, Topology


def give_up_error(action: Action, failure: Failure, node_failures: int, slot: int | None, args: Sequence[Any],
                  error: BaseException | None) -> BaseException:
    """The error a RAISE action stands for, chained to the reply or failure that caused it;
    `node_failures`: the node's consecutive failures, for the breaker's message."""
    name = failure.node
    give = action.give
    if give is Give.TOO_MANY_REDIRECTIONS:
        err: BaseException = errors.TooManyRedirectionsError(
            f"{command_name(args)} for slot {slot} gave up after {action.budget.hops} redirections/retries; "
            f"last node {name}, last reply: {error}"
        )
    elif give is Give.UNKNOWN_OUTCOME:
        err = errors.UnknownOutcomeError(
            f"{command_name(args)} was sent to {name} but the connection failed before the reply ({error}); "
            "it may or may not have been applied. Not retried because it can write; "
            "pass retry_unknown_outcome=True to retry such commands."
        )
    elif give is Give.UNAVAILABLE:
        err = errors.NodeUnavailableError(
            f"{command_name(args)}: node {name} is unavailable (circuit breaker open after "
            f"{node_failures} consecutive failures: {error}); retry later"
        )
    elif give is Give.NOT_SERVED:
        err = errors.SlotNotCoveredError(f"slot {slot} is not served by any node ({name} answered: {error})")
    elif give is Give.DEADLINE:
        err = deadline_error(f"{command_name(args)} for slot {slot}", f"last node {name}: {error}")
    else:
        assert error is not None
        return error
    err.__cause__ = error
    return err


def deadline_error(what: str, last: str) -> errors.RetryTimeoutError:
    """What every path raises at the call's deadline (retry_timeout)."""
    return errors.RetryTimeoutError(f"{what} gave up at its deadline (retry_timeout); {last}")


def owner_of(topology: Topology | None, slot: int) -> Shard | None:
    """The slot's shard if the map names a primary for it."""
    shard = topology.slot_table[slot] if topology is not None else None
    return shard if shard is not None and shard.primary is not None else None


def no_owner_error(topology: Topology | None, slot: int, budget: Budget) -> BaseException:
    """Why a wait for the slot's primary ended: the call's deadline passed (RetryTimeoutError), or
    the retry budget is spent with the slot's shard known but its primary failed
    (NodeUnavailableError) or with no shard for the slot (SlotNotCoveredError, a ClusterDownError
    as RedisCluster raises). A failed primary's slots can also show as unassigned in an agreed
    map, so both wait the same."""
    if budget.deadline is not None:
        return deadline_error(f"waiting for a primary for slot {slot}", "no node serves it (failed, or unassigned)")
    if topology is None or topology.slot_table[slot] is None:
        return errors.SlotNotCoveredError(
            f"slot {slot} is not served by any primary in the cluster's map (cluster not fully covered, "
            "or its primary failed and no replica took over within the retry budget)")
    return errors.NodeUnavailableError(
        f"the primary serving slot {slot} failed and no replica was promoted within the retry budget; "
        "retry later, or give the client a larger retry= (or retry_timeout=) for long failovers"
    )


def owner_wait(budget: Budget, topology: Topology | None, now: float,
               backoff: Callable[[int], float]) -> tuple[Budget, float | None]:
    """The next wait (seconds, at most what is left before the deadline) for a slot with no
    primary in `topology`; None: give up now (no_owner_error says with what).

    A failed primary's slots show as unassigned in an agreed map until a replica takes over,
    so the wait is the retry budget (or the deadline) while the map holds replicas with no
    primary; with none that could take over, the slot is simply not served (DELSLOTS, a
    primary lost with no replica): give up after MAX_UNSERVED waits, as for "Hash slot not
    served" answers, well before RedisCluster (6-7 s there)."""
    b = budget.failed(now)
    if not b.may_retry(now):
        return b, None
    if b.deadline is None and b.failures >= MAX_UNSERVED and not _takeover_possible(topology):
        return b, None
    wait = float(backoff(b.failures))
    left = b.left(now)
    return b, wait if left is None else min(wait, left)


def owner_step(topology: Topology | None, slot: int, budget: Budget, now: float,
               backoff: Callable[[int], float]) -> tuple[Shard | None, Budget, float]:
    """One turn of both drivers' wait for a slot's primary: (its shard, -, -) when `topology`
    names one; else (None, the budget after this failure, how long to wait for a new map);
    raises no_owner_error's error when the wait is over."""
    found = owner_of(topology, slot)
    if found is not None:
        return found, budget, 0.0
    budget, wait = owner_wait(budget, topology, now, backoff)
    if wait is None:
        raise no_owner_error(topology, slot, budget)
    return None, budget, wait


def _takeover_possible(topology: Topology | None) -> bool:
    """Whether the map holds replicas whose primary failed (one of them may be promoted)."""
    return topology is None or any(s.primary is None and s.replicas for s in topology.shards)
