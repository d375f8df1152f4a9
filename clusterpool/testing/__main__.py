"""`python -m clusterpool.testing ...`: the local cluster harness's CLI."""

from __future__ import annotations

import sys

import redis

from .cluster import main

try:
    sys.exit(main())
except (RuntimeError, TimeoutError, ValueError, redis.RedisError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
