"""Views of a client: the same connections and map under another read strategy.

`client.reader` sends reads to replicas and refuses writes, `client.writer`
pins everything to primaries, `client.with_read_from(...)` takes any
strategy. A view is a shallow copy of the client with three attributes
changed, so it costs nothing and shares every pool, task and the map; the
sync and the asyncio client both take this mixin, so the rules are written
once.
"""

from __future__ import annotations

from typing import Any, Self

from .cachestore import REPLICA_READS
from .readfrom import PRIMARY as READ_PRIMARY
from .readfrom import ReadStrategy, StrategyLike, make_strategy, reader_strategy

__all__ = ["ViewsMixin"]


class ViewsMixin:
    """reader / writer / with_read_from over a client whose state lives in its `__dict__`."""

    _strategy: ReadStrategy
    _to_primary: bool
    _cache_ns: str | None  # cache_key's prefix: None for views reading primaries only
    _reader_strategy: ReadStrategy
    refuses_writes: bool
    _client_az: str | None

    def _init_views(self, read_from: StrategyLike, client_az: str | None = None) -> None:
        """The client's own strategy (`read_from=`); the reader's when that one is the primary
        (in `client_az`'s zone first, when the client has one)."""
        self._client_az = client_az
        self._use_strategy(make_strategy(read_from, client_az))
        # one replica strategy for every `reader` of this client: a new one per view
        # would restart the round-robin at the first replica on every call
        self._reader_strategy = reader_strategy(client_az)
        self.refuses_writes = False

    def _view(self, strategy: ReadStrategy, refuse_writes: bool) -> Self:
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__)
        view.__dict__.pop("_reader_view", None)
        view._use_strategy(strategy)
        view.refuses_writes = refuse_writes
        self._bind_view(view)
        return view

    def _use_strategy(self, strategy: ReadStrategy) -> None:
        self._strategy = strategy
        self._to_primary = getattr(strategy, "name", "") == READ_PRIMARY
        self._cache_ns = None if self._to_primary else REPLICA_READS

    def _bind_view(self, view: Any) -> None:
        """Re-bind what the client bound to itself (a traced command path) to the view."""

    def _reader_view_is_current(self, view: Any) -> bool:
        """Whether a cached reader still shares this client's state (not one from before a fork)."""
        return True

    @property
    def reader(self) -> Self:
        """Reads go to replicas round-robin (or this client's non-primary strategy); writes are refused."""
        view = self.__dict__.get("_reader_view")
        if view is None or not self._reader_view_is_current(view):
            strategy = self._strategy if not self._to_primary else self._reader_strategy
            view = self.__dict__["_reader_view"] = self._view(strategy, True)
        return view

    @property
    def writer(self) -> Self:
        """Everything goes to primaries: reads see the writes just made."""
        return self._view(make_strategy(READ_PRIMARY), False)

    def with_read_from(self, read_from: StrategyLike, refuse_writes: bool = False) -> Self:
        """A view with another read strategy, sharing connections and map."""
        return self._view(make_strategy(read_from, self._client_az), refuse_writes)

    @property
    def read_from(self) -> str:
        """The name of this client's (or view's) read strategy."""
        return str(getattr(self._strategy, "name", type(self._strategy).__name__))
