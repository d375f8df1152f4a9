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
A DEL/UNLINK/EXISTS/TOUCH whose keys span slots (`pipe.touch(a, b)`, as
redis-py 8.2's pipelines run TOUCH and EXISTS) is sent as one command per slot
and answers one reply, the counts summed, as on the plain client (`commands.SPLIT_SUM`).

Transactions (MULTI/EXEC, WATCH) are in transaction.py.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from redis import exceptions as rx
from redis.commands import CoreCommands
from redis.connection import AbstractConnection

from ._redispy import EMPTY_RESPONSE, CommandMixinState
from . import batchrules
from .cachestore import forget_written
from .commands import CommandInfo
from .pipeplan import plan_all
from .queued import Queued
from .policy import Do, Failure, Kind, decide, failure_of
from .topology import Node
from .connection import pack_many
from .slots import slot_of
from .quickcommands import QuickCommands
from .router import acquire_by
from .transaction import TransactionMixin

if TYPE_CHECKING:
    from .interfaces import Dispatcher




class ClusterPipeline(QuickCommands, TransactionMixin, CommandMixinState, CoreCommands):
    """Queue commands with redis-py's methods, then `execute()` them in one round trip per node set."""


    def __init__(self, client: Dispatcher, transaction: bool | None = False, shard_hint: Any = None) -> None:
        if shard_hint:
            raise rx.RedisClusterException("shard_hint is deprecated in cluster mode")
        self._client = client
        self._transaction = bool(transaction)
        self._queue: list[Queued] = []
        self._watch_conn: AbstractConnection | None = None
        self._watch_node = ""
        self._slots: set[int] = set()  # slots of a transaction's commands and WATCHes so far
        self._explicit_multi = False

    # ---------------------------------------------------------------- queueing

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if self._transaction:
            return self._queue_transactional(args, options)
        q = Queued(args, options)
        if "target_nodes" in options:
            self._pin(q, options.pop("target_nodes"))
        self._queue.append(q)
        return self

    def _pin(self, q: Queued, targets: Any) -> None:
        """target_nodes= in a pipeline: exactly one node, as RedisCluster allows (mget_nonatomic uses it)."""
        client = self._client
        nodes = client.resolve_targets(targets)
        if len(nodes) != 1:
            raise rx.RedisClusterException(f"Too many targets for command {q.args}")
        q.target = nodes[0].name

    pipeline_execute_command = execute_command

    def _keys(self, args: tuple[Any, ...]) -> list[Any]:
        table = self._client.core.table
        if table is None:
            self._client.core.ensure()
            table = self._client.core.table
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

    def queue_planned(self, args: tuple[Any, ...], info: CommandInfo, slot: int) -> None:
        """Queue a command whose slot the caller already knows (multi-key helpers)."""
        q = Queued(args, {})
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

    # ---------------------------------------------------------------- routing

    def _group(self, pending: list[Queued], deadline: float | None) -> dict[str, list[Queued]]:
        """The commands per node name, routed on one snapshot of the map; commands answered with
        ASK keep the node they were sent to."""
        client = self._client
        topo = client.core.ensure()
        pick = client.pick_node
        names: dict[int, tuple[Node, str]] = {}  # id(node) -> (node, name): Node.name formats a string
        groups: dict[str, list[Queued]] = {}
        for q in pending:
            if q.target:  # target_nodes=: that node once; a redirected command is re-routed by its slot
                q.node, q.target = q.target, ""
            elif not q.asking:
                slot = q.slot
                if slot is None:
                    q.node = client.default_node(topo).name
                else:
                    node = pick(topo, slot, q.info.readonly, deadline)  # type: ignore[union-attr]
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
        observer = self._client.core.observer
        if observer is None or not (self._queue or self._transaction):
            return self._execute(raise_on_error)
        scope = observer.batch("MULTI" if self._transaction else "PIPELINE", [q.args for q in self._queue])
        try:
            results = self._execute(raise_on_error)
        except BaseException as e:
            scope.end(e)
            raise
        scope.end(None)
        return results

    def _execute(self, raise_on_error: bool) -> list[Any]:
        queue, self._queue = self._queue, []
        store = self._client.core.cache
        try:
            if self._transaction:
                return self._execute_transaction(queue, raise_on_error)
            if not queue:
                return []
            self._client.core.ensure()
            deadline = self._client.deadline()
            if plan_all(queue, self._client.core.table, self._client.refuses_writes):
                self._run_rounds([p for q in queue for p in (q.parts or (q,))], deadline)
                for q in queue:
                    if q.parts is not None:
                        q.result = batchrules.summed([p.result for p in q.parts])
            else:
                self._run_rounds(queue, deadline)
        finally:
            self.reset()
            if store is not None:  # the batch's writes drop their keys' entries (read-your-writes)
                for q in queue:
                    forget_written(store, self._client.core.table, q.args)
        results = [q.result for q in queue]
        if raise_on_error:
            batchrules.raise_first_error((q.args, q.result) for q in queue)
        return results

    def _run_rounds(self, queue: list[Queued], deadline: float | None) -> None:
        """Send every pending command in rounds: each round writes every node's batch before
        reading any reply; what failed goes through `policy.decide`, command by command, as on
        the plain path (breaker, retry budget, MOVED from a replica, stale connections...).
        `deadline`: when the whole batch gives up (retry_timeout from its start)."""
        core = self._client.core
        pending = queue
        while pending:
            groups = self._group(pending, deadline)
            failed: list[_Failed] = []
            conns: dict[str, tuple[AbstractConnection, bool]] = {}
            try:
                # write every node's batch first ...
                for name, group in list(groups.items()):
                    sent = self._send_group(name, group, failed, deadline)
                    if sent is None:
                        del groups[name]
                    else:
                        conns[name] = sent
                # ... then read them
                for name, group in groups.items():
                    conn, fresh = conns.pop(name)
                    self._read_group(name, conn, fresh, group, failed, deadline)
            finally:
                for name, (conn, _) in conns.items():  # only after an unexpected exception
                    _unlimit(conn, deadline)
                    core.state(name).pool.discard(conn)
            pending = self._after_failures(failed, deadline)

    def _send_group(self, name: str, group: list[Queued], failed: list[_Failed],
                    deadline: float | None) -> tuple[AbstractConnection, bool] | None:
        """Write one node's batch; None (and the batch in `failed`) when it could not be written."""
        client = self._client
        st = client.core.state(name)
        if client.core.observer is not None:
            client.core.observer.used(name)
        if st.open_until and not st.available():  # breaker open: not tried, as on the plain path
            failed.extend((q, Failure(Kind.BREAKER_OPEN, name), None) for q in group)
            return None
        pool = st.pool
        conn = pool.acquire() if deadline is None else acquire_by(pool, deadline)
        fresh = not conn.is_connected
        if not fresh and not client.retry_unknown_outcome and any(not q.info.readonly for q in group):  # type: ignore[union-attr]
            pool.validate(conn)  # writes cannot be resent once sent: no dead pooled socket for them
            fresh = not conn.is_connected
        connected = False
        if deadline is not None:  # for the connect, the write and this round's reads
            conn.limit(deadline - time.monotonic())  # type: ignore[attr-defined]
        try:
            if fresh:
                conn.connect()
            connected = True
            cmds: list[tuple[Any, ...]] = []
            for q in group:
                if q.asking:
                    cmds.append(("ASKING",))
                cmds.append(q.args)
            conn.send_packed_command(pack_many(conn, cmds), False)
        except BaseException as e:
            _unlimit(conn, deadline)
            pool.discard(conn)
            failure = failure_of(e, name, sent=connected, fresh=fresh)
            if failure is None:
                raise
            failed.extend((q, failure, e) for q in group)
            return None
        return conn, fresh

    def _read_group(self, name: str, conn: AbstractConnection, fresh: bool, group: list[Queued],
                    failed: list[_Failed], deadline: float | None) -> None:
        """Read one node's replies: results in place, redirections and failures into `failed`."""
        client = self._client
        core = client.core
        st = core.state(name)
        read, parse = conn.read_reply, client.parse_reply  # type: ignore[attr-defined]  # pools hold NodeConnections
        for i, q in enumerate(group):
            try:
                if q.asking:
                    read()
                resp = read()
            except BaseException as e:
                found = failure_of(e, name, sent=True, fresh=fresh)
                if found is None and isinstance(e, rx.ResponseError):  # the user's: in place
                    q.result = q.options.get(EMPTY_RESPONSE, e) if EMPTY_RESPONSE in q.options else e
                    continue
                if found is not None and found.replied:
                    failed.append((q, found, e))
                    continue
                _unlimit(conn, deadline)
                st.pool.discard(conn)
                if found is None:
                    raise
                failed.extend((rest, found, e) for rest in group[i:])
                return
            q.asking = False
            try:
                # the command is done: parsing may consume its options (no copy per reply)
                q.result = parse(q.args[0], resp, q.options)
            except Exception as e:  # a callback that cannot parse: report in place
                q.result = e
        _unlimit(conn, deadline)
        st.pool.release(conn)
        if st.failures or st.loading:
            core.node_recovered(name)

    def _after_failures(self, failed: list[_Failed], deadline: float | None) -> list[Queued]:
        """Apply `policy.decide` to every failed command; returns those to send again, after
        waiting for what the actions ask (the longest backoff, or a new map)."""
        if not failed:
            return []
        client = self._client
        core = client.core
        now = time.monotonic()
        again: list[Queued] = []
        marked: set[str] = set()
        sleep = wait = 0.0
        version = core.topology.version if core.topology is not None else 0
        for q, failure, error in failed:
            st = core.state(failure.node)
            action = decide(failure, q.budget or client.new_budget(deadline), now=now, backoff=client.backoff_delay,
                            readonly=q.info.readonly, retry_unknown=client.retry_unknown_outcome,  # type: ignore[union-attr]
                            on_replica=st.readonly, asking=q.asking, keyed=q.slot is not None)
            q.budget = action.budget
            if failure.node not in marked and (action.mark_failed or action.drop_idle):
                marked.add(failure.node)  # one failure per node and round, not one per command
                client.note_failure(action, failure, st, error)
            elif action.keep_reads_off or action.repoint or action.refresh:
                client.note_failure(replace(action, mark_failed=False, drop_idle=False), failure, st, error)
            if action.do is Do.RAISE:
                q.result = client.give_up(action, failure, st, q.slot, q.args, error)
                continue
            q.asking = action.asking
            if action.do is Do.REDIRECT or action.do is Do.RETRY_FRESH:
                if action.asking:
                    q.node = action.node
                else:
                    q.target = action.node
            elif action.do is Do.BACKOFF:
                sleep = max(sleep, action.delay)
            else:  # WAIT_FOR_MAP
                wait = max(wait, action.delay)
            again.append(q)
        if wait:
            core.wait_for_change(version, wait)  # cut short by a new map
        if sleep:
            time.sleep(sleep)
        return again


_Failed = tuple[Queued, Failure, BaseException | None]


def _unlimit(conn: AbstractConnection, deadline: float | None) -> None:
    """The connection's own timeouts again, before it goes back to its pool (see connection.limit)."""
    if deadline is not None:
        conn.unlimit()  # type: ignore[attr-defined]


batchrules.block_methods(ClusterPipeline, CoreCommands)
