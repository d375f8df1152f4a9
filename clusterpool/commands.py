"""The command table: where each command's keys are, whether it only reads, where it goes.

How this works: the server's COMMAND reply (fetched once per client) is parsed
into `CommandInfo` values, one per command and per container subcommand
("config|get"). Key positions come from the Redis 7 key specs, so commands
with movable keys (EVAL, XREAD, ZUNIONSTORE, MIGRATE...) need no COMMAND
GETKEYS round trip; servers without key specs fall back to first/last/step.
`Router`-facing lookups are cached per command-name object, so the hot path
is a dict hit and an index.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from .resp import as_map, text

# Where a keyless command goes. Values of CommandInfo.request_policy.
DEFAULT = "default"  # one primary (any): CLUSTER INFO, TIME, CLIENT LIST ...
ALL_SHARDS = "all_shards"  # every primary: DBSIZE, KEYS, FLUSHALL ...
ALL_NODES = "all_nodes"  # every node: SCRIPT LOAD, CONFIG SET ...
MULTI_SHARD = "multi_shard"  # keyed, may be split per slot: DEL, EXISTS, MGET ...

# Cluster-wide behaviour we promise regardless of what the server's tips say.
_OVERRIDES: dict[str, tuple[str, str | None]] = {
    "ping": (ALL_SHARDS, "all_succeeded"),
    "dbsize": (ALL_SHARDS, "agg_sum"),
    "keys": (ALL_SHARDS, "concat"),
    "info": (ALL_NODES, "per_node"),
    "flushall": (ALL_SHARDS, "all_succeeded"),
    "flushdb": (ALL_SHARDS, "all_succeeded"),
    "randomkey": (DEFAULT, None),
    "script|load": (ALL_NODES, "all_succeeded"),
    "script|flush": (ALL_NODES, "all_succeeded"),
    "script|exists": (ALL_NODES, "agg_logical_and"),
    "script|kill": (ALL_SHARDS, "one_succeeded"),
    "function|load": (ALL_SHARDS, "all_succeeded"),
    "function|delete": (ALL_SHARDS, "all_succeeded"),
    "function|flush": (ALL_SHARDS, "all_succeeded"),
    "function|restore": (ALL_SHARDS, "all_succeeded"),
    "function|list": (DEFAULT, None),
    "config|set": (ALL_NODES, "all_succeeded"),
    "config|resetstat": (ALL_NODES, "all_succeeded"),
    "config|rewrite": (ALL_NODES, "all_succeeded"),
    "memory|stats": (DEFAULT, None),
    "wait": (DEFAULT, None),
    "waitaof": (DEFAULT, None),
}

# Commands that must never be sent through the router (they change connection
# state that a pooled, shared connection cannot keep).
CONNECTION_STATE = frozenset(
    {"select", "multi", "exec", "discard", "watch", "unwatch", "readonly", "readwrite",
     "asking", "quit", "reset", "hello", "auth", "client|setname", "subscribe",
     "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe", "monitor"}
)


@dataclass(frozen=True, slots=True)
class KeySpec:
    """One Redis 7 key spec: how to find a group of keys in argv."""

    begin: str  # "index" | "keyword" | "unknown"
    index: int = 0
    keyword: str = ""
    startfrom: int = 0
    find: str = "range"  # "range" | "keynum" | "unknown"
    lastkey: int = 0
    keystep: int = 1
    limit: int = 0
    keynumidx: int = 0
    firstkey: int = 1

    def keys(self, argv: Sequence[Any]) -> list[Any]:
        n = len(argv)
        if self.begin == "index":
            start = self.index
        elif self.begin == "keyword":
            start = _find_keyword(argv, self.keyword, self.startfrom)
            if start < 0:
                return []
        else:
            return []
        if start >= n:
            return []
        if self.find == "range":
            if self.lastkey >= 0:
                last = start + self.lastkey
            elif self.limit > 1:
                last = start + ((n - start) // self.limit) - 1 if self.limit else n - 1
            else:
                last = n + self.lastkey
            last = min(last, n - 1)
            return list(argv[start : last + 1 : max(self.keystep, 1)])
        if self.find == "keynum":
            try:
                count = int(argv[start + self.keynumidx])
            except (IndexError, ValueError, TypeError):
                return []
            if count <= 0:
                return []
            first = start + self.firstkey
            step = max(self.keystep, 1)
            return list(argv[first : first + count * step : step])
        return []


def _find_keyword(argv: Sequence[Any], keyword: str, startfrom: int) -> int:
    kw = keyword.upper()
    n = len(argv)
    rng: Iterable[int]
    if startfrom >= 0:
        rng = range(startfrom, n)
    else:
        rng = range(n + startfrom, 0, -1)
    for i in rng:
        a = argv[i]
        if isinstance(a, (bytes, str)):
            s = a.decode(errors="replace") if isinstance(a, bytes) else a
            if s.upper() == kw:
                return i + 1
    return -1


@dataclass(frozen=True, slots=True)
class CommandInfo:
    """What the router needs to know about one command (or container subcommand)."""

    name: str  # lower case; subcommands as "config|get"
    readonly: bool = False
    write: bool = False
    key_specs: tuple[KeySpec, ...] = ()
    request_policy: str = DEFAULT
    response_policy: str | None = None
    # argv index of the only key when the command has exactly one key at a fixed
    # place (GET, SET, HGET ...); 0 when keys must be found by the specs.
    single_key: int = 0
    has_subcommands: bool = False
    flags: frozenset[str] = field(default=frozenset(), repr=False)

    def keys(self, argv: Sequence[Any]) -> list[Any]:
        """Every key in a full argv (argv[0] is the command name)."""
        if self.single_key:
            return [argv[self.single_key]] if len(argv) > self.single_key else []
        if len(self.key_specs) == 1:
            return self.key_specs[0].keys(argv)
        found = [spec.keys(argv) for spec in self.key_specs]
        if sum(1 for keys in found if keys) > 1:
            # MIGRATE's KEYS form leaves an empty placeholder where the single key goes
            found = [keys for keys in found if keys != [""] and keys != [b""]]
        return [k for keys in found for k in keys]


def _parse_spec(raw: Any) -> KeySpec:
    d = as_map(raw)
    bs, fk = as_map(d.get("begin_search", {})), as_map(d.get("find_keys", {}))
    bspec, fspec = as_map(bs.get("spec", {}) or {}), as_map(fk.get("spec", {}) or {})
    begin, find = text(bs.get("type", "unknown")), text(fk.get("type", "unknown"))
    return KeySpec(
        begin=begin,
        index=int(bspec.get("index", 0)),
        keyword=text(bspec.get("keyword", "")),
        startfrom=int(bspec.get("startfrom", 0)),
        find=find,
        lastkey=int(fspec.get("lastkey", 0)),
        keystep=int(fspec.get("keystep", 1)),
        limit=int(fspec.get("limit", 0)),
        keynumidx=int(fspec.get("keynumidx", 0)),
        firstkey=int(fspec.get("firstkey", 1)),
    )


def parse_command_entry(entry: Sequence[Any]) -> list[CommandInfo]:
    """CommandInfo for one COMMAND reply entry and each of its subcommands."""
    name = text(entry[0]).lower()
    flags = frozenset(text(f).lower() for f in entry[2])
    tips = [text(t) for t in entry[7]] if len(entry) > 7 else []
    tip = dict(t.split(":", 1) for t in tips if ":" in t)
    specs: tuple[KeySpec, ...]
    if len(entry) > 8 and entry[8]:
        specs = tuple(_parse_spec(s) for s in entry[8])
    elif int(entry[3]) > 0:  # pre-7.0 server: first, last, step
        first, last, step = int(entry[3]), int(entry[4]), int(entry[5])
        specs = (KeySpec("index", index=first, lastkey=last - first if last >= 0 else last, keystep=step),)
    else:
        specs = ()
    if name == "publish" and not specs:  # routed by the channel's slot, as redis-py's RedisCluster does
        specs = (KeySpec("index", index=1),)
    subs = entry[9] if len(entry) > 9 and entry[9] else []
    request = tip.get("request_policy", "key" if specs else DEFAULT)
    response = tip.get("response_policy")
    if name in _OVERRIDES:
        request, response = _OVERRIDES[name]
    single = 0
    if len(specs) == 1:
        s = specs[0]
        if s.begin == "index" and s.find == "range" and s.lastkey == 0:
            single = s.index
    info = CommandInfo(
        name=name,
        readonly="readonly" in flags and "write" not in flags,
        write="write" in flags,
        key_specs=specs,
        request_policy=request,
        response_policy=response,
        single_key=single,
        has_subcommands=bool(subs),
        flags=flags,
    )
    out = [info]
    for sub in subs:
        out.extend(parse_command_entry(sub))
    return out


UNKNOWN = CommandInfo(name="", request_policy=DEFAULT)


class CommandTable:
    """All commands of one server version, looked up by the names redis-py sends.

    Entries of the COMMAND reply are parsed on first use: a client only ever
    uses a few dozen of the ~240 commands, and parsing all of them would cost
    more than the rest of start-up.
    """

    def __init__(self, infos: Iterable[CommandInfo] = (), raw: dict[str, Sequence[Any]] | None = None):
        self._by_name: dict[str, CommandInfo] = {i.name: i for i in infos}
        self._raw: dict[str, Sequence[Any]] = raw or {}
        # args[0] exactly as given -> (info, shift), shift = extra words in args[0]. Public because
        # the per-command paths (client, pipeline) read it directly: a dict hit, no method call.
        self.resolved: dict[Any, tuple[CommandInfo, int]] = {}

    @classmethod
    def from_reply(cls, reply: Iterable[Sequence[Any]]) -> CommandTable:
        return cls(raw={text(entry[0]).lower(): entry for entry in reply})

    def _lookup(self, name: str) -> CommandInfo | None:
        info = self._by_name.get(name)
        if info is None:
            top = name.split("|", 1)[0]
            entry = self._raw.get(top)  # kept: a concurrent first lookup must find it too
            if entry is None:
                return None
            for i in parse_command_entry(entry):
                self._by_name[i.name] = i
            info = self._by_name.get(name)
        return info

    def __contains__(self, name: str) -> bool:
        return self._lookup(name.lower()) is not None

    def __len__(self) -> int:
        return len(self._raw) if self._raw else len(self._by_name)

    def get(self, name: str) -> CommandInfo | None:
        return self._lookup(name.lower())

    def resolve(self, args: Sequence[Any]) -> tuple[CommandInfo, list[Any]]:
        """The command's info and its argv as the server will see it (words of args[0] split)."""
        head = args[0]
        cached = self.resolved.get(head)
        if cached is not None:
            info, shift = cached
            if not info.has_subcommands or shift:
                return info, (_split(head) + list(args[1:])) if shift else list(args)
        words = _split(head)
        argv = words + list(args[1:])
        name = text(words[0]).lower()
        found = self._lookup(name)
        if found is None:
            return UNKNOWN, argv
        info = found
        if info.has_subcommands and len(argv) > 1 and isinstance(argv[1], (str, bytes)):
            sub = self._lookup(f"{name}|{text(argv[1]).lower()}")
            if sub is not None:
                if len(words) > 1:
                    self._remember(head, sub, len(words) - 1)
                return sub, argv
        self._remember(head, info, len(words) - 1)
        return info, argv

    def _remember(self, head: Any, info: CommandInfo, shift: int) -> None:
        if len(self.resolved) < 4096:  # bound the cache against unbounded distinct heads
            self.resolved[head] = (info, shift)

    def keys(self, args: Sequence[Any]) -> list[Any]:
        info, argv = self.resolve(args)
        return info.keys(argv)


def _split(head: Any) -> list[Any]:
    if isinstance(head, str):
        return head.split() if " " in head else [head]
    if isinstance(head, bytes):
        return head.split() if b" " in head else [head]
    return [head]
