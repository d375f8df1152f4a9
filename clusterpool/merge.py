"""How replies from several nodes become one value (DBSIZE sums, KEYS concatenates...)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Merger = Callable[[Mapping[str, Any]], Any]


def _agg_sum(r: Mapping[str, Any]) -> Any:
    return sum(r.values())


def _all_succeeded(r: Mapping[str, Any]) -> Any:
    vals = list(r.values())
    if all(v is True for v in vals):
        return True
    return vals[0] if vals else None


def _one_succeeded(r: Mapping[str, Any]) -> Any:
    return next(iter(r.values()), None)


def _concat(r: Mapping[str, Any]) -> Any:
    out: list[Any] = []
    for v in r.values():
        out.extend(v or ())
    return out


def _logical(op: Callable[[Any], bool]) -> Merger:
    def merge(r: Mapping[str, Any]) -> Any:
        vals = list(r.values())
        if vals and isinstance(vals[0], list):
            return [op(col) for col in zip(*vals)]
        return op(vals)

    return merge


def _per_node(r: Mapping[str, Any]) -> Any:
    return dict(r)


MERGERS: dict[str, Merger] = {
    "agg_sum": _agg_sum,
    "agg_min": lambda r: min(r.values()),
    "agg_max": lambda r: max(r.values()),
    "all_succeeded": _all_succeeded,
    "one_succeeded": _one_succeeded,
    "agg_logical_and": _logical(all),
    "agg_logical_or": _logical(any),
    "concat": _concat,
    "per_node": _per_node,
    "special": _per_node,
}


def merge(policy: str | None, replies: Mapping[str, Any]) -> Any:
    """One value from {node name: parsed reply}; unknown policies give the dict itself."""
    if policy is None or policy not in MERGERS:
        if len(replies) == 1:
            return next(iter(replies.values()))
        return dict(replies)
    return MERGERS[policy](replies)
