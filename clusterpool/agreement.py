"""Which slot map to adopt when several nodes answer and disagree (pure: no I/O, no clock).

How this works. A refresh asks a few nodes for their view of the cluster (CLUSTER
SHARDS for the map, CLUSTER NODES for the config epochs). While gossip spreads a
join, a forget or a failover, those views differ; adopting whichever answered
first makes the client flap (node_added, node_removed, node_added). `decide`
merges the views by a fixed rule instead:

Membership (a node is named host:port):
  * a node the current map has is kept unless every *other* answering node has
    forgotten it, or it did not answer and most answering nodes no longer list it;
  * a node the current map lacks is adopted once it answered itself, or once most
    answering nodes list it.
  Nothing is dropped on partial evidence: when a view lacks a current member (or
  names a node nobody asked yet), `decide` asks for those nodes first (`ask`),
  and the driver calls it again with their answers.

Slots: each view claims an owner per slot; claims by non-members are ignored, and
so is a claim that a node owns a slot when that node answered and its own view
leaves the slot unassigned (a node serves only slots it believes it owns, and other
nodes' views of it can stay stale for good: after CLUSTER DELSLOTS on every node, a
node that re-learnt the old owner from its gossip in between keeps naming it). When
the named owner's own view names another owner instead, that is a hand-over under
way and the epochs below decide. The claim whose owner
has the highest config epoch *as the claiming view knows it* wins (Redis' own
rule: a promotion or a slot import bumps the winner's epoch, so a stale or
partitioned view loses); equal epochs go to the owner most views name. When some
views leave a slot unassigned and others name an owner, that owner is asked (`ask`).

Nodes: role and health come from the node's own answer when it answered, else
from the freshest view that lists it (the one knowing the highest epoch).
A replica follows the primary its record names, or, when that primary is gone,
whichever result shard took over that primary's slots.

A merged map that covers fewer slots than the current one is adopted only when
at least two nodes answered. All views equal to the current map (the common
case, a handful of comparisons) means nothing to do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from .resp import text
from .slots import SLOT_COUNT
from .topology import PRIMARY, REPLICA, Node, Shard, Topology

_EXCLUDED_FLAGS = frozenset({"handshake", "noaddr"})


@dataclass(frozen=True, slots=True)
class View:
    """One node's answer: its slot map and the config epochs it knows (node id -> epoch)."""

    source: str
    topology: Topology
    epochs: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def freshness(self) -> int:
        """The highest config epoch this node knows of: a newer view knows a higher one."""
        return max(self.epochs.values(), default=0)

    def epoch_of(self, node: Node) -> int:
        return self.epochs.get(node.id, 0)


@dataclass(frozen=True, slots=True)
class Decision:
    """What a refresh should do: ask more nodes first, adopt a map, or keep the current one."""

    topology: Topology | None = None
    ask: tuple[str, ...] = ()
    reason: str = ""


def parse_epochs(reply: object) -> tuple[Mapping[str, int], frozenset[str]]:
    """From a CLUSTER NODES reply: config epoch per node id, and the ids still in handshake
    (or without an address), which are not members yet."""
    epochs: dict[str, int] = {}
    excluded: set[str] = set()
    for line in text(reply).splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        node_id, flags = parts[0], set(parts[2].split(","))
        if flags & _EXCLUDED_FLAGS:
            excluded.add(node_id)
            continue
        try:
            epochs[node_id] = int(parts[6])
        except ValueError:
            continue
    return MappingProxyType(epochs), frozenset(excluded)


def make_view(source: str, topology: Topology, epochs: Mapping[str, int] | None = None,
              excluded: Iterable[str] = ()) -> View:
    """A View with the nodes CLUSTER NODES called not-yet-members (handshake) taken out."""
    drop = frozenset(excluded)
    if drop:
        shards = []
        for s in topology.shards:
            primary = s.primary if s.primary is None or s.primary.id not in drop else None
            replicas = tuple(r for r in s.replicas if r.id not in drop)
            if primary is None and not replicas and not s.slots:
                continue
            shards.append(Shard(s.slots, primary, replicas, s.id))
        topology = Topology(tuple(shards), topology.source, topology.version)
    return View(source, topology, MappingProxyType(dict(epochs or {})))


def decide(
    current: Topology | None,
    views: Sequence[View],
    *,
    silent: Iterable[str] = (),
    asked: Iterable[str] = (),
    final: bool = False,
) -> Decision:
    """The map to adopt from `views` (see the module docstring for the rule).

    `silent`: nodes that were asked and did not answer (or are known to be failing);
    `asked`: every node asked so far, answered or not. Unless `final`, a decision that
    would add or drop a member on partial evidence returns `ask` instead.
    """
    if not views:
        return Decision(reason="no node answered")
    if current is not None and all(v.topology == current for v in views):
        return Decision(reason="views agree with the current map")
    asked_set = frozenset(asked) | {v.source for v in views}
    silent_set = frozenset(silent) - {v.source for v in views}
    if not final:
        ask = _to_ask(current, views, asked_set, silent_set)
        if ask:
            return Decision(ask=ask, reason="views disagree: asking the nodes in question")
    merged = merge(current, views, silent_set)
    if current is not None and merged.covered < current.covered and len(views) < 2:
        return Decision(reason=f"one node reports only {merged.covered} covered slots; waiting for a second")
    if current is not None and merged == current:
        return Decision(reason="merged views equal the current map")
    return Decision(topology=merged, reason=f"merged {len(views)} view(s)")


def _to_ask(current: Topology | None, views: Sequence[View], asked: frozenset[str],
            silent: frozenset[str]) -> tuple[str, ...]:
    """Nodes whose own answer the rule needs: new ones some view names, ones whose role the
    views dispute, and, when a view lacks a current member that is not known to be failing,
    every current member, so that a drop has everyone's word. (A failing node missing from
    views is the usual sight mid-failover; waiting for more answers would only delay the
    promoted replica's map.)"""
    if current is None:  # discovery: the first answer is all there is to go on
        return ()
    roles: dict[str, set[tuple[str, str | None]]] = {}
    for v in views:
        for s in v.topology.shards:
            owner = s.primary.name if s.primary is not None else None
            for node in s.nodes:
                roles.setdefault(node.name, set()).add((node.role, owner))
    for name, node in current.by_name.items():
        if name in roles:
            shard = next(s for s in current.shards if node in s.nodes)
            roles[name].add((node.role, shard.primary.name if shard.primary is not None else None))
    members = set(current.by_name)
    new = sorted(set(roles) - members - asked)
    disputed = sorted(n for n, r in roles.items() if len(r) > 1 and n not in asked and n not in new)
    claimed = sorted(_disputed_owners(views) - asked - silent - set(new) - set(disputed))
    missing = any(members - silent - set(v.topology.by_name) for v in views)
    first = new + disputed + claimed
    rest = sorted((members | set(roles)) - asked - set(first)) if missing else []
    return tuple(first + rest)


def _segments(views: Sequence[View]) -> list[int]:
    """The first slot of each range over which no view's slot ownership changes."""
    cuts = {0}
    for v in views:
        for s in v.topology.shards:
            for start, end in s.slots:
                cuts.add(start)
                cuts.add(end + 1)
    cuts.discard(SLOT_COUNT)
    return sorted(cuts)


def _owner_name(view: View, slot: int) -> str | None:
    shard = view.topology.slot_table[slot]
    return shard.primary.name if shard is not None and shard.primary is not None else None


def _disputed_owners(views: Sequence[View]) -> set[str]:
    """Nodes named as a slot's owner by some view while another view leaves the slot
    unassigned: their own word settles it. (Two views naming different owners are ordered
    by epochs; asking there would cost a refresh timeout whenever the old owner is the
    paused node of a failover.)"""
    out: set[str] = set()
    for start in _segments(views):
        owners = {_owner_name(v, start) for v in views}
        if None in owners and len(owners) > 1:
            out.update(o for o in owners if o is not None)
    return out


def merge(current: Topology | None, views: Sequence[View], silent: frozenset[str] = frozenset()) -> Topology:
    """One Topology from several views by the module's rule (no asking)."""
    n = len(views)
    answered = {v.source for v in views}
    listing: dict[str, list[tuple[View, Shard, Node]]] = {}
    for v in views:
        for s in v.topology.shards:
            for node in s.nodes:
                listing.setdefault(node.name, []).append((v, s, node))

    members: set[str] = set()
    for name, entries in listing.items():
        others = sum(1 for v, _, _ in entries if v.source != name)
        if current is not None and name in current.by_name:
            forgotten_by_all_others = name in answered and others == 0 and n > 1
            gone = name not in answered and 2 * len(entries) < n
            if not (forgotten_by_all_others or gone):
                members.add(name)
        elif name in answered or 2 * len(entries) > n or current is None:
            members.add(name)

    owners = _resolve_slots(views, members)
    records = {name: _record(name, listing[name]) for name in members}
    return _build(owners, records, silent, sorted(answered))


def _resolve_slots(views: Sequence[View], members: set[str]) -> list[tuple[int, int, Node]]:
    """(start, end, owner) segments: per slot range, the claim with the highest epoch."""
    bounds = _segments(views) + [SLOT_COUNT]
    own = {v.source: v for v in views}
    out: list[tuple[int, int, Node]] = []
    for start, stop in zip(bounds, bounds[1:]):
        claims: dict[str, tuple[int, int, Node]] = {}  # owner -> (best epoch, votes, node)
        for v in views:
            shard = v.topology.slot_table[start]
            owner = shard.primary if shard is not None else None
            if owner is None or owner.name not in members:
                continue
            if owner.name in own and own[owner.name].topology.slot_table[start] is None:
                continue  # the named owner itself says nobody serves this slot
            epoch, votes, _ = claims.get(owner.name, (-1, 0, owner))
            claims[owner.name] = (max(epoch, v.epoch_of(owner)), votes + 1, owner)
        if not claims:
            continue
        winner = max(claims.items(), key=lambda kv: (kv[1][0], kv[1][1], kv[0]))[1][2]
        if out and out[-1][2].name == winner.name and out[-1][1] == start - 1:
            out[-1] = (out[-1][0], stop - 1, winner)
        else:
            out.append((start, stop - 1, winner))
    return out


@dataclass(frozen=True, slots=True)
class _Record:
    node: Node
    primary: str | None  # the primary of the shard it was listed in (None if that had none)
    shard_id: str
    shard_slots: tuple[tuple[int, int], ...]


def _record(name: str, entries: list[tuple[View, Shard, Node]]) -> _Record:
    """The node's own word on its role when it answered; else the freshest, most common one."""
    own = [e for e in entries if e[0].source == name]
    if own:
        view, shard, node = own[0]
    else:
        def key(e: tuple[View, Shard, Node]) -> tuple[str, str | None]:
            return e[2].role, e[1].primary.name if e[1].primary is not None else None

        votes: dict[tuple[str, str | None], int] = {}
        for e in entries:
            votes[key(e)] = votes.get(key(e), 0) + 1
        view, shard, node = max(entries, key=lambda e: (e[0].freshness, votes[key(e)], key(e)[0] == REPLICA))
    primary = shard.primary.name if shard.primary is not None else None
    return _Record(node, primary, shard.id, shard.slots)


def _build(owners: list[tuple[int, int, Node]], records: dict[str, _Record], silent: frozenset[str],
           sources: list[str]) -> Topology:
    slots: dict[str, list[tuple[int, int]]] = {}
    for start, end, owner in owners:
        slots.setdefault(owner.name, []).append((start, end))
    primaries: dict[str, Node] = {}
    for name in slots:
        rec = records[name]
        primaries[name] = rec.node if rec.node.role == PRIMARY else replace(rec.node, role=PRIMARY)
    for name, rec in records.items():
        # an empty primary (a new node, or one that gave all its slots away) stays a primary;
        # one that lost its slots to a promotion and does not answer is the failed one: left out
        if (name not in primaries and rec.node.role == PRIMARY and rec.primary == name
                and (not rec.shard_slots or name not in silent)):
            primaries[name] = rec.node
    replicas: dict[str | None, list[Node]] = {}
    orphan_ids: dict[str | None, str] = {}
    for name, rec in sorted(records.items()):
        if name in primaries:
            continue
        if rec.node.role == PRIMARY and name in silent:
            continue
        node = rec.node if rec.node.role == REPLICA else replace(rec.node, role=REPLICA)
        target = rec.primary if rec.primary in primaries and rec.primary != name else _successor(rec, owners)
        replicas.setdefault(target, []).append(node)
        if target is None:
            orphan_ids.setdefault(target, rec.shard_id)
    shards = [
        Shard(tuple(slots.get(name, ())), p, tuple(replicas.get(name, ())), p.id)
        for name, p in primaries.items()
    ]
    if None in replicas:
        shards.append(Shard((), None, tuple(replicas[None]), orphan_ids.get(None, "")))
    shards.sort(key=lambda s: (s.slots[0][0] if s.slots else SLOT_COUNT, s.id))
    more = f"+{len(sources) - 3}" if len(sources) > 3 else ""
    return Topology(tuple(shards), ",".join(sources[:3]) + more)


def _successor(rec: _Record, owners: list[tuple[int, int, Node]]) -> str | None:
    """The primary that now serves most of the slots the replica's old shard served."""
    counts: dict[str, int] = {}
    for start, end in rec.shard_slots:
        for o_start, o_end, owner in owners:
            overlap = min(end, o_end) - max(start, o_start) + 1
            if overlap > 0:
                counts[owner.name] = counts.get(owner.name, 0) + overlap
    return max(counts, key=lambda k: counts[k]) if counts else None
