"""A real local Redis Cluster for tests and demos: `from clusterpool.testing import LocalCluster`.

Needs Debian's (or any) `redis-server` 7.0+ on PATH, or `REDIS_SERVER=/path` (or, with
`server="valkey"` / `CLUSTERPOOL_TEST_SERVER=valkey`, `valkey-server` 8.0+); binds to loopback only. See `clusterpool.testing.cluster` for what it can do.
"""

from .cluster import NUM_SLOTS, LocalCluster, find_redis_server, find_valkey_server, free_port_run

__all__ = ["NUM_SLOTS", "LocalCluster", "find_redis_server", "find_valkey_server", "free_port_run"]
