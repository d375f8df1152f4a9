"""Benchmark: N tasks sharing one asyncio client, alternating SET/GET on keys over all slots.

    .venv/bin/python scripts/bench_async.py                  # starts a private 3x1 cluster
    .venv/bin/python scripts/bench_async.py --cluster 127.0.0.1:7000 --ops 20000

Clients, in one run with alternating rounds (so all see the same machine load):
clusterpool.asyncio.ClusterClient, redis.asyncio.cluster.RedisCluster, and
redis.asyncio.Redis on one node (keys of that node only: the floor). Prints ops/s per
task count (best of the rounds) and the ratios of clusterpool to the other two.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aredis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from clusterpool.asyncio import ClusterClient
from clusterpool.slots import key_slot
from clusterpool.testing import LocalCluster

Execute = Callable[..., Awaitable[Any]]


async def run(execute: Execute, tasks: int, ops: int, keys: list[str]) -> float:
    """ops/s of `tasks` workers sharing `execute`, each alternating SET and GET."""
    per_task = max(2, ops // tasks)

    async def worker(w: int) -> None:
        for i in range(per_task):
            k = keys[(w * 7919 + i) % len(keys)]
            if i % 2:
                await execute("GET", k)
            else:
                await execute("SET", k, "v")

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(tasks)))
    return per_task * tasks / (time.perf_counter() - t0)


async def bench(host: str, port: int, one_node: int, ops: int, counts: list[int], rounds: int) -> None:
    keys = [f"bench:{i}" for i in range(4096)]
    node_slots = set(LocalCluster.existing(f"{host}:{port}").slots_of(one_node))
    node_keys = [k for k in keys if key_slot(k.encode()) in node_slots]
    ours = ClusterClient(host, port)
    theirs = RedisCluster(startup_nodes=[ClusterNode(host, port)], max_connections=2**16)
    floor = aredis.Redis(host=host, port=one_node, max_connections=2**16)
    await ours.initialize()
    await theirs.initialize()
    clients: dict[str, tuple[Execute, list[str]]] = {
        "clusterpool.asyncio": (ours.execute_command, keys),
        "redis.asyncio RedisCluster": (theirs.execute_command, keys),
        "redis.asyncio.Redis (1 node)": (floor.execute_command, node_keys),
    }
    best: dict[tuple[str, int], float] = {}
    try:
        for execute, ks in clients.values():  # warm: connections opened, callbacks cached
            await run(execute, 16, 2000, ks)
        for _ in range(rounds):
            for n in counts:
                for name, (execute, ks) in clients.items():
                    rate = await run(execute, n, ops if n > 1 else ops // 4, ks)
                    best[(name, n)] = max(best.get((name, n), 0.0), rate)
    finally:
        await ours.aclose()
        await theirs.aclose()
        await floor.aclose()
    print(f"{'tasks':>6}  " + "  ".join(f"{name:>28}" for name in clients) + "   ours/RC  ours/Redis")
    for n in counts:
        row = [best[(name, n)] for name in clients]
        print(f"{n:>6}  " + "  ".join(f"{r:>22,.0f} ops/s" for r in row)
              + f"   {row[0] / row[1]:>6.2f}x  {row[0] / row[2]:>8.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cluster", help="host:port of an existing cluster (default: start a private 3x1 one)")
    ap.add_argument("--ops", type=int, default=20000, help="commands per measurement (a quarter for 1 task)")
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
