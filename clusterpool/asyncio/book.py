"""Pure bookkeeping of one node's connections: no sockets, tasks or clocks.

How this works: the I/O classes describe their state as a few numbers and carry out
the answer. `pick_shared` says which shared (auto-pipelined) connection takes the next
command: the one with the fewest pending commands; another one is opened in the
background when every open one has at least `grow_at` pending and the node has fewer
than `limit` (the caller keeps using the least loaded one meanwhile). `assign` says how
many waiters for a dedicated connection get an idle one and how many may open a new
one, oldest first, never going over `limit` (httpcore's pool assigns requests to
connections the same way, without I/O).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SharedPick:
    """Where the next shared command goes."""

    index: int | None  # the connection to use; None: none is open, wait for one
    open_new: bool  # start opening another shared connection


def pick_shared(pending: Sequence[int], *, opening: bool, limit: int, grow_at: int) -> SharedPick:
    """Least-pending choice among open shared connections (`pending[i]` for connection i)."""
    if not pending:
        return SharedPick(None, not opening)
    best = 0
    low = pending[0]
    for i in range(1, len(pending)):
        if pending[i] < low:
            best, low = i, pending[i]
    grow = low >= grow_at and not opening and len(pending) < limit
    return SharedPick(best, grow)


@dataclass(frozen=True, slots=True)
class Assignment:
    """What to do with the oldest waiters for a dedicated connection."""

    reuse: int  # this many (oldest first) get an idle connection
    open: int  # the next this many may each open a new connection


def assign(*, idle: int, total: int, limit: int, waiting: int) -> Assignment:
    """Hand idle connections to waiters first, then permits to open up to `limit` in all.

    `total` counts every connection of the pool: idle, leased and being opened.
    """
    if min(idle, total, limit, waiting) < 0 or idle > total:
        raise ValueError(f"inconsistent pool state: idle={idle} total={total} limit={limit} waiting={waiting}")
    reuse = min(idle, waiting)
    opened = max(0, min(waiting - reuse, limit - total))
    return Assignment(reuse, opened)
