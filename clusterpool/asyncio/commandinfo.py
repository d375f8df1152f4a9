"""COMMAND INFO for commands the shipped specs do not know, asked once per name by the asyncio client.

How this works: the command table (`commands.CommandTable`, the sync client's) asks a `fetch`
function for commands missing from the shipped specs. In an event loop that function cannot do
I/O, so `CommandLookup.fetch` only answers from the entries already learned and raises
LookupError for a name not asked yet (the table then treats the command as unknown this once).
Before routing a command the table does not know (`unknown_name`), the client awaits
`learn(name, ask)`: one COMMAND INFO per name, however many callers want it at once; other
commands never wait for it, and no task is started. A name the server refuses or does not know
is remembered as unknown; one whose ask failed on the network is asked again next time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from redis import exceptions as rx

from ..commands import UNKNOWN, CommandTable, bundled_entries
from ..resp import text

log = logging.getLogger("clusterpool.asyncio")

Ask = Callable[[str], Awaitable[Any]]  # sends COMMAND INFO <name>, returns the raw reply


def unknown_name(table: CommandTable, args: Sequence[Any]) -> str | None:
    """The name to ask COMMAND INFO for: the command of `args` when `table` knows neither it nor,
    for a container command (CLIENT, CONFIG ...), its subcommand; None when the table knows it."""
    info, argv = table.resolve(args)
    if info is UNKNOWN:
        return text(argv[0]).lower()
    if info.has_subcommands and "|" not in info.name and len(argv) > 1 and isinstance(argv[1], str | bytes):
        return info.name
    return None


def entry_of(reply: Any) -> Sequence[Any] | None:
    """The entry in a COMMAND INFO reply for one name (None when the server does not know it)."""
    return reply[0] if isinstance(reply, list | tuple) and reply and reply[0] else None


class CommandLookup:
    """COMMAND INFO entries learned so far, and the asks in progress (see the module docstring)."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit  # bound against unbounded distinct unknown names
        self.entries: dict[str, Sequence[Any] | None] = {}
        self.asked = 0  # COMMAND INFO round trips made
        self._pending: dict[str, asyncio.Future[None]] = {}

    def table(self, bundled: Mapping[str, str] | None = None) -> CommandTable:
        """A command table of the shipped specs (or `bundled`) that knows what this lookup learns."""
        return CommandTable(bundled=bundled_entries() if bundled is None else bundled, fetch=self.fetch)

    def fetch(self, name: str) -> Sequence[Any] | None:
        """The table's `fetch`: the learned entry, None if the server does not know `name`."""
        try:
            return self.entries[name]
        except KeyError:
            raise LookupError(f"COMMAND INFO {name} not asked yet") from None

    def wants(self, name: str) -> bool:
        """Whether `name` still needs asking (not learned yet, and room to keep the answer)."""
        return name not in self.entries and len(self.entries) < self.limit

    async def learn(self, name: str, ask: Ask) -> None:
        """Ask COMMAND INFO for `name` unless it is known or being asked (then wait for that ask)."""
        if not self.wants(name):
            return
        waiting = self._pending.get(name)
        if waiting is not None:
            await asyncio.shield(waiting)  # our cancellation must not cancel the others' wait
            return
        done = asyncio.get_running_loop().create_future()
        self._pending[name] = done
        try:
            reply = await ask(name)
            self.asked += 1
            self.entries[name] = entry_of(reply)
        except rx.ResponseError as e:  # the server answered (an ACL without COMMAND ...): do not ask again
            log.debug("COMMAND INFO %s refused: %s", name, e)
            self.entries[name] = None
        except (rx.RedisError, OSError, TimeoutError) as e:  # no answer: unknown this time, asked again next time
            log.debug("COMMAND INFO %s failed: %s", name, e)
        finally:
            del self._pending[name]
            done.set_result(None)
