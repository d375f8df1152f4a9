"""Cluster pipelines.

How this works (pipeline): commands are queued; on `execute()` each one gets
its slot and node, the commands are grouped per node, every node's group is
written before any reply is read (one round trip for the whole batch), and
replies are put back in the caller's order. Commands answered with MOVED or
ASK, or whose node failed before they could have run, go into the next round,
re-planned against the updated map; at most `max_redirections` rounds.

Queue-time refusals follow RedisCluster (batchrules.py): the methods it
blocks in cluster pipelines raise its RedisClusterException, unless every key
of the command is in one slot (then the command runs: it can, on one node).

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

from . import batchrules, errors
from .commands import CommandInfo
from .topology import Node
from .connection import pack_many
from .slots import encode_key, key_slot, slot_of
from .quickcommands import QuickCommands
from .resp import command_name
from .transaction import TransactionMixin

if TYPE_CHECKING:
    from .client import ClusterClient


class _Queued:
    __slots__ = ("args", "options", "info", "slot", "result", "asking", "node", "target")

    def __init__(self, args: tuple[Any, ...], options: dict[str, Any]) -> None:
        self.args, self.options = args, options
        self.info: CommandInfo | None = None
        self.slot: int | None = None
        self.result: Any = _PENDING
        self.asking = False
        self.node = ""
        self.target = ""  # the node named by target_nodes=, for the first round only (then by slot)


_PENDING = object()


class ClusterPipeline(QuickCommands, TransactionMixin, CoreCommands):
    """Queue commands with redis-py's methods, then `execute()` them in one round trip per node set."""

    _event_dispatcher = EventDispatcher()  # declared by redis-py's command mixins

    def __init__(self, client: ClusterClient, transaction: bool | None = False, shard_hint: Any = None) -> None:
        if shard_hint:
            raise rx.RedisClusterException("shard_hint is deprecated in cluster mode")
        self._client = client
        self._transaction = bool(transaction)
        self._queue: list[_Queued] = []
        self._watch_conn: AbstractConnection | None = None
        self._watch_node = ""
        self._slots: set[int] = set()  # slots of a transaction's commands and WATCHes so far
        self._explicit_multi = False
        self._blocked_method = ""  # set while a blocked method (see batchrules) queues its command

    # ---------------------------------------------------------------- queueing

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if self._blocked_method:
            self._check_blocked(args)
        if self._transaction:
            return self._queue_transactional(args, options)
        q = _Queued(args, options)
        if "target_nodes" in options:
            self._pin(q, options.pop("target_nodes"))
        self._queue.append(q)
        return self

    def _pin(self, q: _Queued, targets: Any) -> None:
        """target_nodes= in a pipeline: exactly one node, as RedisCluster allows (mget_nonatomic uses it)."""
        client = self._client
        nodes = client._resolve_targets(targets)
        if len(nodes) != 1:
            raise rx.RedisClusterException(f"Too many targets for command {q.args}")
        q.target = nodes[0].name

    pipeline_execute_command = execute_command

    def _check_blocked(self, args: tuple[Any, ...]) -> None:
        """A method RedisCluster blocks in pipelines: allowed only when its keys are in one slot."""
        method, self._blocked_method = self._blocked_method, ""
        keys = self._keys(args)
        if not keys:
            raise batchrules.blocked(method)
        if len({slot_of(k) for k in keys}) != 1:
            raise batchrules.blocked_cross_slot(method)

    def _keys(self, args: tuple[Any, ...]) -> list[Any]:
        table = self._client._core.table
        if table is None:
            self._client._core.ensure()
            table = self._client._core.table
        assert table is not None
        return table.keys(args)

    def delete(self, *names: Any) -> Any:
        """DEL; on a plain pipeline the keys must be in one slot (RedisCluster refuses more than one key)."""
        if not self._transaction and len(names) != 1 and len({slot_of(n) for n in names}) != 1:
            raise batchrules.multi_key_delete("DEL")
        return self.execute_command("DEL", *names)

    def unlink(self, *names: Any) -> Any:
        """UNLINK; on a plain pipeline the keys must be in one slot, as for `delete`."""
        if not self._transaction and len(names) != 1 and len({slot_of(n) for n in names}) != 1:
            raise batchrules.multi_key_delete("UNLINK")
        return self.execute_command("UNLINK", *names)

    def annotate_exception(self, exception: BaseException, number: int, command: Any) -> None:
        """Prefix `exception` with the command's position and text, as redis-py's pipelines do."""
        batchrules.annotate(exception, number, command)

    def load_scripts(self) -> None:
        """Not offered, as in RedisCluster."""
        raise batchrules.not_implemented("load_scripts")

    def script_load_for_pipeline(self, *args: Any, **kwargs: Any) -> None:
        """Not offered, as in RedisCluster."""
        raise batchrules.not_implemented("script_load_for_pipeline")

    def mget_nonatomic(self, *args: Any, **kwargs: Any) -> Any:
        """Blocked in pipelines, as in RedisCluster: use the client's."""
        raise batchrules.blocked("mget_nonatomic")

    def mset_nonatomic(self, *args: Any, **kwargs: Any) -> Any:
        """Blocked in pipelines, as in RedisCluster: use the client's."""
        raise batchrules.blocked("mset_nonatomic")

    def _queue_planned(self, args: tuple[Any, ...], info: CommandInfo, slot: int) -> None:
        """Queue a command whose slot the caller already knows (multi-key helpers)."""
        q = _Queued(args, {})
        q.info, q.slot = info, slot
        self._queue.append(q)

    def __len__(self) -> int:
        return len(self._queue)

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        kind = "transaction" if self._transaction else "pipeline"
        return f"<ClusterPipeline {kind}, {len(self._queue)} queued{', watching' if self._watch_conn else ''}>"

    def __del__(self) -> None:
        try:
            if self._watch_conn is not None:  # a WATCHed connection goes back to its pool
                self.reset()
        except Exception:
            pass

    def __enter__(self) -> ClusterPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.reset()

    def reset(self) -> None:  # type: ignore[override]  # as redis-py's Pipeline: not the RESET command
        self._queue = []
        self._explicit_multi = False
        self._slots = set()
        self._release_watch()

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
            raise batchrules.keys_cross_slot(q.args)  # RedisCluster's words; a CrossSlotError too
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
            if q.target:  # target_nodes=: that node once; a redirected command is re-routed by its slot
                q.node, q.target = q.target, ""
            elif not q.asking:
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
            if self._transaction:
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
            batchrules.raise_first_error((q.args, q.result) for q in queue)
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


def _blocking(method: str, command: Any) -> Any:
    """A pipeline method RedisCluster blocks: refused unless the command's keys are in one slot."""

    def call(self: ClusterPipeline, *args: Any, **kwargs: Any) -> Any:
        if command is None:  # no such command method: always refused, as in RedisCluster
            raise batchrules.blocked(method)
        self._blocked_method = method
        try:
            return command(self, *args, **kwargs)
        finally:
            self._blocked_method = ""

    call.__name__ = method
    call.__doc__ = getattr(command, "__doc__", None)
    return call


for _method in batchrules.BLOCKED_METHODS:
    if _method not in ClusterPipeline.__dict__:
        setattr(ClusterPipeline, _method, _blocking(_method, getattr(CoreCommands, _method, None)))
