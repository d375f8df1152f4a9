"""Reply callbacks of both clients: redis-py's own, with RedisCluster's cluster parsers on top.

redis.Redis parses each reply with a callback per command; RedisCluster adds
its own for CLUSTER SLOTS / SHARDS / MYSHARDID, applied after redis-py's
(RedisCluster's order). Both clients install the same composition, built here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ._redispy import cluster_reply_callbacks

__all__ = ["ResponseCallback", "cluster_callbacks", "compose", "composed_callbacks"]

ResponseCallback = Callable[..., Any]


def compose(base: ResponseCallback | None, outer: ResponseCallback) -> ResponseCallback:
    """`outer` applied to what `base` made of the reply: RedisCluster's order for cluster callbacks."""
    if base is None:
        return outer

    def both(response: Any, **options: Any) -> Any:
        return outer(base(response, **options), **options)

    return both


def composed_callbacks(base: Mapping[str, ResponseCallback | None], protocol: Any,
                       legacy_responses: bool) -> dict[str, ResponseCallback]:
    """RedisCluster's cluster callbacks applied after redis-py's own (`base`), per command."""
    return {command: compose(base.get(command), cb)
            for command, cb in cluster_callbacks(protocol, legacy_responses).items()}


def cluster_callbacks(protocol: Any, legacy_responses: bool) -> dict[str, ResponseCallback]:
    """RedisCluster's own reply parsers for CLUSTER SLOTS / SHARDS / MYSHARDID, per protocol."""
    return cluster_reply_callbacks(protocol, legacy_responses)
