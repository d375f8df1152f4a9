#!/usr/bin/env python3
"""Hedged reads, measured: read latency and extra reads with one replica of each shard late.

Starts its own cluster (2 primaries, 2 replicas each), puts the first replica of each shard
behind a DelayProxy (tests/delay_proxy.py) and runs one thread of GETs in these settings
(`client.reader`: replicas round-robin, unless said otherwise; hedge=HedgePolicy(): the
defaults, budget 5%):

  healthy               no delay, no hedging (the baseline: p50/p99, ops/s)
  healthy+hedge         no delay, hedging (the throughput hedging costs)
  late                  one replica per shard 20 ms late on every request, no hedging
  late+hedge            the same with hedging: half the reads are late, the budget rescues 5%
  late+hedge(budget=1)  every late read hedged: what hedging does without a budget
  late,nearest          read_from="nearest" once its PING latencies show the late replica
  late+hedge,nearest    the same with hedging
  tail                  one replica per shard 20 ms late on 1 request in 25, no hedging
  tail+hedge            the same with hedging
  tail+hedge(floor=1ms)  the same, hedging after 1 ms at the earliest (the default: 0.5 ms)
  async healthy(+hedge) the asyncio client, 64 tasks of GETs through its reader, no delay,
                        without and with hedging (the throughput hedging costs there)

    .venv/bin/python scripts/bench_hedge.py [--quick] [--json PATH]

Also `scripts/bench.py --only hedge`. Bounded: well under 60 s.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for p in (HERE, ROOT, os.path.join(ROOT, "tests")):
    if p not in sys.path:
        sys.path.insert(0, p)

from clusterpool import ClusterClient, HedgePolicy  # noqa: E402
from clusterpool.testing import LocalCluster  # noqa: E402
from delay_proxy import DelayProxy  # noqa: E402

LATE = 0.020
TAIL_EVERY = 25  # in the tail settings, 1 request in this many is late
VALUE = b"x" * 32


class TailProxy(DelayProxy):
    """A DelayProxy whose delay applies to one request in `every` (when `late`), else none."""

    def __init__(self, target: tuple[str, int], every: int) -> None:
        self.every, self.late, self._n = every, 0.0, itertools.count()
        super().__init__(target, 0.0)

    @property  # type: ignore[override]
    def delay(self) -> float:  # read by the proxy's pump for each chunk sent to the server
        return self.late if next(self._n) % self.every == 0 else 0.0

    @delay.setter
    def delay(self, value: float) -> None:
        pass  # the base class sets it; `late` is what counts


def _pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p * len(s)))]


class Setting:
    """One client over the cluster with the late replicas behind their proxies."""

    def __init__(self, cluster: LocalCluster, proxies: dict[int, DelayProxy], **options: Any) -> None:
        host = cluster.host

        def through_proxy(h: str, p: int) -> tuple[str, int]:
            proxy = proxies.get(p) if h == host else None
            return (h, proxy.port) if proxy is not None else (h, p)

        self.client = ClusterClient(startup_nodes=cluster.startup_nodes, address_map=through_proxy,
                                    socket_timeout=10.0, **options)

    def run(self, keys: list[str], n: int, reader: bool = True) -> dict[str, Any]:
        """`n` GETs, one thread: ops/s, p50/p99 (ms), extra reads (hedges sent per hedgeable read)."""
        c = self.client.reader if reader else self.client
        before = self.client.stats().hedges
        lat = []
        nk = len(keys)
        t0 = time.perf_counter()
        for i in range(n):
            s = time.perf_counter()
            c.get(keys[i % nk])
            lat.append(time.perf_counter() - s)
        elapsed = time.perf_counter() - t0
        h = self.client.stats().hedges
        reads, sent = h.reads - before.reads, h.sent - before.sent
        return {"ops/s": n / elapsed, "p50_ms": _pct(lat, 0.50) * 1000, "p99_ms": _pct(lat, 0.99) * 1000,
                "extra_%": 100.0 * sent / n, "hedged_reads": reads, "hedges_sent": sent,
                "hedges_won": h.won - before.won, "suppressed": h.suppressed - before.suppressed}

    def close(self) -> None:
        self.client.close()


def run(quick: bool = False, log: Any = print) -> dict[str, dict[str, Any]]:
    """All settings; {setting: numbers} (also logged as they come)."""
    n_fast, n_late, n_tail, repeat = (3000, 300, 1000, 2) if quick else (15000, 600, 4000, 3)
    out: dict[str, dict[str, Any]] = {}
    log("hedge: starting a cluster (2 primaries, 2 replicas each)...")
    cluster = LocalCluster(primaries=2, replicas=2).start()
    proxies: dict[int, DelayProxy] = {}
    try:
        late_ports = [cluster.replicas_of(p)[0] for p in cluster.primaries()]
        proxies = {p: DelayProxy((cluster.host, p), delay=0.0) for p in late_ports}
        keys = [f"hedge:{i}" for i in range(500)]
        with ClusterClient(startup_nodes=cluster.startup_nodes) as w:
            for k in keys:
                w.set(k, VALUE)
        time.sleep(0.5)  # replication catches up (a miss would still be a valid read)

        # healthy: with and without hedging, alternated so machine noise hits both alike
        plain, hedged = Setting(cluster, proxies), Setting(cluster, proxies, hedge=HedgePolicy())
        try:
            for s in (plain, hedged):
                s.run(keys, 2000)  # warm: connections open, hedge delays learned
            runs: dict[str, list[dict[str, Any]]] = {"healthy": [], "healthy+hedge": []}
            for _ in range(repeat):
                runs["healthy"].append(plain.run(keys, n_fast))
                runs["healthy+hedge"].append(hedged.run(keys, n_fast))
            for name, rs in runs.items():
                out[name] = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
                log(f"  {name}: {_line(out[name])}")
            out["healthy+hedge"]["throughput_cost_%"] = 100.0 * statistics.median(
                1 - h["ops/s"] / p["ops/s"] for p, h in zip(runs["healthy"], runs["healthy+hedge"]))
            log(f"  hedging costs {out['healthy+hedge']['throughput_cost_%']:.1f}% throughput on a healthy cluster")
        finally:
            plain.close()
            hedged.close()

        for name, r in _async_cost(cluster, keys, n_fast * 2, repeat).items():
            out[name] = r
            log(f"  {name}: {r['ops/s']:,.0f} ops/s" + (f", costs {r['throughput_cost_%']:.1f}% throughput, "
                                                         f"extra reads {r['extra_%']:.1f}%" if "extra_%" in r else ""))

        for proxy in proxies.values():
            proxy.delay = LATE
        late_settings: dict[str, dict[str, Any]] = {
            "late": {},
            "late+hedge": {"hedge": HedgePolicy()},
            "late+hedge(budget=1)": {"hedge": HedgePolicy(budget=1.0)},
            "late,nearest": {"read_from": "nearest", "health_interval": 0.1},
            "late+hedge,nearest": {"hedge": HedgePolicy(), "read_from": "nearest", "health_interval": 0.1},
        }
        for name, options in late_settings.items():
            out[name] = _measure(cluster, proxies, keys, n_late, **options)
            log(f"  {name}: {_line(out[name])}")
        for proxy in proxies.values():
            proxy.close()
        proxies = {p: TailProxy((cluster.host, p), TAIL_EVERY) for p in late_ports}
        for proxy in proxies.values():
            proxy.late = LATE  # type: ignore[attr-defined]
        tail_settings: dict[str, dict[str, Any]] = {
            "tail": {}, "tail+hedge": {"hedge": HedgePolicy()},
            "tail+hedge(floor=1ms)": {"hedge": HedgePolicy(floor=0.001)}}
        for name, options in tail_settings.items():
            out[name] = _measure(cluster, proxies, keys, n_tail, **options)
            log(f"  {name}: {_line(out[name])}")
        late_settings.update(tail_settings)
        base = out["healthy"]["p99_ms"]
        for name in late_settings:
            out[name]["p99/healthy_p99"] = out[name]["p99_ms"] / base
        return out
    finally:
        for proxy in proxies.values():
            proxy.close()
        cluster.stop()


def _async_cost(cluster: LocalCluster, keys: list[str], n: int, repeat: int) -> dict[str, dict[str, Any]]:
    """The asyncio client's reader, 64 tasks of GETs, without and with hedging (ops/s, alternated)."""
    import asyncio

    from clusterpool.asyncio import ClusterClient as AsyncClient

    async def one(client: Any, n: int) -> float:
        reader = client.reader

        async def task(i: int) -> None:
            for j in range(n // 64):
                await reader.get(keys[(i * 7919 + j) % len(keys)])

        t0 = time.perf_counter()
        await asyncio.gather(*(task(i) for i in range(64)))
        return (n // 64 * 64) / (time.perf_counter() - t0)

    async def main() -> dict[str, dict[str, Any]]:
        plain = AsyncClient(startup_nodes=cluster.startup_nodes)
        hedged = AsyncClient(startup_nodes=cluster.startup_nodes, hedge=HedgePolicy())
        try:
            for c in (plain, hedged):
                await one(c, 6400)
            runs: dict[str, list[float]] = {"async healthy": [], "async healthy+hedge": []}
            for _ in range(repeat):
                runs["async healthy"].append(await one(plain, n))
                runs["async healthy+hedge"].append(await one(hedged, n))
            h = hedged.stats().hedges
            out = {k: {"ops/s": statistics.median(v)} for k, v in runs.items()}
            out["async healthy+hedge"]["throughput_cost_%"] = 100.0 * statistics.median(
                1 - b / a for a, b in zip(runs["async healthy"], runs["async healthy+hedge"]))
            out["async healthy+hedge"]["extra_%"] = 100.0 * h.extra
            return out
        finally:
            await plain.aclose()
            await hedged.aclose()

    return asyncio.run(main())


def _measure(cluster: LocalCluster, proxies: dict[int, DelayProxy], keys: list[str], n: int,
             **options: Any) -> dict[str, Any]:
    """One setting on a new client: warmed (connections open, latencies and hedge delays
    learned), then `n` GETs through the reader (or the client, with read_from="nearest")."""
    s = Setting(cluster, proxies, **options)
    try:
        reader = "read_from" not in options
        s.run(keys, 200, reader=reader)
        if not reader:  # nearest: until its PING latencies show which replica is late
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and any(
                    n.latency_ms is None for n in s.client.topology().nodes):
                time.sleep(0.05)
            time.sleep(0.5)
        return s.run(keys, n, reader=reader)
    finally:
        s.close()


def _line(r: dict[str, Any]) -> str:
    return (f"{r['ops/s']:,.0f} ops/s, p50 {r['p50_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms, "
            f"extra reads {r['extra_%']:.1f}% (won {r['hedges_won']:.0f}, suppressed {r['suppressed']:.0f})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small counts (a smoke test)")
    ap.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    out = run(args.quick, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(f"{'setting':22} {'ops/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'p99/healthy':>11} {'extra %':>8}")
    for name, r in out.items():
        if "p50_ms" not in r:
            continue
        ratio = r.get("p99/healthy_p99")
        print(f"{name:22} {r['ops/s']:9,.0f} {r['p50_ms']:8.3f} {r['p99_ms']:8.3f} "
              f"{'' if ratio is None else f'{ratio:.2f}x':>11} {r['extra_%']:8.1f}")
    print(f"hedging's throughput cost, healthy cluster: {out['healthy+hedge']['throughput_cost_%']:.1f}% (sync, "
          f"1 thread), {out['async healthy+hedge']['throughput_cost_%']:.1f}% (asyncio, 64 tasks) "
          f"(total {time.monotonic() - t0:.1f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
