"""Where commands land: each node's INFO commandstats, read before and after (live tests)."""

from __future__ import annotations

import uuid

import redis

import clusterpool


def calls(cluster, cmd):
    """{port: number of `cmd` calls} for every running node (a paused one cannot answer)."""
    out = {}
    for port in cluster.primaries() + cluster.replicas():
        if cluster.is_paused(port):
            continue
        with redis.Redis(host=cluster.host, port=port, socket_timeout=5) as r:
            out[port] = int(r.info("commandstats").get(f"cmdstat_{cmd}", {}).get("calls", 0))
    return out


class Landing:
    """Counts how many `cmd` calls each node served between enter and exit."""

    def __init__(self, cluster, cmd):
        self.cluster, self.cmd = cluster, cmd

    def __enter__(self):
        self.before = calls(self.cluster, self.cmd)
        return self

    def __exit__(self, *exc):
        after = calls(self.cluster, self.cmd)
        self.delta = {p: after[p] - self.before.get(p, 0) for p in after}

    def on(self, ports):
        return {p: self.delta[p] for p in ports}


def keys_by_shard(cluster, per_shard, prefix=None):
    """{primary port: [keys]} with `per_shard` keys owned by each primary."""
    prefix = prefix or uuid.uuid4().hex[:8]
    slots = {p: set(cluster.slots_of(p)) for p in cluster.primaries()}
    out = {p: [] for p in slots}
    i = 0
    while any(len(v) < per_shard for v in out.values()):
        k = f"{prefix}:{i}"
        s = clusterpool.key_slot(k.encode())
        for p, owned in slots.items():
            if s in owned and len(out[p]) < per_shard:
                out[p].append(k)
        i += 1
    return out
