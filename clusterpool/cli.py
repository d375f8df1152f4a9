"""`clusterpool` command line: look into a cluster the way the client sees it.

    clusterpool [--url redis://host:port] [--json] topology
    clusterpool route KEY... [--json]
    clusterpool watch [--seconds N]
    clusterpool stats
    clusterpool size --rate R --latency-ms L [--headroom 1.2] [--nodes 3]

It needs nothing beyond the library (argparse): a plain install has a working command.
`--url` and `--json` go before or after the subcommand. Tables use rich's boxes when rich
is installed (the `cli` extra) and plain aligned text otherwise. `--url` defaults to
$CLUSTERPOOL_URL, then redis://127.0.0.1:7000. Errors (cluster unreachable, bad URL, ...)
print one line to stderr and exit 1; usage errors exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from redis import exceptions as rx

from .client import ClusterClient
from .events import Event
from .sizing import recommend_pool_size
from .slots import slot_of
from .texttable import Table, plain, slot_ranges, table
from .topology import Node

DEFAULT_URL = "redis://127.0.0.1:7000"
EXIT_FAILED = 1


class CommandFailed(Exception):
    """A failure to report in one line on stderr (exit status 1)."""


# ---------------------------------------------------------------- output


@contextmanager
def _connected(url: str, **kwargs: Any) -> Iterator[ClusterClient]:
    """A connected client for one command; any Redis/OS error becomes a one-line failure."""
    client: ClusterClient | None = None
    try:
        kwargs.setdefault("socket_connect_timeout", 2.0)
        client = ClusterClient.from_url(url, **kwargs)
        client.connect()
        yield client
    except (rx.RedisError, OSError) as e:
        raise CommandFailed(f"{url}: {e}") from None
    finally:
        if client is not None:
            client.close()


def _probe(client: ClusterClient) -> None:
    """Ping every node once so pools exist and latency is measured (a fresh client has neither)."""
    try:
        client.core.maintain_once()
    except (rx.RedisError, OSError):
        pass  # unreachable nodes show up as unhealthy in the output


def _echo(text: str) -> None:
    print(text, flush=True)


def _echo_json(data: Any) -> None:
    _echo(json.dumps(data, indent=2, default=_jsonable))


def _jsonable(v: Any) -> Any:
    if isinstance(v, Node):
        return _node_dict(v)
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return dataclasses.asdict(v)
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    return str(v)


def _node_dict(n: Node) -> dict[str, Any]:
    return {"name": n.name, "host": n.host, "port": n.port, "role": n.role, "id": n.id, "health": n.health}


def _show(t: Table) -> None:
    """rich's boxed table when rich is installed, plain aligned text otherwise."""
    try:
        from rich.console import Console
        from rich.table import Table as RichTable
    except ImportError:
        _echo(plain(t))
        return
    rt = RichTable(title=t.title, title_justify="left")
    for c in t.columns:
        rt.add_column(c, overflow="fold")
    for i, row in enumerate(t.rows):
        rt.add_row(*row, end_section=i in t.ends)
    tty = sys.stdout.isatty()
    # not a terminal (pipe, file, test runner): wide enough that no address or range is cut
    Console(file=sys.stdout, width=None if tty else 200, no_color=not tty, highlight=False).print(rt)


# ---------------------------------------------------------------- commands


def topology(args: argparse.Namespace) -> None:
    """Shards: slot ranges, primary and replicas, health as the cluster and the client see it."""
    with _connected(args.url, health_interval=3600.0) as client:
        _probe(client)
        view = client.topology()
    if args.json:
        _echo_json(view.as_dict())
    else:
        _show(view.table())


def route(args: argparse.Namespace) -> None:
    """Where each KEY goes: its slot, the primary (writes) and the node a replica read uses."""
    rows: list[dict[str, Any]] = []
    with _connected(args.url, health_interval=3600.0) as client:
        reader = client.reader
        for key in args.keys:
            write = client.node_for(key)
            read = reader.node_for(key, read=True)
            rows.append({"key": key, "slot": slot_of(key), "primary": write.name, "read": read.name,
                         "read_role": read.role})
    if args.json:
        _echo_json(rows)
        return
    _show(table("routes (read = client.reader, replica round-robin)", ("key", "slot", "write (primary)", "read"),
                [[(r["key"], str(r["slot"]), r["primary"], f"{r['read']} ({r['read_role']})") for r in rows]]))


def stats(args: argparse.Namespace) -> None:
    """Connection pool counters per node (after one PING to every node) and refresh counters."""
    with _connected(args.url, health_interval=3600.0) as client:
        _probe(client)
        st = client.stats()
    if args.json:
        _echo_json(st.as_dict())
    else:
        _show(st.table())


def _event_line(e: Event) -> str:
    parts = []
    for f in dataclasses.fields(e):
        v = getattr(e, f.name)
        if isinstance(v, Node):
            v = f"{v.name} ({v.role})"
        elif f.name == "ranges":
            v = slot_ranges(v)
        elif isinstance(v, tuple):
            v = ",".join(map(str, v))
        parts.append(f"{f.name}={v}")
    return " ".join([time.strftime("%H:%M:%S"), e.name, *parts])


def _event_json(e: Event) -> str:
    d = e.as_dict()
    for f in dataclasses.fields(e):
        v = getattr(e, f.name)
        if isinstance(v, Node):
            d[f.name] = _node_dict(v)
    d["time"] = round(time.time(), 3)
    return json.dumps(d, default=_jsonable)


def watch(args: argparse.Namespace) -> None:
    """Stream topology and health events as they happen (one line, or JSON line, each)."""
    seconds: float | None = args.seconds
    with _connected(args.url, refresh_interval=1.0) as client:
        deadline = None if seconds is None else time.monotonic() + seconds
        fmt: Callable[[Event], str] = _event_json if args.json else _event_line
        topo = client.topology()
        print(f"watching {args.url}: {len(topo.shards)} shards, {len(topo.nodes)} nodes, map v{topo.version}"
              + ("" if deadline is None else f", for {seconds:g}s") + " (Ctrl-C to stop)", file=sys.stderr)
        try:
            with client.events() as stream:
                while True:
                    wait = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
                    if wait <= 0:
                        break
                    e = stream.get(timeout=wait)
                    if e is not None:
                        _echo(fmt(e))
        except KeyboardInterrupt:
            pass


def size(args: argparse.Namespace) -> None:
    """Recommended max_connections by Little's law (no cluster needed)."""
    rec = recommend_pool_size(args.rate, args.latency_ms, args.headroom, args.nodes)
    if args.json:
        _echo_json(rec.as_dict())
        return
    _echo(f"concurrency = {args.rate:g}/s x {args.latency_ms:g} ms = {rec.concurrency:g} connections in flight; "
          f"x {args.headroom:g} headroom")
    _echo(f"total max_connections: {rec.total}")
    _echo(f"per node ({args.nodes} primaries): max_connections={rec.per_node}")


# ---------------------------------------------------------------- arguments


def _number(kind: Callable[[str], float], low: float, low_open: bool) -> Callable[[str], float]:
    """An argparse type: a number of `kind` above `low` (or at least `low`)."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < low or (low_open and value == low):
            raise argparse.ArgumentTypeError(f"{text} must be {'>' if low_open else '>='} {low:g}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _shared(top: bool) -> argparse.ArgumentParser:
    """--url and --json, for the top level (with defaults) and for each subcommand (SUPPRESS: an
    option given after the subcommand overrides, one not given leaves the top level's value)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--url", default=os.environ.get("CLUSTERPOOL_URL", DEFAULT_URL) if top else argparse.SUPPRESS,
                   help="any cluster node: redis://[user:pass@]host:port or rediss:// "
                        f"(default: $CLUSTERPOOL_URL, then {DEFAULT_URL})")
    p.add_argument("--json", action="store_true", default=False if top else argparse.SUPPRESS,
                   help="machine-readable JSON output")
    return p


def parser() -> argparse.ArgumentParser:
    """The whole command line: global options, and one subparser per command."""
    top = argparse.ArgumentParser(prog="clusterpool", parents=[_shared(True)],
                                  description="Inspect a Redis Cluster through clusterpool's client.")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    shared = _shared(False)

    def command(fn: Callable[[argparse.Namespace], None]) -> argparse.ArgumentParser:
        doc = (fn.__doc__ or "").strip()
        p = sub.add_parser(fn.__name__, parents=[shared], help=doc, description=doc)
        p.set_defaults(run=fn)
        return p

    command(topology)
    command(route).add_argument("keys", nargs="+", metavar="KEY", help="keys to route")
    command(stats)
    command(watch).add_argument("--seconds", type=_number(float, 0, True), default=None,
                                help="stop after this many seconds (default: until Ctrl-C)")
    p = command(size)
    p.add_argument("--rate", type=_number(float, 0, True), required=True,
                   help="commands per second the application issues")
    p.add_argument("--latency-ms", type=_number(float, 0, True), required=True,
                   help="time a command holds a connection (round trip + server time), in ms")
    p.add_argument("--headroom", type=_number(float, 1, False), default=1.2,
                   help="multiplier for bursts (default: 1.2)")
    p.add_argument("--nodes", type=_number(int, 1, False), default=3,
                   help="primaries the load spreads over (default: 3)")
    return top


def run(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit status (0 ok, 1 failed, 2 usage) instead of exiting."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2), already printed by argparse
        return e.code if isinstance(e.code, int) else 2
    try:
        args.run(args)
    except CommandFailed as e:
        print(f"Error: {' '.join(str(e).split()) or 'failed'}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    """The `clusterpool` console script."""
    raise SystemExit(run(argv))


if __name__ == "__main__":  # pragma: no cover
    main()
