"""CLIENT SETNAME / CLIENT SETINFO as connection options of the targeted nodes: the plan, pure.

How this works: RedisCluster sends CLIENT SETNAME to the targeted nodes on one pooled
connection each, so a name shows in those nodes' CLIENT LIST. Our pools hold several
connections per node (the asyncio client shares them between tasks), so a name that only
one connection carried would come and go with that connection. Instead the name (or
LIB-NAME / LIB-VER) becomes a connection keyword: `plan()` says which keyword it is, the
new keyword sets (every node and nodes to come when no target is given, else those nodes),
whose connections take it now, and where the command is sent so each targeted node keeps
at least one named connection (the default node when no target is given, as RedisCluster
sends it there). Both drivers carry the plan out: check the command on `probe` first (the
server's error for a bad name, before anything changes), then swap the keywords in, renew
or rename the `reset` nodes' connections, and send the command on `send_to`. No I/O here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.driver_info import DriverInfo

from . import errors
from .topology import Node

COMMANDS = frozenset({"client|setname", "client|setinfo"})  # command-table names
NAME_KEY = "client_name"
INFO_KEY = "driver_info"


@dataclass(frozen=True, slots=True)
class Renaming:
    """What CLIENT SETNAME / SETINFO changes (see the module docstring); keyword sets are new dicts."""

    option: Mapping[str, Any]  # {"client_name": name} or {"driver_info": DriverInfo}
    conn_kwargs: dict[str, Any]  # every node's keywords from now on
    node_kwargs: dict[str, dict[str, Any]]  # per-node keywords from now on
    reset: tuple[str, ...]  # nodes whose current connections take the option now
    send_to: tuple[Node, ...]  # where the command goes once the keywords are in: one named connection each

    @property
    def probe(self) -> Node:
        """Where the command is checked before anything changes."""
        return self.send_to[0]


def _text(arg: Any) -> str:
    return arg.decode() if isinstance(arg, bytes | bytearray) else str(arg)


def option_of(argv: Sequence[Any], conn_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The connection keyword a CLIENT SETNAME / SETINFO command line stands for (argv[0:2] is
    CLIENT SETNAME|SETINFO); ConfigurationError for a wrong argument count, before any I/O."""
    sub = _text(argv[1]).upper() if len(argv) > 1 else ""
    if sub == "SETNAME":
        if len(argv) != 3:
            raise errors.ConfigurationError("CLIENT SETNAME takes exactly one name")
        return {NAME_KEY: argv[2]}
    if len(argv) != 4:
        raise errors.ConfigurationError("CLIENT SETINFO takes an attribute (LIB-NAME or LIB-VER) and a value")
    attr, value = _text(argv[2]).upper(), _text(argv[3])
    current = conn_kwargs.get(INFO_KEY) or DriverInfo()
    if attr == "LIB-NAME":
        return {INFO_KEY: DriverInfo(name=value, lib_version=current.lib_version)}
    if attr == "LIB-VER":
        return {INFO_KEY: dataclasses.replace(current, lib_version=value)}
    return {INFO_KEY: current}  # an unknown attribute: the server's error comes from the probe


def plan(argv: Sequence[Any], targets: Sequence[Node] | None, default: Node, conn_kwargs: Mapping[str, Any],
         node_kwargs: Mapping[str, Mapping[str, Any]], known: Iterable[str]) -> Renaming:
    """The change for `argv` sent to `targets` (None: no target_nodes given); `known` are the nodes
    with connections now, `default` the default node."""
    option = option_of(argv, conn_kwargs)
    key = next(iter(option))
    if targets is None:
        return Renaming(option, {**conn_kwargs, **option},
                        {n: {k: v for k, v in kw.items() if k != key} for n, kw in node_kwargs.items()},
                        tuple(known), (default,))
    if not targets:
        raise errors.ConfigurationError("target_nodes names no node")
    send_to = tuple(dict.fromkeys(targets))  # each node once, in the caller's order
    names = tuple(n.name for n in send_to)
    return Renaming(option, dict(conn_kwargs),
                    {**{n: dict(kw) for n, kw in node_kwargs.items()},
                     **{n: {**node_kwargs.get(n, {}), **option} for n in names}},
                    names, send_to)
