"""The rest of RedisCluster's surface on ClusterClient: locks, encoder, callbacks, connection-state commands.

How this works: redis-py's helpers (Lock, Script) need `get_encoder()`,
`register_script()` and plain commands, which is all a lock is; we give them
those. READONLY/READWRITE switch the client's reads to replicas and back, as
RedisCluster's `read_from_replicas` flag does (our replica connections send
READONLY when they connect, so nothing needs sending). CLIENT SETNAME and
CLIENT SETINFO are checked once on a real connection, then become connection
options of the targeted nodes (naming.py): pooled connections are replaced,
every new one says the name at connect, and each targeted node keeps one, so
`client_list()` shows it. A mixin of ClusterClient.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redis.commands.core import BasicKeyCommands
from redis.lock import Lock
from redis.retry import Retry

from ._redispy import CaseInsensitiveDict, Encoder
from . import naming
from .callbacks import ResponseCallback, cluster_callbacks, compose, composed_callbacks
from .readfrom import PRIMARY as READ_PRIMARY
from .readfrom import REPLICA as READ_REPLICA
from .readfrom import ReadStrategy, make_strategy
from .routes import route_name, shape

if TYPE_CHECKING:
    from .commands import CommandInfo
    from .core import Core
    from .topology import Node, Topology



class DropInMixin:
    """lock(), get_encoder(), set_response_callback(), readonly()/readwrite(), client_setname() ..."""

    core: Core
    _strategy: ReadStrategy
    _to_primary: bool
    response_callbacks: Any
    _callbacks: dict[Any, Any]
    retry: Retry

    if TYPE_CHECKING:
        def _run(self, node: Node | str, info: CommandInfo, slot: int | None, args: Sequence[Any],
                 options: dict[str, Any], asking: bool = False) -> Any: ...
        def resolve_targets(self, targets: Any) -> list[Node]: ...
        def default_node(self, topo: Topology) -> Node: ...

    # DEL/UNLINK/EXISTS/TOUCH: one command through execute_command, which splits them per slot
    # (RedisCluster's mixin versions would run a pipeline per slot instead)
    delete = BasicKeyCommands.delete
    unlink = BasicKeyCommands.unlink
    exists = BasicKeyCommands.exists
    touch = BasicKeyCommands.touch

    def _install_callbacks(self, protocol: Any, legacy_responses: bool) -> None:
        self._base_callbacks = CaseInsensitiveDict(dict(self.response_callbacks))
        self.cluster_response_callbacks = CaseInsensitiveDict(
            cluster_callbacks(protocol, legacy_responses))
        self.encoder = self.get_encoder()
        self.response_callbacks.update(composed_callbacks(self._base_callbacks, protocol, legacy_responses))

    def set_response_callback(self, command: str, callback: ResponseCallback) -> None:
        """A custom reply parser for `command`, applied after redis-py's own one (as RedisCluster does)."""
        self.cluster_response_callbacks[command] = callback
        self.response_callbacks[command] = compose(self._base_callbacks.get(command), callback)
        self._callbacks.clear()  # the per-command-name cache of parsers

    # ---------------------------------------------------------------- helpers redis-py builds on

    def get_encoder(self) -> Encoder:
        """The encoder of this client's connections (used by Lock and Script)."""
        kw = self.core.conn_kwargs
        return Encoder(kw.get("encoding", "utf-8"), kw.get("encoding_errors", "strict"),
                       bool(kw.get("decode_responses", False)))

    def get_connection_kwargs(self) -> dict[str, Any]:
        """The keywords every node connection is made with (a copy)."""
        return dict(self.core.conn_kwargs)

    def set_retry(self, retry: Retry) -> None:
        self.retry = retry

    def get_retry(self) -> Retry:
        return self.retry

    def lock(self, name: Any, timeout: float | None = None, sleep: float = 0.1, blocking: bool = True,
             blocking_timeout: float | None = None, lock_class: Any = None, thread_local: bool = True,
             raise_on_release_error: bool = True) -> Any:
        """redis-py's Lock (or `lock_class`) on key `name`, exactly as RedisCluster.lock() makes it."""
        cls = Lock if lock_class is None else lock_class
        return cls(self, name, timeout=timeout, sleep=sleep, blocking=blocking,
                   blocking_timeout=blocking_timeout, thread_local=thread_local,
                   raise_on_release_error=raise_on_release_error)

    def load_external_module(self, funcname: str, func: Any) -> None:
        """RedisCluster's way of adding a module's namespace: `client.<funcname>` becomes `func`."""
        setattr(self, funcname, func)

    # ---------------------------------------------------------------- connection-state commands

    @property
    def read_from_replicas(self) -> bool:
        """True while the client's reads go to replicas (RedisCluster's flag, set by readonly())."""
        return not self._to_primary

    @read_from_replicas.setter
    def read_from_replicas(self, on: bool) -> None:
        self._strategy = make_strategy(READ_REPLICA if on else READ_PRIMARY)
        self._to_primary = not on
        self.__dict__.pop("_reader_view", None)

    def readonly(self, target_nodes: Any = None) -> Any:
        """With target_nodes "replicas" or "all", reads go to replicas from now on (as on RedisCluster).
        Nothing is sent: replica connections send READONLY when they connect."""
        nodes = self._acknowledge(target_nodes)
        if target_nodes in ("replicas", "all"):
            self.read_from_replicas = True
        return nodes

    def readwrite(self, target_nodes: Any = None) -> Any:
        """Reads go to primaries again."""
        nodes = self._acknowledge(target_nodes)
        self.read_from_replicas = False
        return nodes

    def _acknowledge(self, target_nodes: Any) -> Any:
        """RedisCluster's reply to READONLY/READWRITE on these targets: True, or {node: True} for several."""
        if target_nodes is None:
            return True
        return shape("READONLY", {n.name: True for n in self.resolve_targets(target_nodes)})

    def _readonly_command(self, argv: list[Any], options: dict[str, Any]) -> Any:
        return self.readonly(options.pop("target_nodes", None))

    def _readwrite_command(self, argv: list[Any], options: dict[str, Any]) -> Any:
        return self.readwrite(options.pop("target_nodes", None))

    def _rename_command(self, argv: list[Any], options: dict[str, Any]) -> Any:
        return self._rename(argv, options.pop("target_nodes", None))

    def _rename(self, argv: list[Any], targets: Any) -> Any:
        """CLIENT SETNAME / SETINFO (naming.plan): checked on one connection first (the server's
        error if it is bad), then a keyword of every connection of the targeted nodes (all nodes,
        and nodes to come, when no target is given): pooled ones are replaced, and the command is
        sent to each targeted node (the default node without targets) so a named connection stays
        in its CLIENT LIST, as with RedisCluster. Replies shaped as RedisCluster shapes them."""
        core = self.core
        table = core.table
        assert table is not None
        info, _ = table.resolve(argv)
        topo = core.ensure()
        nodes = self.resolve_targets(targets) if targets is not None else None
        p = naming.plan(argv, nodes, self.default_node(topo), core.conn_kwargs, core.node_kwargs, core.nodes)
        self._run(p.probe, info, None, argv, {})
        core.conn_kwargs, core.node_kwargs = p.conn_kwargs, p.node_kwargs
        for name in p.reset:
            st = core.nodes.get(name)
            if st is not None:
                st.pool.disconnect_all()  # idle ones now, in-use ones when returned: new ones carry the option
        return shape(route_name(info.name), {n.name: self._run(n, info, None, argv, {}) for n in p.send_to})
