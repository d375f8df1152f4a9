"""Cluster pipelines.

How this works (pipeline): commands are queued; on `execute()` each one gets
its slot and node, the commands are grouped per node, every node's group is
written before any reply is read (one round trip for the whole batch), and
replies are put back in the caller's order. Commands answered with MOVED or
ASK, or whose node failed before they could have run, go into the next round,
re-planned against the updated map; at most `max_redirections` rounds.

Transactions (MULTI/EXEC, WATCH) are in transaction.py.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from redis import exceptions as rx
from redis.client import EMPTY_RESPONSE
from redis.commands import CoreCommands
from redis.connection import AbstractConnection
from redis.event import EventDispatcher

from . import errors
from .commands import CommandInfo
from .topology import Node
from .connection import pack_many
from .slots import encode_key, key_slot, slot_of
from .resp import command_name, raise_first_error
from .quickcommands import QuickCommands
from .transaction import TransactionMixin

if TYPE_CHECKING:
    from .client import ClusterClient


class _Queued:
    __slots__ = ("args", "options", "info", "slot", "result", "asking", "node")

    def __init__(self, args: tuple[Any, ...], options: dict[str, Any]) -> None:
        self.args, self.options = args, options
        self.info: CommandInfo | None = None
        self.slot: int | None = None
        self.result: Any = _PENDING
        self.asking = False
        self.node = ""


_PENDING = object()


class ClusterPipeline(QuickCommands, TransactionMixin, CoreCommands):
    """Queue commands with redis-py's methods, then `execute()` them in one round trip per node set."""

    _event_dispatcher = EventDispatcher()  # declared by redis-py's command mixins

    def __init__(self, client: ClusterClient, transaction: bool = False) -> None:
        self._client = client
        self._transaction = transaction
        self._queue: list[_Queued] = []
        self._watch_conn: AbstractConnection | None = None
        self._watch_node = ""
        self._watch_slot: int | None = None
        self._explicit_multi = False

    # ---------------------------------------------------------------- queueing

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if self._watch_conn is not None and not self._explicit_multi:
            return self._immediate(args, options)
        self._queue.append(_Queued(args, options))
        return self

    def _queue_planned(self, args: tuple[Any, ...], info: CommandInfo, slot: int) -> None:
        """Queue a command whose slot the caller already knows (multi-key helpers)."""
        q = _Queued(args, {})
        q.info, q.slot = info, slot
        self._queue.append(q)

    def __len__(self) -> int:
        return len(self._queue)

    def __bool__(self) -> bool:
        return True

    def __enter__(self) -> ClusterPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.reset()

    def reset(self) -> None:  # type: ignore[override]  # as redis-py's Pipeline: not the RESET command
        self._queue = []
        self._explicit_multi = False
        conn, self._watch_conn = self._watch_conn, None
        if conn is not None:
            try:
                conn.send_command("UNWATCH")
                conn.read_response()
            except (rx.ConnectionError, rx.TimeoutError, OSError):
                conn.disconnect()
            self._client._core.state(self._watch_node).pool.release(conn)

    close = reset

    # ---------------------------------------------------------------- planning

    def _plan(self, q: _Queued) -> None:
        client = self._client
        table = client._core.table
        assert table is not None
        cached = table.resolved.get(q.args[0])
        if cached is not None and not cached[1] and cached[0].single_key and len(q.args) > cached[0].single_key:
            info = q.info = cached[0]  # one key at a fixed place: the common case, as in execute_command
            key = q.args[info.single_key]
            q.slot = key_slot(key if type(key) is bytes else encode_key(key))
            if client._refuse_writes and not info.readonly:
                client._refuse(q.args)
            return
        info, argv = table.resolve(q.args)
        q.info = info
        keys = info.keys(argv)
        if not keys:
            q.slot = None
            return
        slots = {slot_of(k) for k in keys}
        if len(slots) > 1:
            raise errors.CrossSlotError(
                f"pipelined {command_name(q.args)} has keys in {len(slots)} slots: each command must keep its "
                "keys in one slot (use a {hash tag})"
            )
        q.slot = slots.pop()
        if client._refuse_writes and not info.readonly:
            client._refuse(q.args)

    def _plan_all(self, queue: list[_Queued]) -> None:
        """`_plan` every command not planned yet, the common case (one key at a fixed place) inline:
        on a 10k pipeline a method call per command is a measurable part of the client's time."""
        client = self._client
        table = client._core.table
        assert table is not None
        resolved = table.resolved
        refuse = client._refuse_writes
        for q in queue:
            if q.info is not None:
                continue
            args = q.args
            cached = resolved.get(args[0])
            if cached is not None and not cached[1]:
                info = cached[0]
                idx = info.single_key
                if idx and len(args) > idx:
                    key = args[idx]
                    q.info = info
                    q.slot = key_slot(key if type(key) is bytes else encode_key(key))
                    if refuse and not info.readonly:
                        client._refuse(args)
                    continue
            self._plan(q)

    def _group(self, pending: list[_Queued]) -> dict[str, list[_Queued]]:
        """The commands per node name, routed on one snapshot of the map; commands answered with
        ASK keep the node they were sent to."""
        client = self._client
        topo = client._core.ensure()
        pick = client._pick
        names: dict[int, tuple[Node, str]] = {}  # id(node) -> (node, name): Node.name formats a string
        groups: dict[str, list[_Queued]] = {}
        for q in pending:
            if not q.asking:
                slot = q.slot
                if slot is None:
                    q.node = client._default_node(topo).name
                else:
                    node = pick(topo, slot, q.info.readonly)  # type: ignore[union-attr]
                    known = names.get(id(node))
                    if known is None:
                        known = names[id(node)] = (node, node.name)
                    q.node = known[1]
            group = groups.get(q.node)
            if group is None:
                groups[q.node] = [q]
            else:
                group.append(q)
        return groups

    # ---------------------------------------------------------------- execute

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        """Run the queued commands; replies in queue order. Errors raise, or are returned in place."""
        queue, self._queue = self._queue, []
        try:
            if self._transaction or self._watch_conn is not None:
                return self._execute_transaction(queue, raise_on_error)
            if not queue:
                return []
            self._client._core.ensure()
            self._plan_all(queue)
            self._run_rounds(queue)
        finally:
            self.reset()
        results = [q.result for q in queue]
        if raise_on_error:
            raise_first_error((q.args, q.result) for q in queue)
        return results

    def _run_rounds(self, queue: list[_Queued]) -> None:
        client = self._client
        core = client._core
        pending = queue
        for round_no in range(client.max_redirections):
            groups = self._group(pending)
            conns: dict[str, AbstractConnection] = {}
            retry: list[_Queued] = []
            try:
                # write every node's batch first ...
                for name, group in list(groups.items()):
                    st = core.state(name)
                    conn = st.pool.acquire()
                    try:
                        if conn._sock is None:
                            conn.connect()
                        cmds: list[tuple[Any, ...]] = []
                        for q in group:
                            if q.asking:
                                cmds.append(("ASKING",))
                            cmds.append(q.args)
                        conn.send_packed_command(pack_many(conn, cmds), False)
                    except (rx.ConnectionError, rx.TimeoutError, OSError) as e:
                        st.pool.discard(conn)
                        core.node_failed(name, e)
                        retry.extend(group)  # nothing of this batch can have run on a node we never reached
                        del groups[name]
                        continue
                    conns[name] = conn
                # ... then read them
                for name, group in groups.items():
                    retry.extend(self._read_group(name, conns.pop(name), group))
            finally:
                for name, conn in conns.items():  # only after an unexpected exception
                    core.state(name).pool.discard(conn)
            if not retry:
                return
            pending = retry
            time.sleep(client._backoff(round_no + 1) if any(not q.asking for q in retry) else 0)
        for q in pending:
            q.result = errors.TooManyRedirectionsError(
                f"{command_name(q.args)} for slot {q.slot} still redirected after {client.max_redirections} rounds"
            )

    def _read_group(self, name: str, conn: AbstractConnection, group: list[_Queued]) -> list[_Queued]:
        """Read one node's replies; returns the commands to run again."""
        client = self._client
        core = client._core
        pool = core.state(name).pool
        retry: list[_Queued] = []
        read, parse = conn.read_reply, client._parse  # type: ignore[attr-defined]  # pools hold NodeConnections
        for i, q in enumerate(group):
            try:
                if q.asking:
                    read()
                resp = read()
            except rx.MovedError as e:
                core.on_moved(e.slot_id, e.host, e.port)
                q.asking = False
                retry.append(q)
                continue
            except rx.AskError as e:
                q.node, q.asking = f"{e.host}:{e.port}", True
                retry.append(q)
                continue
            except (rx.TryAgainError, rx.ClusterDownError, rx.BusyLoadingError) as e:
                if isinstance(e, rx.BusyLoadingError):
                    core.node_loading(name)
                q.asking = False
                retry.append(q)
                continue
            except rx.ResponseError as e:
                q.result = q.options.get(EMPTY_RESPONSE, e) if EMPTY_RESPONSE in q.options else e
                continue
            except (rx.ConnectionError, rx.TimeoutError, OSError) as e:
                pool.discard(conn)
                core.node_failed(name, e)
                for rest in group[i:]:
                    assert rest.info is not None
                    if rest.info.readonly or client.retry_unknown_outcome:
                        rest.asking = False
                        retry.append(rest)
                    else:
                        rest.result = errors.UnknownOutcomeError(
                            f"{command_name(rest.args)} was sent to {name} but the connection failed before "
                            f"its reply ({e}); it may or may not have been applied"
                        )
                return retry
            q.asking = False
            try:
                # the command is done: parsing may consume its options (no copy per reply)
                q.result = parse(q.args[0], resp, q.options)
            except Exception as e:  # a callback that cannot parse: report in place
                q.result = e
        pool.release(conn)
        return retry
