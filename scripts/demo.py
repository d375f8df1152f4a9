"""Demo: start a local 3x2 cluster, connect, show the topology and where keys and reads go.

Run with `.venv/bin/python scripts/demo.py` (README's first command does the set-up).
"""

from __future__ import annotations


from clusterpool import ClusterClient
from clusterpool.testing import LocalCluster


def main() -> int:
    with LocalCluster(primaries=3, replicas=2) as cluster:
        print(f"local cluster up at {cluster.url} ({len(cluster.ports)} nodes)\n")
        with ClusterClient.from_url(cluster.url, decode_responses=True) as client:
            client.connect()
            topo = client.topology()
            print(f"topology v{topo.version}: {topo.covered_slots} slots covered")
            for shard in topo.shards:
                ranges = ", ".join(f"{a}-{b}" for a, b in shard.slots)
                reps = ", ".join(r.name for r in shard.replicas)
                print(f"  slots {ranges:<14} primary {shard.primary.name if shard.primary else '-':<16} replicas {reps}")
            print("\nwhere keys go (writes -> primary, client.reader reads -> replicas round-robin):")
            for key in ("user:1", "user:2", "cart:{42}:items", "cart:{42}:total"):
                client.set(key, "v")
                write = client.node_for(key).name
                reads = [str(client.reader.node_for(key, read=True).port) for _ in range(4)]
                print(f"  {key:<17} slot {client.slot(key):>5}  write {write}  reads {', '.join(reads)}")
            print("\nreader.get('user:1') ->", client.reader.get("user:1"),
                  "(a replica may lag its primary: replication is asynchronous)")
            print("writer.get('user:1') ->", client.writer.get("user:1"), "(read-your-writes)")
            try:
                client.reader.set("user:1", "x")
            except Exception as e:
                print(f"reader.set refused before sending: {type(e).__name__}: {e}")
            pipe = client.pipeline()
            for i in range(1000):
                pipe.incr(f"counter:{i}")
            print(f"pipeline of 1000 INCRs over all slots -> {sum(pipe.execute())}")
            print("mget_nonatomic ->", client.mget_nonatomic(["user:1", "user:2", "missing"]))
            s = client.stats()
            print(f"\nconnections held: {s.total_connections} ({s.in_use} in use, {s.idle} idle)")
    print("cluster stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
