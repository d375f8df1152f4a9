"""Benchmark the asyncio client against the other asyncio clients, as ratios of one run.

    .venv/bin/python scripts/bench_async.py                  # starts a private 3x1 cluster
    .venv/bin/python scripts/bench_async.py --cluster 127.0.0.1:7000 --ops 20000

Scenarios: N tasks sharing one client, alternating SET/GET on keys over all slots
(N = 1, 16, 256; ops/s); a pipeline of 10k SETs (commands/s); mget_nonatomic of 100 keys
over all slots (calls/s, one after the other). Clients: clusterpool.asyncio.ClusterClient,
redis.asyncio.cluster.RedisCluster, redis.asyncio.Redis on one node (keys of that node
only: the floor; a plain pipeline, and one MGET of keys in one slot), valkey-glide's asyncio client and
coredis (each skipped when not importable; `pip install -e '.[bench]'`). Each scenario
runs every client in turn, `--rounds` times (so all see the same machine load), and
keeps each client's best. Then it prints the ratios and issue 16's targets, met or not.

Client-side caching (`--cache`, or `--only-cache`): one task, GET one after the other with
clusterpool.asyncio: uncached, cached hits (a hot key set read before), and cached misses
(keys never read before) against uncached GETs of such keys; it prints hits/uncached (issue
25's target: >= 10x) and what a miss costs over no cache (target: under 5%).

Event loops (`--loops`, default: asyncio and uvloop when installed): all the rounds on one
loop, then all on the next (glide's asyncio client hangs when it has clients on two live
loops, so the loops cannot take turns within a round); one run prints them side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aredis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from clusterpool import CacheConfig
from clusterpool.asyncio import ClusterClient
from clusterpool.slots import key_slot
from clusterpool.testing import LocalCluster

OURS, RC, FLOOR, GLIDE, COREDIS = (
    "clusterpool.asyncio", "redis.asyncio RedisCluster", "redis.asyncio.Redis 1 node", "glide asyncio", "coredis",
)
PIPELINE, MGET = "pipeline 10k SET", "mget_nonatomic 100"
UNITS = {PIPELINE: "cmds/s", MGET: "calls/s"}
Best = dict[tuple[str, str], float]  # (scenario, client) -> best rate of the rounds


def loop_factories(names: list[str]) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The event loops to run on, by name; uvloop is left out (said so) when not installed."""
    out: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {}
    for name in names:
        if name == "asyncio":
            out[name] = asyncio.new_event_loop
        elif name == "uvloop":
            try:
                import uvloop
            except ImportError:
                print("skipped uvloop: not installed (pip install uvloop)")
                continue
            out[name] = uvloop.new_event_loop
        else:
            raise SystemExit(f"unknown loop {name!r}: asyncio or uvloop")
    return out


@dataclass
class Subject:
    """One client under test: how it does each scenario's unit of work."""

    name: str
    get: Callable[[str], Awaitable[Any]]
    set: Callable[[str, str], Awaitable[Any]]
    keys: list[str]  # the keys it may use (the floor: one node's only)
    pipeline: Callable[[list[str]], Awaitable[Any]]  # SET of each key, one batch
    mget: Callable[[list[str]], Awaitable[Any]]
    close: Callable[[], Awaitable[Any]]


async def tasks_rate(s: Subject, tasks: int, ops: int) -> float:
    """ops/s of `tasks` workers sharing the client, each alternating SET and GET."""
    per_task = max(2, ops // tasks)
    keys = s.keys

    async def worker(w: int) -> None:
        for i in range(per_task):
            k = keys[(w * 7919 + i) % len(keys)]
            if i % 2:
                await s.get(k)
            else:
                await s.set(k, "v")

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(tasks)))
    return per_task * tasks / (time.perf_counter() - t0)


async def pipeline_rate(s: Subject, size: int) -> float:
    keys = [s.keys[i % len(s.keys)] for i in range(size)]
    t0 = time.perf_counter()
    await s.pipeline(keys)
    return size / (time.perf_counter() - t0)


async def mget_rate(s: Subject, calls: int, count: int) -> float:
    keys = s.keys[:count]
    t0 = time.perf_counter()
    for _ in range(calls):
        await s.mget(keys)
    return calls / (time.perf_counter() - t0)


# ---- the clients ---------------------------------------------------------------------


async def _redis_py_pipeline(client: Any, keys: list[str], **kw: Any) -> None:
    pipe = client.pipeline(**kw)
    for k in keys:
        pipe.set(k, "v")
    await pipe.execute()


async def ours(host: str, port: int, keys: list[str]) -> Subject:
    c = ClusterClient(host, port)
    await c.initialize()
    return Subject(OURS, c.get, c.set, keys, lambda ks: _redis_py_pipeline(c, ks), c.mget_nonatomic, c.aclose)


async def redis_cluster(host: str, port: int, keys: list[str]) -> Subject:
    c = RedisCluster(startup_nodes=[ClusterNode(host, port)], max_connections=2**16)
    await c.initialize()
    return Subject(RC, c.get, c.set, keys, lambda ks: _redis_py_pipeline(c, ks), c.mget_nonatomic, c.aclose)


async def floor(host: str, port: int, keys: list[str]) -> Subject:
    c = aredis.Redis(host=host, port=port, max_connections=2**16)
    await c.ping()
    tag = next(t for t in (f"{{t{i}}}" for i in range(10**6)) if key_slot(t[1:-1].encode()) in _slots_of(keys))

    async def mget(ks: list[str]) -> Any:  # one MGET of as many keys in one slot: the floor
        return await c.mget([f"{tag}:{k}" for k in ks])

    return Subject(FLOOR, c.get, c.set, keys, lambda ks: _redis_py_pipeline(c, ks, transaction=False), mget,
                   c.aclose)


def _slots_of(keys: list[str]) -> set[int]:
    return {key_slot(k.encode()) for k in keys}


async def glide(host: str, port: int, keys: list[str]) -> Subject | None:
    try:
        from glide import ClusterBatch, GlideClusterClient, GlideClusterClientConfiguration, NodeAddress
    except ImportError:
        return None
    c = await GlideClusterClient.create(GlideClusterClientConfiguration([NodeAddress(host, port)]))

    async def batch(ks: list[str]) -> None:
        b = ClusterBatch(is_atomic=False)
        for k in ks:
            b.set(k, "v")
        await c.exec(b, raise_on_error=True)

    return Subject(GLIDE, c.get, c.set, keys, batch, c.mget, c.close)


async def coredis_client(host: str, port: int, keys: list[str]) -> Subject | None:
    try:
        import coredis
    except ImportError:
        return None
    c: Any = coredis.RedisCluster(host, port, max_connections=2**10)
    await c.__aenter__()

    async def batch(ks: list[str]) -> None:
        async with c.pipeline(transaction=False) as pipe:
            for k in ks:
                pipe.set(k, "v")

    return Subject(COREDIS, c.get, c.set, keys, batch, c.mget, lambda: c.__aexit__(None, None, None))


# ---- client-side caching: one task ---------------------------------------------------

UNCACHED, HITS, MISSES, FRESH = "GET uncached", "GET cached hits", "GET cached misses", "GET uncached, fresh keys"


async def get_rate(get: Callable[[str], Awaitable[Any]], keys: list[str]) -> float:
    t0 = time.perf_counter()
    for k in keys:
        await get(k)
    return len(keys) / (time.perf_counter() - t0)


async def cache_leg(host: str, port: int, ops: int, rounds: int, best: Best) -> None:
    """The four GET measurements, each round in turn on a cached and an uncached client."""
    plain = ClusterClient(host, port)
    cached = ClusterClient(host, port, cache_config=CacheConfig(max_size=10**6))
    await plain.initialize()
    await cached.initialize()
    hot = [f"bench:{i}" for i in range(256)]
    try:
        for k in hot:
            await plain.set(k, "v")
        await get_rate(cached.get, hot * 4)  # warm: links up, connections tracked, entries stored
        await get_rate(plain.get, hot * 4)
        for _ in range(rounds):
            fresh = [f"bench:miss:{time.monotonic_ns()}:{i}" for i in range(ops)]
            other = [f"bench:miss:{time.monotonic_ns()}:{i}" for i in range(ops)]
            for scenario, rate in ((UNCACHED, get_rate(plain.get, (hot * (ops // len(hot) + 1))[:ops])),
                                   (HITS, get_rate(cached.get, (hot * (ops * 10 // len(hot) + 1))[:ops * 10])),
                                   (MISSES, get_rate(cached.get, fresh)), (FRESH, get_rate(plain.get, other))):
                best[(scenario, OURS)] = max(best.get((scenario, OURS), 0.0), await rate)
            cached.cache_flush()
    finally:
        await plain.aclose()
        await cached.aclose()


def cache_report(best: Best) -> None:
    print(f"\n==== client-side caching, {OURS}, one task")
    for sc in (UNCACHED, HITS, MISSES, FRESH):
        print(f"  {sc:<26} {best[(sc, OURS)]:>12,.0f} ops/s")
    hits = best[(HITS, OURS)] / best[(UNCACHED, OURS)]
    miss = best[(FRESH, OURS)] / best[(MISSES, OURS)] - 1
    print(f"  hits over uncached: {hits:.1f}x (target >= 10x: {'met' if hits >= 10 else 'MISSED'})")
    print(f"  a miss costs {miss * 100:+.1f}% over no cache (target < 5%: {'met' if miss < 0.05 else 'MISSED'})")


# ---- the run -------------------------------------------------------------------------


async def start(host: str, port: int, one_node: int) -> list[Subject]:
    """Every client, connected on the running loop (optional ones left out, said so)."""
    keys = [f"bench:{i}" for i in range(4096)]
    node_slots = set(LocalCluster.existing(f"{host}:{port}").slots_of(one_node))
    node_keys = [k for k in keys if key_slot(k.encode()) in node_slots]
    subjects: list[Subject] = [await ours(host, port, keys), await redis_cluster(host, port, keys),
                               await floor(host, one_node, node_keys)]
    for make in (glide, coredis_client):
        try:
            s = await make(host, port, keys)
        except Exception as e:  # an optional client that fails to start is left out, said so
            print(f"skipped {make.__name__}: {e!r}")
            continue
        if s is not None:
            subjects.append(s)
    return subjects


async def measure(best: Best, scenario: str, subjects: list[Subject],
                  work: Callable[[Subject], Awaitable[float]]) -> None:
    """Run `work` for each client in turn, keeping each one's best rate."""
    for s in subjects:
        try:
            rate = await work(s)
        except Exception as e:  # one client failing a scenario leaves its cell empty
            print(f"{s.name} failed {scenario}: {e!r}")
            continue
        best[(scenario, s.name)] = max(best.get((scenario, s.name), 0.0), rate)


Work = list[tuple[str, Callable[[Subject], Awaitable[float]]]]  # (scenario, one client's run)


async def leg(host: str, port: int, one_node: int, best: Best, work: Work, rounds: int) -> list[str]:
    """Every client started on the running loop, warmed, run through `work` `rounds` times,
    closed; returns the clients' names."""
    subjects = await start(host, port, one_node)
    warm: Work = [("warm", lambda s: tasks_rate(s, 16, 2000)), ("warm", lambda s: pipeline_rate(s, 1000)),
                  ("warm", lambda s: mget_rate(s, 10, 100))]  # connections opened, callbacks cached
    try:
        for scenario, each in warm + work * rounds:
            await measure(best, scenario, subjects, each)
    finally:
        for s in subjects:
            await s.close()
    return [s.name for s in subjects]


def bench(host: str, port: int, one_node: int, ops: int, counts: list[int], rounds: int,
          loops: dict[str, Callable[[], asyncio.AbstractEventLoop]], cache: bool, others: bool) -> None:
    if cache:
        for name, factory in loops.items():
            cached: Best = {}
            with asyncio.Runner(loop_factory=factory) as runner:
                runner.run(cache_leg(host, port, max(1000, ops // 4), rounds, cached))
            print(f"\non {name}'s event loop:", end="")
            cache_report(cached)
    if not others:
        return
    best: dict[str, Best] = {name: {} for name in loops}
    names: dict[str, list[str]] = {}
    scenarios = [f"{n} tasks" for n in counts] + [PIPELINE, MGET]
    work: Work = [(f"{n} tasks", lambda s, n=n: tasks_rate(s, n, ops if n > 1 else ops // 4)) for n in counts]
    work += [(PIPELINE, lambda s: pipeline_rate(s, 10_000)), (MGET, lambda s: mget_rate(s, 200, 100))]
    for name, factory in loops.items():
        with asyncio.Runner(loop_factory=factory) as runner:
            names[name] = runner.run(leg(host, port, one_node, best[name], work, rounds))
    for name in loops:
        print(f"\n==== on {name}'s event loop")
        report(scenarios, names[name], best[name])
    if len(loops) > 1:
        side_by_side(scenarios, list(loops), best)


def side_by_side(scenarios: list[str], loops: list[str], best: dict[str, Best]) -> None:
    """clusterpool.asyncio on each loop, and its ratio over glide on the same loop."""
    print(f"\n==== {OURS} on each loop (ratio over {GLIDE} on the same loop)")
    print(f"{'':<20}" + "".join(f"{name:>28}" for name in loops))
    for sc in scenarios:
        cells = []
        for name in loops:
            b = best[name]
            rate = f"{b[(sc, OURS)]:,.0f} {UNITS.get(sc, 'ops/s')}" if (sc, OURS) in b else "-"
            ratio = f"({b[(sc, OURS)] / b[(sc, GLIDE)]:.2f}x)" if (sc, OURS) in b and (sc, GLIDE) in b else ""
            cells.append(f"{rate + ' ' + ratio:>28}")
        print(f"{sc:<20}" + "".join(cells))


def report(scenarios: list[str], names: list[str], best: Best) -> None:
    load = os.getloadavg()[0]
    print(f"best of the rounds; {os.cpu_count()} cores, load average {load:.1f} at the end (other work shares them)")
    print(f"{'':<20}" + "".join(f"{n:>28}" for n in names))
    for sc in scenarios:
        unit = UNITS.get(sc, "ops/s")
        cells = [f"{best[(sc, n)]:>21,.0f} {unit:<6}" if (sc, n) in best else f"{'-':>28}" for n in names]
        print(f"{sc:<20}" + "".join(cells))
    others = names[1:]
    print(f"\nratios, {OURS} over each")
    print(f"{'':<20}" + "".join(f"{n:>28}" for n in others))
    for sc in scenarios:
        cells = []
        for n in others:
            if (sc, OURS) in best and (sc, n) in best:
                cells.append(f"{best[(sc, OURS)] / best[(sc, n)]:>27.2f}x")
            else:
                cells.append(f"{'-':>28}")
        print(f"{sc:<20}" + "".join(cells))
    print("\nissue 16's targets")
    targets = [("16 tasks", GLIDE, 1.2), ("16 tasks", RC, 2.0), ("256 tasks", GLIDE, 1.2), ("256 tasks", RC, 2.0),
               ("1 tasks", FLOOR, 1.0), (PIPELINE, GLIDE, 1.0), (MGET, GLIDE, 1.25)]
    for sc, other, want in targets:
        if (sc, OURS) not in best or (sc, other) not in best:
            print(f"  {sc:<20} >= {want:.2f}x {other:<28} not measured")
            continue
        got = best[(sc, OURS)] / best[(sc, other)]
        print(f"  {sc:<20} >= {want:.2f}x {other:<28} {got:5.2f}x  {'met' if got >= want else 'MISSED'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--cluster", help="host:port of an existing cluster (default: start a private 3x1 one)")
    ap.add_argument("--ops", type=int, default=20000, help="commands per task-count measurement (a quarter for 1 task)")
    ap.add_argument("--tasks", default="1,16,256")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--loops", default="asyncio,uvloop", help="event loops to run on, in turn (asyncio, uvloop)")
    ap.add_argument("--cache", action="store_true", help="also the client-side caching scenario")
    ap.add_argument("--only-cache", action="store_true", help="only the client-side caching scenario")
    args = ap.parse_args()
    counts = [int(x) for x in args.tasks.split(",")]
    local = None
    if args.cluster:
        host, _, p = args.cluster.rpartition(":")
        port = int(p)
    else:
        local = LocalCluster(primaries=3, replicas=1).start(timeout=60)
        host, port = "127.0.0.1", local.ports[0]
    try:
        existing = LocalCluster.existing(f"{host}:{port}")
        one_node = existing.primaries()[0]
        bench(host, port, one_node, args.ops, counts, args.rounds, loop_factories(args.loops.split(",")),
              args.cache or args.only_cache, not args.only_cache)
    finally:
        if local is not None:
            local.stop()


if __name__ == "__main__":
    main()
