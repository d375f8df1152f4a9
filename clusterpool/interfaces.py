"""What pipelines, transactions, pub/sub and the multi-key helpers may ask of their client.

A `ClusterClient` (or one of its views: a view has its own read strategy and write
refusal) implements `Dispatcher`; the satellites are typed against this protocol, never
against the client class, so they neither import client.py nor reach into its private
state. Everything here is the client's decision-making surface: where a command goes
(`pick_node`, `default_node`, `resolve_targets`), whether it may go at all
(`refuses_writes`, `refuse_write`), how a reply is parsed (`parse_reply`), and the
failure policy's budgets and effects (`new_budget`, `backoff_delay`, `note_failure`,
`give_up`), and RedisCluster's node objects (`get_node`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .core import Core
    from .nodestate import NodeState
    from .nodeapi import ClusterNode
    from .policy import Action, Budget, Failure
    from .topology import Node, Topology


class Dispatcher(Protocol):
    core: Core  # the state shared by a client and its views
    max_redirections: int
    retry_unknown_outcome: bool
    refuses_writes: bool  # a reader view: anything that may write is refused before sending

    def pick_node(self, topo: Topology, slot: int, readonly: bool, deadline: float | None = None) -> Node: ...
    def default_node(self, topo: Topology) -> Node: ...
    def resolve_targets(self, targets: Any) -> list[Node]: ...
    def refuse_write(self, args: Sequence[Any]) -> None: ...
    def parse_reply(self, head: Any, response: Any, options: dict[str, Any]) -> Any: ...
    def new_budget(self, deadline: float | None = None) -> Budget: ...
    def deadline(self) -> float | None: ...
    def backoff_delay(self, n: int) -> float: ...
    def note_failure(self, action: Action, failure: Failure, st: NodeState, error: BaseException | None) -> None: ...
    def get_node(self, host: str | None = None, port: int | None = None,
                 node_name: str | None = None) -> ClusterNode | None: ...
    def give_up(self, action: Action, failure: Failure, st: NodeState, slot: int | None, args: Sequence[Any],
                error: BaseException | None) -> BaseException: ...
