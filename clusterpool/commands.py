"""The command table: where each command's keys are, whether it only reads, where it goes.

How this works: COMMAND entries are parsed into `CommandInfo` values, one per
command and per container subcommand ("config|get"). The entries come from
`command_specs.jsonl`, redis-server 7.0's COMMAND reply shipped with the
package (`scripts/gen_commands.py` makes it), so start-up fetches no command
table; a command the file does not know (a newer server's, a module's) is
asked for with COMMAND INFO through the `fetch` function the client passes
in, once. Key positions come from the Redis 7 key specs, so commands with
movable keys (EVAL, XREAD, ZUNIONSTORE, MIGRATE...) need no COMMAND GETKEYS
round trip; servers without key specs fall back to first/last/step.
`Router`-facing lookups are cached per command-name object, so the hot path
is a dict hit and an index.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import ResponseError

from .resp import as_map, text

log = logging.getLogger("clusterpool")

SPECS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "command_specs.jsonl")

# fetch(name) -> the server's COMMAND INFO entry for `name`, or None if it does not know it;
# raises when it could not ask (the lookup is then tried again next time)
Fetch = Callable[[str], "Sequence[Any] | None"]

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
# Commands redis-py's RedisCluster splits per slot instead of refusing (non-atomic; summed).
SPLIT_SUM = frozenset({"del", "unlink", "exists", "touch"})

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


@functools.cache
def bundled_entries() -> Mapping[str, str]:
    """Command name -> its COMMAND entry as one JSON line, from the file shipped with the package.

    Read once per process and only indexed here (each line starts with
    `["name",`); a line is parsed when its command is first used.
    """
    with open(SPECS_FILE, encoding="utf-8") as f:
        lines = f.read().splitlines()
    return {line[2 : line.index('"', 2)]: line for line in lines[1:] if line.startswith('["')}


def bundled_source() -> str:
    """Which server the shipped command specs were generated from ("COMMAND of redis-server 7.0.15")."""
    with open(SPECS_FILE, encoding="utf-8") as f:
        return str(json.loads(f.readline()).get("source", "?"))


class CommandTable:
    """All commands of one server version, looked up by the names redis-py sends.

    Entries are parsed on first use: a client only ever uses a few dozen of
    the ~240 commands, and parsing all of them would cost more than the rest
    of start-up. Lookup order: entries given (`raw`, a live COMMAND reply),
    then the `bundled` JSON lines, then `fetch` (COMMAND INFO), whose answer
    is kept, "unknown" included.
    """

    def __init__(
        self,
        infos: Iterable[CommandInfo] = (),
        raw: dict[str, Sequence[Any]] | None = None,
        *,
        bundled: Mapping[str, str] | None = None,
        fetch: Fetch | None = None,
    ):
        self._by_name: dict[str, CommandInfo] = {i.name: i for i in infos}
        self._raw: dict[str, Sequence[Any]] = raw or {}
        self._bundled: Mapping[str, str] = bundled or {}
        self._fetch = fetch
        self._absent: set[str] = set()  # names the server said it does not know
        self._asked: set[str] = set()  # names whose entry came from the server (COMMAND INFO)
        # args[0] exactly as given -> (info, shift), shift = extra words in args[0]. Public because
        # the per-command paths (client, pipeline) read it directly: a dict hit, no method call.
        self.resolved: dict[Any, tuple[CommandInfo, int]] = {}

    @classmethod
    def from_reply(cls, reply: Iterable[Sequence[Any]]) -> CommandTable:
        """A table of exactly the commands in a COMMAND reply."""
        return cls(raw={text(entry[0]).lower(): entry for entry in reply})

    @classmethod
    def bundled_with(cls, fetch: Fetch | None = None) -> CommandTable:
        """The shipped redis-server 7.0 specs, asking the server (`fetch`) for anything else."""
        return cls(bundled=bundled_entries(), fetch=fetch)

    def _lookup(self, name: str) -> CommandInfo | None:
        info = self._by_name.get(name)
        if info is None:
            top, _, sub = name.partition("|")
            if top not in self._by_name:
                entry = self._raw.get(top) or self._load(top)  # kept: a concurrent first lookup finds it
                if entry is None:
                    return None
                self._add(entry)
                info = self._by_name.get(name)
            if info is None and sub and top not in self._asked:
                # a subcommand newer than the shipped specs (CLIENT NO-TOUCH on 7.2): ask for the container
                live = self._ask(top)
                if live is not None:
                    self._raw[top] = live
                    self._add(live)
                    info = self._by_name.get(name)
        return info

    def _add(self, entry: Sequence[Any]) -> None:
        # one update: a concurrent lookup sees the command with all its subcommands or not at all
        self._by_name.update({i.name: i for i in parse_command_entry(entry)})

    def _load(self, top: str) -> Sequence[Any] | None:
        line = self._bundled.get(top)
        entry: Sequence[Any] | None = json.loads(line) if line is not None else self._ask(top)
        if entry is not None:
            self._raw[top] = entry
        return entry

    def _ask(self, top: str) -> Sequence[Any] | None:
        """The server's entry for `top` through `fetch`, once per name (a failed ask is retried later)."""
        if self._fetch is None or top in self._absent or top in self._asked:
            return None
        try:
            entry = self._fetch(top)
        except ResponseError as e:  # the server answered (an ACL without COMMAND ...): do not ask again
            log.debug("COMMAND INFO %s refused: %s", top, e)
            entry = None
        except Exception as e:  # no answer: send the command as unknown this time, ask again next time
            log.debug("COMMAND INFO %s failed: %s", top, e)
            return None
        if entry is None:
            if len(self._absent) < 4096:  # bound against unbounded distinct unknown names
                self._absent.add(top)
            return None
        self._asked.add(top)
        return entry

    def __contains__(self, name: str) -> bool:
        return self._lookup(name.lower()) is not None

    def __len__(self) -> int:
        known = set(self._raw) | set(self._bundled)
        return len(known) if known else len(self._by_name)

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
