"""A pipeline's fast path for the asyncio client: where its key-routed commands go, packed per
node without I/O (`place`), their replies parsed (`settle`, `callback_for`) and a failed one
carried through the policy (`finish`). pipeline.py drives it; routing decisions are the same
ones the single-command path makes (`readfrom.choose`, `fanout.route`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any


from .._redispy import NEVER_DECODE
from .. import errors
from ..commands import CommandInfo
from ..routes import Via, route, write_refused
from ..readfrom import choose
from ..resp import callback_for
from ..slots import encode_key, key_slot
from ..topology import Node, Topology
from .pipeline import Share
from .router import RouterMixin
from .wire import hiredis_pack, refuse_stateful

# Commands that hold their connection until the server answers: never on a shared connection.
_BLOCK_ARG = frozenset({"xread", "xreadgroup"})  # blocking only with BLOCK
_ALWAYS_BLOCKING = frozenset({"wait", "waitaof"})
BLOCKING_FLAGS = frozenset({"blocking"})


def is_blocking(info: CommandInfo, argv: Sequence[Any]) -> bool:
    """Whether the command may block its connection (it then goes to a dedicated lease)."""
    if info.name in _ALWAYS_BLOCKING:
        return True
    if "blocking" not in info.flags:
        return False
    if info.name in _BLOCK_ARG:
        return any(isinstance(a, str | bytes) and a.upper() in ("BLOCK", b"BLOCK") for a in argv)
    return True


class PlacementMixin(RouterMixin):
    """`place`, `settle`, `callback_for`, `finish`: what pipeline.py asks of the client."""

    refuses_writes: bool

    def _single(self, topo: Topology, args: Sequence[Any],
                options: dict[str, Any]) -> tuple[CommandInfo, int, Node | None] | None:
        """A plain single-key command's info, slot and node (None: the slot has no primary
        in the map); None for anything else (`_dispatch` routes it)."""
        table = self._state.table
        assert table is not None
        cached = table.resolved.get(args[0])
        if cached is None or cached[1] or "target_nodes" in options:
            return None
        info = cached[0]
        idx = info.single_key
        if not idx or len(args) <= idx or info.flags & BLOCKING_FLAGS:
            return None
        if self.refuses_writes and not info.readonly:
            raise write_refused(args)
        key = args[idx]
        slot = key_slot(key if type(key) is bytes else encode_key(key))
        shard = topo.slot_table[slot]
        if shard is None or shard.primary is None:
            return info, slot, None
        if not info.readonly:
            return info, slot, shard.primary
        return info, slot, choose(shard, self._state.node_states, self._strategy, self._to_primary,
                                  self.config.replica_fallback)

    def place(self, queue: Sequence[tuple[tuple[Any, ...], dict[str, Any]]],
              slots: Sequence[int] | None = None) -> tuple[list[Share], int]:
        """Where the leading key-routed commands of `queue` go, packed per node, without I/O (a
        pipeline's fast path: each node's share is queued as one unit, no task or future each),
        and how many were placed: from the first that needs `execute_command`'s full path (which
        also raises its errors) on, none is. One connection per node keeps the queue's order;
        `slots`: each command's slot when the caller knows it (the *_nonatomic helpers)."""
        state = self._state
        topo = state.topology
        if topo is None:
            return [], 0
        nodes = state.nodes
        shares: dict[int, Share] = {}  # by id() of the topology's Node: no name built per command
        quick: dict[Any, CommandInfo | None] = {}  # per command name: its info when the quick route applies
        decodes, keyed = self._decodes, slots is not None
        placed = 0
        for args, kw in queue:
            if kw and (NEVER_DECODE in kw and decodes or "target_nodes" in kw):
                break
            head = args[0]
            try:
                quick_info = quick[head]
            except KeyError:
                quick_info = quick[head] = self._quick_info(head, keyed)
            except TypeError:  # an unhashable name: the full route looks at it
                quick_info = None
            try:
                if quick_info is not None and (keyed or len(args) > quick_info.single_key):
                    info = quick_info
                    if keyed:
                        slot = slots[placed]  # type: ignore[index]
                    else:
                        key = args[info.single_key]
                        slot = key_slot(key.encode() if type(key) is str else encode_key(key))
                    node = self._owner(topo, slot, info.readonly)
                else:
                    quick_info = None
                    hit = self._in_slot(topo, args, slots[placed]) if keyed else self._single(topo, args, kw)  # type: ignore[index]
                    if hit is None:
                        hit = self._slot_routed(topo, args)
                        if hit is None:
                            break
                    info, slot, node = hit
                if node is None:
                    break
                share = shares.get(id(node))
                if share is None:
                    name = node.name
                    st = nodes.get(name) or state.state(name)
                    if st.loading or (st.open_until and not st.available()):
                        break
                    mux = st.pool.ready()
                    if mux is None:
                        break
                    share = shares[id(node)] = Share(name, mux)
                if quick_info is not None and share.direct and type(args) is tuple:
                    try:
                        data = hiredis_pack(args)
                    except TypeError:  # an argument hiredis refuses: redis-py's packer decides
                        data = share.mux.pack(args)
                else:
                    data = share.mux.pack(args)
            except Exception:  # noqa: BLE001 - the full path raises it again, or retries by the policy
                break
            share.idxs.append(placed)
            share.infos.append(info)
            share.slots.append(slot)
            share.data.append(data)
            placed += 1
        return list(shares.values()), placed

    def _quick_info(self, head: Any, keyed: bool) -> CommandInfo | None:
        """The info of command name `head` when `place` may route and pack it without the full
        checks (one key at a fixed place, or `keyed`: the caller gives the slot; no subcommand,
        not blocking, nothing a shared connection refuses, a str name hiredis packs as one word)."""
        table = self._state.table
        assert table is not None
        cached = table.resolved.get(head)
        if cached is None or cached[1] or type(head) is not str or " " in head:
            return None
        info = cached[0]
        if info.has_subcommands or info.flags & BLOCKING_FLAGS or not (keyed or info.single_key):
            return None
        if self.refuses_writes and not info.readonly:
            return None
        try:
            refuse_stateful((head,))
        except errors.ConfigurationError:
            return None
        return info

    def _in_slot(self, topo: Topology, args: Sequence[Any], slot: int) -> tuple[CommandInfo, int, Node | None] | None:
        """As `_single`, for a plain command whose keys the caller put in `slot`."""
        table = self._state.table
        assert table is not None
        cached = table.resolved.get(args[0])
        if cached is None or cached[1] or cached[0].flags & BLOCKING_FLAGS:
            return None
        info = cached[0]
        if self.refuses_writes and not info.readonly:
            raise write_refused(args)
        return info, slot, self._owner(topo, slot, info.readonly)

    def _owner(self, topo: Topology, slot: int, readonly: bool) -> Node | None:
        shard = topo.slot_table[slot]
        if shard is None or shard.primary is None:
            return None
        if not readonly:
            return shard.primary
        return choose(shard, self._state.node_states, self._strategy, self._to_primary,
                      self.config.replica_fallback)

    def _slot_routed(self, topo: Topology, args: Sequence[Any]) -> tuple[CommandInfo, int, Node | None] | None:
        """As `_single`, for a command `fanout.route` sends to its keys' one slot (MGET, MSET ...)."""
        table = self._state.table
        assert table is not None
        r = route(table, args, None, self.refuses_writes)
        if r.via is not Via.SLOT or r.slot is None or is_blocking(r.info, r.argv):
            return None
        return r.info, r.slot, self._owner(topo, r.slot, r.readonly)

    def settle(self, args: Sequence[Any], options: dict[str, Any], reply: Any) -> Any:
        """The parsed form of a placed command's raw reply."""
        return self._parse(args[0], reply, options)

    def callback_for(self, head: Any) -> Any:
        """redis-py's response callback for command name `head` (None: the raw reply is kept),
        for a caller that applies it itself to replies with no options."""
        return callback_for(self._callbacks, self.response_callbacks, head)

    async def finish(self, node: str, info: CommandInfo, slot: int, args: Sequence[Any], options: dict[str, Any],
                     error: BaseException) -> Any:
        """A placed command whose reply was `error` (an error reply, a timeout, a lost
        connection), carried through `policy.decide` as in `_run`."""
        first = asyncio.get_running_loop().create_future()
        first.set_exception(error)
        return await self._run(node, info, slot, args, options, first=first)
