"""`clusterpool` command line: look into a cluster the way the client sees it.

    clusterpool [--url redis://host:port] [--json] topology
    clusterpool route KEY...
    clusterpool watch [--seconds N]
    clusterpool stats
    clusterpool size --rate R --latency-ms L [--headroom 1.2] [--nodes 3]

`--url` defaults to $CLUSTERPOOL_URL, then redis://127.0.0.1:7000. Errors
(cluster unreachable, bad URL, ...) print one line to stderr and exit 1.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
from redis import exceptions as rx

from .client import ClusterClient
from .events import Event
from .replication import Lag
from .sizing import recommend_pool_size
from .slots import SLOT_COUNT, slot_of
from .topology import Node

DEFAULT_URL = "redis://127.0.0.1:7000"


class _Opts:
    def __init__(self, url: str, as_json: bool) -> None:
        self.url = url
        self.json = as_json


# ---------------------------------------------------------------- helpers


def _fail(message: str) -> None:
    """One line on stderr, exit status 1 (click prints 'Error: ...')."""
    raise click.ClickException(" ".join(str(message).split()) or "failed")


@contextmanager
def _connected(opts: _Opts, **kwargs: Any) -> Iterator[ClusterClient]:
    """A connected client for one command; any Redis/OS error becomes a one-line failure."""
    client: ClusterClient | None = None
    try:
        kwargs.setdefault("socket_connect_timeout", 2.0)
        client = ClusterClient.from_url(opts.url, **kwargs)
        client.connect()
        yield client
    except (rx.RedisError, OSError) as e:
        _fail(f"{opts.url}: {e}")
    finally:
        if client is not None:
            client.close()


def _probe(client: ClusterClient) -> None:
    """Ping every node once so pools exist and latency is measured (a fresh client has neither)."""
    try:
        client.core.maintain_once()
    except (rx.RedisError, OSError):
        pass  # unreachable nodes show up as unhealthy in the output


def _lag(lag: Lag | None) -> str:
    """A replica's lag as the topology table shows it."""
    if lag is None:
        return "-"
    return f"{lag.bytes} B / {lag.seconds} s" if lag.linked else "not linked"


def _ranges(slot_ranges: Any) -> str:
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in slot_ranges) or "-"


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=_jsonable))


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


def _console() -> Any:
    from rich.console import Console

    out = sys.stdout
    tty = out.isatty()
    # not a terminal (pipe, file, test runner): wide enough that no address or range is cut
    return Console(file=out, width=None if tty else 200, no_color=not tty, highlight=False)


def _table(title: str, columns: list[str]) -> Any:
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, overflow="fold")
    return t


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


# ---------------------------------------------------------------- commands


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url",
    envvar="CLUSTERPOOL_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="Any cluster node: redis://[user:pass@]host:port or rediss:// (env CLUSTERPOOL_URL).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
@click.pass_context
def main(ctx: click.Context, url: str, as_json: bool) -> None:
    """Inspect a Redis Cluster through clusterpool's client."""
    ctx.obj = _Opts(url, as_json)


@main.command()
@click.pass_obj
def topology(opts: _Opts) -> None:
    """Shards: slot ranges, primary and replicas, health as the cluster and the client see it."""
    with _connected(opts, health_interval=3600.0) as client:
        _probe(client)
        view = client.topology()
    if opts.json:
        _echo_json(view.as_dict())
        return
    console = _console()
    state = "ok" if view.covered_slots == SLOT_COUNT else "NOT FULLY COVERED"
    table = _table(
        f"cluster via {view.source}: {len(view.shards)} shards, {len(view.nodes)} nodes, "
        f"{view.covered_slots}/{SLOT_COUNT} slots covered ({state}), map v{view.version}",
        ["shard", "slots", "node", "role", "cluster health", "client health", "latency ms", "pool (in use/size)",
         "zone", "lag"],
    )
    for i, shard in enumerate(view.shards):
        members = ([shard.primary] if shard.primary else []) + list(shard.replicas)
        if not members:
            table.add_row(str(i), _ranges(shard.slots), "-", "-", "-", "-", "-", "-", "-", "-")
        for j, n in enumerate(members):
            pool = "-" if n.pool is None else f"{n.pool.in_use}/{n.pool.size}"
            table.add_row(
                str(i) if j == 0 else "",
                _ranges(shard.slots) if j == 0 else "",
                n.name,
                n.role,
                n.cluster_health,
                n.health,
                _ms(n.latency_ms),
                pool,
                n.zone or "-",
                _lag(n.lag),
                end_section=j == len(members) - 1,
            )
    console.print(table)


@main.command()
@click.argument("keys", nargs=-1, required=True)
@click.pass_obj
def route(opts: _Opts, keys: tuple[str, ...]) -> None:
    """Where each KEY goes: its slot, the primary (writes) and the node a replica read uses."""
    rows: list[dict[str, Any]] = []
    with _connected(opts, health_interval=3600.0) as client:
        reader = client.reader
        for key in keys:
            write = client.node_for(key)
            read = reader.node_for(key, read=True)
            rows.append({"key": key, "slot": slot_of(key), "primary": write.name, "read": read.name,
                         "read_role": read.role})
    if opts.json:
        _echo_json(rows)
        return
    table = _table("routes (read = client.reader, replica round-robin)", ["key", "slot", "write (primary)", "read"])
    for r in rows:
        table.add_row(r["key"], str(r["slot"]), r["primary"], f"{r['read']} ({r['read_role']})")
    _console().print(table)


@main.command()
@click.pass_obj
def stats(opts: _Opts) -> None:
    """Connection pool counters per node (after one PING to every node) and refresh counters."""
    with _connected(opts, health_interval=3600.0) as client:
        _probe(client)
        st = client.stats()
    if opts.json:
        _echo_json(st.as_dict())
        return
    table = _table(
        f"pools: {st.total_connections} connections ({st.in_use} in use, {st.idle} idle, {st.waiting} waiting), "
        f"{st.refreshes} refreshes, map v{st.topology_version}",
        ["node", "max", "size", "in use", "idle", "waiting", "created", "closed", "timeouts", "errors",
         "acquires", "wait ms"],
    )
    for p in sorted(st.nodes, key=lambda p: p.node):
        table.add_row(
            p.node, str(p.max_connections), str(p.size), str(p.in_use), str(p.idle), str(p.waiting),
            str(p.created), str(p.closed), str(p.timeouts), str(p.errors), str(p.acquires),
            f"{p.wait_time_total * 1000:.3f}",
        )
    _console().print(table)


def _event_line(e: Event) -> str:
    parts = []
    for f in dataclasses.fields(e):
        v = getattr(e, f.name)
        if isinstance(v, Node):
            v = f"{v.name} ({v.role})"
        elif f.name == "ranges":
            v = _ranges(v)
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


@main.command()
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop after this many seconds (default: until Ctrl-C).")
@click.pass_obj
def watch(opts: _Opts, seconds: float | None) -> None:
    """Stream topology and health events as they happen (one line, or JSON line, each)."""
    with _connected(opts, refresh_interval=1.0) as client:
        deadline = None if seconds is None else time.monotonic() + seconds
        fmt: Callable[[Event], str] = _event_json if opts.json else _event_line
        topo = client.topology()
        click.echo(
            f"watching {opts.url}: {len(topo.shards)} shards, {len(topo.nodes)} nodes, map v{topo.version}"
            + ("" if deadline is None else f", for {seconds:g}s") + " (Ctrl-C to stop)",
            err=True,
        )
        try:
            with client.events() as stream:
                while True:
                    wait = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
                    if wait <= 0:
                        break
                    e = stream.get(timeout=wait)
                    if e is not None:
                        click.echo(fmt(e))
                        sys.stdout.flush()
        except KeyboardInterrupt:
            pass


@main.command()
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), required=True,
              help="Commands per second the application issues.")
@click.option("--latency-ms", type=click.FloatRange(min=0, min_open=True), required=True,
              help="Time a command holds a connection (round trip + server time), in ms.")
@click.option("--headroom", type=click.FloatRange(min=1), default=1.2, show_default=True,
              help="Multiplier for bursts.")
@click.option("--nodes", type=click.IntRange(min=1), default=3, show_default=True,
              help="Primaries the load spreads over.")
@click.pass_obj
def size(opts: _Opts, rate: float, latency_ms: float, headroom: float, nodes: int) -> None:
    """Recommended max_connections by Little's law (no cluster needed)."""
    rec = recommend_pool_size(rate, latency_ms, headroom, nodes)
    if opts.json:
        _echo_json(rec.as_dict())
        return
    click.echo(
        f"concurrency = {rate:g}/s x {latency_ms:g} ms = {rec.concurrency:g} connections in flight; "
        f"x {headroom:g} headroom"
    )
    click.echo(f"total max_connections: {rec.total}")
    click.echo(f"per node ({nodes} primaries): max_connections={rec.per_node}")


if __name__ == "__main__":  # pragma: no cover
    main()
