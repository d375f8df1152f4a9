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

from clusterpool.asyncio import ClusterClient
from clusterpool.slots import key_slot
from clusterpool.testing import LocalCluster

OURS, RC, FLOOR, GLIDE, COREDIS = (
    "clusterpool.asyncio", "redis.asyncio RedisCluster", "redis.asyncio.Redis 1 node", "glide asyncio", "coredis",
)
PIPELINE, MGET = "pipeline 10k SET", "mget_nonatomic 100"
UNITS = {PIPELINE: "cmds/s", MGET: "calls/s"}


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


# ---- the run -------------------------------------------------------------------------


async def bench(host: str, port: int, one_node: int, ops: int, counts: list[int], rounds: int) -> None:
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
    names = [s.name for s in subjects]
    best: dict[tuple[str, str], float] = {}

    async def measure(scenario: str, s: Subject, work: Callable[[], Awaitable[float]]) -> None:
        try:
            rate = await work()
        except Exception as e:  # one client failing a scenario leaves its cell empty
            print(f"{s.name} failed {scenario}: {e!r}")
            return
        best[(scenario, s.name)] = max(best.get((scenario, s.name), 0.0), rate)

    scenarios = [f"{n} tasks" for n in counts] + [PIPELINE, MGET]
    try:
        for s in subjects:  # warm: connections opened, callbacks cached
            await tasks_rate(s, 16, 2000)
            await measure("warm", s, lambda s=s: pipeline_rate(s, 1000))
            await measure("warm", s, lambda s=s: mget_rate(s, 10, 100))
        for _ in range(rounds):
            for n in counts:
                for s in subjects:
                    await measure(f"{n} tasks", s, lambda s=s, n=n: tasks_rate(s, n, ops if n > 1 else ops // 4))
            for s in subjects:
                await measure(PIPELINE, s, lambda s=s: pipeline_rate(s, 10_000))
            for s in subjects:
                await measure(MGET, s, lambda s=s: mget_rate(s, 200, 100))
    finally:
        for s in subjects:
            await s.close()
    report(scenarios, names, best)


def report(scenarios: list[str], names: list[str], best: dict[tuple[str, str], float]) -> None:
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
        asyncio.run(bench(host, port, one_node, args.ops, counts, args.rounds))
    finally:
        if local is not None:
            local.stop()


if __name__ == "__main__":
    main()
