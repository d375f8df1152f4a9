"""Cluster transactions, planned and answered without I/O: shared by the sync and asyncio drivers.

How this works: a driver (clusterpool/transaction.py, clusterpool/asyncio/transaction.py)
asks this module every question a transaction raises and only carries the answers out:
which slot a command belongs to and whether it may join the transaction (`command_slot`,
`check_slot`, `exec_slot`), whether a command is queued or runs at once under WATCH
(`mode`), what goes on the wire (`frame`: [ASKING,] MULTI, the commands, EXEC), what the
replies to that mean (`exec_reply`: EXEC's reply, or the error that aborted it), what a
failed attempt was (`policy.reply_failure`, for `policy.decide`) and where the next attempt goes
(`resend_to`: a WATCHing transaction cannot follow a redirection, it raises WatchError so
`transaction()` starts over), and what `execute()` returns (`results`). Refusals and
messages are redis-py 8.1 RedisCluster's (batchrules.py).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from enum import Enum
from typing import Any

from redis import exceptions as rx

from . import batchrules, errors
from .commands import CommandTable
from .policy import Action, Do, Failure, Kind
from .resp import command_name
from .slots import slot_of

WATCH_CHANGED = "Watched variable changed."
WATCH_LOST = "connection lost while WATCHing; retry the transaction"


class Mode(str, Enum):
    """What a transactional pipeline does with a command it is given."""

    QUEUE = "queue"  # into the MULTI block, sent by execute()
    IMMEDIATE = "immediate"  # WATCHing and before multi(): run now on the WATCH connection
    UNWATCH = "unwatch"  # a raw UNWATCH while WATCHing: give the WATCH connection back


def mode(args: Sequence[Any], watching: bool, explicit_multi: bool) -> Mode:
    """Queued, run at once, or an UNWATCH (as RedisCluster: commands after WATCH run until `multi()`)."""
    if not watching or explicit_multi:
        return Mode.QUEUE
    return Mode.UNWATCH if command_name(args) == "UNWATCH" else Mode.IMMEDIATE


def command_slot(table: CommandTable, args: Sequence[Any], keys: Sequence[Any] | None = None) -> int | None:
    """The command's slot, refused as RedisCluster refuses it: no key (keyless scripts excepted,
    they get None), or keys in several slots. `keys`: the command's keys, when already known."""
    keys = table.keys(args) if keys is None else keys
    if not keys:
        if table.resolve(args)[0].name in batchrules.KEYLESS_IN_TRANSACTION:
            return None
        raise batchrules.missing_key(args)
    slots = {slot_of(k) for k in keys}
    if len(slots) != 1:
        raise batchrules.keys_cross_slot(args)
    return slots.pop()


def check_slot(slots: Collection[int], slot: int | None) -> None:
    """A WATCH or an immediate command must stay in the slot the transaction has so far."""
    if slot is not None and slots and slot not in slots:
        raise errors.CrossSlotTransactionError(batchrules.WATCH_CROSS_SLOT)


def check_watch(explicit_multi: bool) -> None:
    if explicit_multi:
        raise rx.RedisError("Cannot issue a WATCH after a MULTI")


def check_multi(explicit_multi: bool, queued: int) -> None:
    if explicit_multi:
        raise rx.RedisError("Cannot issue nested calls to MULTI")
    if queued:
        raise rx.RedisError("Commands without an initial WATCH have already been issued")


def nothing_to_run(queued: int, watching: bool, slots: Collection[int]) -> bool:
    """`execute()` with nothing to send returns [] (a WATCH with keys still runs an empty MULTI/EXEC)."""
    return not queued and (not watching or not slots)


def exec_slot(slots: Collection[int], pick: Callable[[int], int]) -> int:
    """The one slot the transaction runs in; only keyless scripts: any slot, `pick(16384)`
    (RedisCluster picks a random one too)."""
    if len(slots) > 1:
        raise errors.CrossSlotTransactionError(batchrules.TRANSACTION_CROSS_SLOT)
    return next(iter(slots)) if slots else pick(16384)


def first_write(table: CommandTable, commands: Sequence[Sequence[Any]]) -> Sequence[Any] | None:
    """The first command that may write (a reader view refuses it before anything is sent)."""
    for args in commands:
        if not table.resolve(args)[0].readonly:
            return args
    return None


def body(commands: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """MULTI, the queued commands, EXEC."""
    return [("MULTI",), *(tuple(a) for a in commands), ("EXEC",)]


def frame(body_: Sequence[tuple[Any, ...]], asking: bool) -> tuple[list[tuple[Any, ...]], int]:
    """What is written in one go (ASKING first after an ASK: it holds for the whole MULTI block),
    and the index of the first queued command in it."""
    if asking:
        return [("ASKING",), *body_], 2
    return list(body_), 1


def exec_reply(cmds: Sequence[Sequence[Any]], replies: Sequence[Any], first: int) -> Any:
    """EXEC's reply (None when a WATCH fired) from the replies to `frame`'s commands, error
    replies in place. EXECABORT raises the error that caused it instead (a queued command's,
    numbered by its queue position as RedisCluster numbers it): MOVED/ASK/TRYAGAIN/CLUSTERDOWN
    there tell `policy.decide` what to do next."""
    *queued, last = replies
    if isinstance(last, rx.ExecAbortError):
        for pos, r in enumerate(queued):
            if isinstance(r, Exception):
                if pos >= first:
                    batchrules.annotate(r, pos - first + 1, cmds[pos])
                raise r
    if isinstance(last, Exception):
        raise last
    return last


def resend_to(action: Action, failure: Failure, error: BaseException | None, watching: bool) -> tuple[str, bool]:
    """After a non-RAISE `policy.decide` action: the node to resend to ("" for the slot's owner
    in the newest map) and whether with ASKING. Under WATCH the held connection cannot follow:
    WatchError, so `transaction()` starts over."""
    if watching:
        why = "moved to another node" if failure.kind is Kind.MOVED else f"is being migrated or failed over ({error})"
        raise rx.WatchError(f"the watched slot {why} before EXEC; retry the transaction") from error
    if action.do is Do.REDIRECT or action.do is Do.RETRY_FRESH:
        return action.node, action.asking
    return "", False


def results(response: Any, commands: Sequence[Sequence[Any]], raise_on_error: bool) -> list[Any]:
    """EXEC's replies, one per queued command, errors in place or the first one raised
    (annotated with its position); a None reply means a WATCHed key changed."""
    if response is None:
        raise rx.WatchError(WATCH_CHANGED)
    out = list(response)
    if len(out) != len(commands):
        raise rx.InvalidPipelineStack(
            f"Unexpected response length for cluster pipeline EXEC. Command stack was "
            f"{[a[0] for a in commands]} but response had length {len(out)}"
        )
    if raise_on_error:
        batchrules.raise_first_error(zip(commands, out))
    return out
