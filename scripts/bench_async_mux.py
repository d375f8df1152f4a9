"""Micro-benchmark: N tasks doing alternating SET/GET on one node, through clusterpool's
asyncio shared connections vs redis.asyncio.Redis (its own pool) on the same node.

    .venv/bin/python scripts/bench_async_mux.py                 # starts a private 3x1 cluster
    .venv/bin/python scripts/bench_async_mux.py --node 127.0.0.1:7000 --ops 20000

Prints ops/s per task count and the ratio mux / redis.asyncio.Redis (one run, same node,
loopback; the runs alternate so both see the same machine load).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

import redis.asyncio as aredis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cluster import LocalCluster  # noqa: E402  (this directory, put on sys.path above)

from clusterpool.asyncio import NodeSettings  # noqa: E402
from clusterpool.asyncio.connections import NodeConnections  # noqa: E402
from clusterpool.slots import key_slot  # noqa: E402


def keys_on(cluster: LocalCluster, port: int, n: int) -> list[str]:
    slots = set(cluster.slots_of(port))
    out: list[str] = []
    i = 0
    while len(out) < n:
        k = f"bench:{i}"
        if key_slot(k.encode()) in slots:
            out.append(k)
        i += 1
    return out


async def run(execute, tasks: int, ops: int, keys: list[str]) -> float:
    per_task = max(1, ops // tasks)

    async def worker(w: int) -> None:
        for i in range(per_task):
            k = keys[(w * per_task + i) % len(keys)]
            if i % 2:
                await execute("GET", k)
            else:
                await execute("SET", k, "v")

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(tasks)))
    return per_task * tasks / (time.perf_counter() - t0)


async def bench(host: str, port: int, keys: list[str], ops: int, counts: list[int], rounds: int) -> None:
    node = NodeConnections(NodeSettings.make(host, port), max_shared=2)
    plain = aredis.Redis(host=host, port=port, max_connections=1024)
    await node.execute("PING")
    await plain.ping()
    print(f"node {host}:{port}, {ops} ops per run, best of {rounds}")
    print(f"{'tasks':>6} {'mux ops/s':>12} {'redis.asyncio ops/s':>20} {'ratio':>7}")
    for n in counts:
        best_mux = best_plain = 0.0
        for _ in range(rounds):
            best_mux = max(best_mux, await run(node.execute, n, ops, keys))
            best_plain = max(best_plain, await run(plain.execute_command, n, ops, keys))
        print(f"{n:>6} {best_mux:>12.0f} {best_plain:>20.0f} {best_mux / best_plain:>7.2f}")
    await node.aclose()
    await plain.aclose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--node", help="host:port of a running cluster node (default: start a private cluster)")
    ap.add_argument("--ops", type=int, default=20000)
    ap.add_argument("--tasks", default="1,16,256")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    counts = [int(x) for x in args.tasks.split(",")]
    cluster = LocalCluster.existing(args.node) if args.node else LocalCluster(primaries=3, replicas=1).start()
    try:
        port = cluster.primaries()[0]
        asyncio.run(bench(cluster.host, port, keys_on(cluster, port, 1000), args.ops, counts, args.rounds))
    finally:
        if not args.node:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
