"""Single-slot transactions on a cluster pipeline: MULTI/EXEC and WATCH.

How this works: every key of a transaction must hash to one slot (use
{hash tags}); MULTI, the commands and EXEC go on one connection to that
slot's primary. WATCH takes a connection to the slot's owner and holds it
(commands then run at once) until EXEC or reset, as in redis-py. An EXEC
aborted because the slot moved (MOVED) is re-sent to the new owner, one
aborted by ASK (slot migrating, keys already on the importing node) is
re-sent there after ASKING, which holds for a whole MULTI block; EXECABORT
guarantees nothing ran. Under WATCH the transaction cannot follow: it
raises WatchError so `transaction()` starts over.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from redis import exceptions as rx
from redis.connection import AbstractConnection

from . import errors
from .connection import pack_many
from .resp import command_name, raise_first_error
from .slots import slot_of

if TYPE_CHECKING:
    from .client import ClusterClient
    from .pipeline import ClusterPipeline, _Queued


class TransactionMixin:
    """WATCH/MULTI/EXEC for ClusterPipeline."""

    _client: ClusterClient
    _queue: list[_Queued]
    _watch_conn: AbstractConnection | None
    _watch_node: str
    _watch_slot: int | None
    _explicit_multi: bool

    if TYPE_CHECKING:
        def reset(self) -> None: ...

    def watch(self, *names: Any) -> Any:
        """WATCH keys (one slot); the pipeline runs commands immediately until `multi()`."""
        if self._explicit_multi:
            raise rx.RedisError("cannot WATCH after MULTI")
        slot = self._one_slot(names, "WATCH")
        self._client._core.ensure()
        if self._watch_conn is None:
            name = self._client._pick(self._client._core.ensure(), slot, False).name
            self._watch_conn = self._client._core.state(name).pool.acquire()
            self._watch_node, self._watch_slot = name, slot
        elif slot != self._watch_slot:
            raise errors.CrossSlotError("all WATCHed keys must be in one slot")
        return self._immediate(("WATCH", *names), {})

    def unwatch(self) -> Any:
        self.reset()
        return True

    def multi(self) -> None:
        if self._explicit_multi:
            raise rx.RedisError("cannot issue nested calls to MULTI")
        if self._queue:
            raise rx.RedisError("commands without an initial WATCH have already been issued")
        self._explicit_multi = True

    def _immediate(self, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        conn = self._watch_conn
        assert conn is not None
        if args[0] != "WATCH":
            self._one_slot(self._keys(args), command_name(args), self._watch_slot)
        try:
            conn.send_command(*args)
            resp = conn.read_response()
        except (rx.ConnectionError, rx.TimeoutError, OSError):
            conn.disconnect()
            self.reset()
            raise rx.WatchError("connection lost while WATCHing; retry the transaction") from None
        return self._client._parse(args[0], resp, options)

    def _keys(self, args: tuple[Any, ...]) -> list[Any]:
        self._client._core.ensure()
        table = self._client._core.table
        assert table is not None
        return table.keys(args)

    def _one_slot(self, keys: Sequence[Any], what: str, must_be: int | None = None) -> int:
        slots = {slot_of(k) for k in keys}
        if must_be is not None:
            slots.add(must_be)
        if len(slots) != 1:
            raise errors.CrossSlotError(
                f"{what}: a transaction's keys must all be in one slot (found {len(slots)}); "
                "use a {hash tag} such as 'user:{42}:name'"
            )
        return slots.pop()

    def _send_transaction(self, conn: AbstractConnection, cmds: list[tuple[Any, ...]]) -> Any:
        """MULTI, the commands, EXEC on one connection; EXEC's reply (None when a WATCH fired)."""
        core = self._client._core
        try:
            conn.send_packed_command(pack_many(conn, cmds), False)
            errors_in_queue: list[tuple[int, Exception]] = []
            for i in range(len(cmds) - 1):  # +OK for MULTI, then +QUEUED or an error each
                try:
                    conn.read_response()
                except (rx.MovedError, rx.AskError, rx.TryAgainError) as e:
                    if isinstance(e, rx.MovedError):
                        core.on_moved(e.slot_id, e.host, e.port)
                    errors_in_queue.append((i, e))
                except rx.ResponseError as e:
                    errors_in_queue.append((i, e))
            try:
                return conn.read_response()
            except rx.ExecAbortError:
                if errors_in_queue:
                    raise errors_in_queue[0][1] from None
                raise
        except (rx.ConnectionError, rx.TimeoutError, OSError):
            conn.disconnect()
            raise

    def _execute_transaction(self, queue: list[_Queued], raise_on_error: bool) -> list[Any]:
        client = self._client
        core = client._core
        core.ensure()
        keys = [k for q in queue for k in self._keys(q.args)]
        if not keys and self._watch_slot is None:
            if not queue:
                return []
            raise errors.CrossSlotError("a cluster transaction needs at least one key to choose its slot")
        slot = self._one_slot(keys, "MULTI/EXEC", self._watch_slot)
        if client._refuse_writes:
            for q in queue:
                info = q.info or core.table.resolve(q.args)[0]  # type: ignore[union-attr]
                if not info.readonly:
                    client._refuse(q.args)
        body = [("MULTI",), *[q.args for q in queue], ("EXEC",)]
        cmds = body
        hops = 0
        ask_target: str | None = None
        while True:
            if self._watch_conn is not None:
                name, conn, owned = self._watch_node, self._watch_conn, False
            else:
                name = ask_target or client._pick(core.ensure(), slot, False).name
                conn, owned = core.state(name).pool.acquire(), True
            pool = core.state(name).pool
            broken = True
            try:
                response = self._send_transaction(conn, cmds)
                broken = False
            except rx.MovedError:
                # EXECABORT: nothing ran. The slot has a new owner (on_moved already applied).
                broken = False
                hops += 1
                if owned and hops < client.max_redirections:
                    pool.release(conn)
                    owned = False
                    continue
                if not owned:
                    raise rx.WatchError(
                        "the watched slot moved to another node before EXEC; retry the transaction"
                    ) from None
                raise
            except (rx.AskError, rx.TryAgainError) as e:
                # EXECABORT, nothing ran. ASK: the slot is migrating and its keys are on the
                # importing node: ASKING before MULTI holds for the whole transaction there.
                # TRYAGAIN: its keys are split between the two nodes for a moment.
                broken = False
                hops += 1
                if not owned:  # the WATCH holds the source node's connection: cannot follow
                    raise rx.WatchError(
                        f"the watched slot is being migrated ({e}); retry once the migration ends"
                    ) from None
                if hops >= client.max_redirections:
                    raise
                pool.release(conn)
                owned = False
                if isinstance(e, rx.AskError):
                    ask_target, cmds = f"{e.host}:{e.port}", [("ASKING",), *body]
                else:
                    ask_target, cmds = None, body
                    time.sleep(client._backoff(hops))
                continue
            except rx.ResponseError:
                broken = False  # the server answered: the connection is still in step
                raise
            finally:
                # released on every path (EXECABORT, WatchError, ...), not only on success
                if owned:
                    if broken:
                        conn.disconnect()
                    pool.release(conn)
            break
        if response is None:
            raise rx.WatchError("Watched variable changed.")
        results: list[Any] = []
        for q, r in zip(queue, response):
            if isinstance(r, Exception):
                results.append(r)
            else:
                results.append(client._parse(q.args[0], r, dict(q.options)))
        if raise_on_error:
            raise_first_error((q.args, r) for q, r in zip(queue, results))
        return results


def transaction(client: ClusterClient, func: Callable[[ClusterPipeline], Any], *watches: Any,
                shard_hint: Any = None, value_from_callable: bool = False,
                watch_delay: float | None = None) -> Any:
    """redis-py's `transaction()`: run `func(pipe)` under WATCH, retrying on WatchError."""
    from .pipeline import ClusterPipeline  # the pipeline module imports this one

    while True:
        pipe = ClusterPipeline(client, transaction=True)
        try:
            if watches:
                pipe.watch(*watches)
            value = func(pipe)
            exec_value = pipe.execute()
            return value if value_from_callable else exec_value
        except rx.WatchError:
            if watch_delay:
                time.sleep(watch_delay)
            continue
        finally:
            pipe.reset()
