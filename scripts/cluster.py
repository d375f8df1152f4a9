#!/usr/bin/env python3
"""The local cluster harness's CLI (kept for `python scripts/cluster.py ...`; the harness itself
is `clusterpool.testing`, also runnable as `python -m clusterpool.testing`).

    python scripts/cluster.py start --base-port 7000 --primaries 3 --replicas 1 --dir DIR
    python scripts/cluster.py status --dir DIR
    python scripts/cluster.py stop --dir DIR
"""

from __future__ import annotations

import sys

import redis

from clusterpool.testing.cluster import *  # noqa: F403  (scripts that `import cluster` keep working)
from clusterpool.testing.cluster import main

if __name__ == "__main__":
    try:
        sys.exit(main())
    except (RuntimeError, TimeoutError, ValueError, redis.RedisError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
