"""The redirect and retry loop: how one command reaches the node that serves it.

How this works: `_run` sends a command to a node and reads the reply. MOVED
repoints the slot in the map at once (a full refresh follows in the
background) and retries on the new owner; ASK sends ASKING + the command to
the importing node once; TRYAGAIN, CLUSTERDOWN and LOADING back off. A broken
connection marks the node (its breaker may open), asks for a refresh and
retries on the slot's owner in the newest map, unless the command was sent,
may write, and the user did not opt in to retrying such commands. Waits are
cut short when a new map moves the slot. A mixin of ClusterClient.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from redis import exceptions as rx
from redis.client import EMPTY_RESPONSE, NEVER_DECODE
from redis.retry import Retry

from . import errors
from .commands import CommandInfo
from .connection import pack_many, pack_one
from .resp import command_name
from .topology import Node, Shard, Topology

if TYPE_CHECKING:
    from .core import Core
    from .tracing import CommandHook

T = TypeVar("T")


class RouterMixin:
    """`_run` and the waiting it does; ClusterClient supplies the routing policy (`_pick`)."""

    _core: Core
    retry: Retry
    max_redirections: int
    retry_unknown_outcome: bool
    retry_timeout: float | None
    response_callbacks: Any
    _callbacks: dict[Any, Any]
    _hook: CommandHook | None

    if TYPE_CHECKING:
        def _pick(self, topo: Topology, slot: int, readonly: bool) -> Node: ...

    def _wait_for_owner(self, slot: int) -> Shard:
        """The slot has no primary in our map (a primary failed and no replica was promoted yet,
        or the slot is unassigned): refresh and wait within the retry budget, then give up."""
        core = self._core

        def owner() -> Shard | None:
            t = core.topology
            shard = t.slot_table[slot] if t is not None else None
            return shard if shard is not None and shard.primary is not None else None

        core.refresher.refresh_now()
        first = time.monotonic()
        n = 0
        while self._may_retry(n + 1, first):
            n += 1
            found = owner()
            if found is not None:
                return found
            core.refresher.request()
            found = self._wait_for(owner, self._backoff(n))
            if found is not None:
                return found
        t = core.topology
        if t is not None and t.slot_table[slot] is not None:  # the shard is known, its primary failed
            raise errors.NodeUnavailableError(
                f"the primary serving slot {slot} failed and no replica was promoted within the retry "
                "budget; retry later, or give ClusterClient a larger retry= for long failovers"
            )
        raise errors.SlotNotCoveredError(
            f"slot {slot} is not served by any primary in the cluster's map "
            "(cluster not fully covered, or its primary failed and no replica took over in time)"
        )

    def _wait_for(self, ready: Callable[[], T | None], seconds: float) -> T | None:
        """Up to `seconds` for `ready()` to give a value, checked again whenever a new map arrives."""
        core = self._core
        deadline = time.monotonic() + seconds
        while True:
            got = ready()
            if got is not None:
                return got
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            t = core.topology
            core.wait_for_change(t.version if t is not None else 0, remaining)

    def _run(self, node: Node | str, info: CommandInfo, slot: int | None, args: Sequence[Any],
             options: dict[str, Any], asking: bool = False) -> Any:
        """Run one command on `node`, following redirections and retrying within the budgets."""
        core = self._core
        hops = failures = 0
        first_failure = 0.0
        stale_retried = False
        name = node if isinstance(node, str) else node.name
        last_error: BaseException | None = None
        while True:
            st = core.nodes.get(name) or core.state(name)
            if st.open_until and not st.available():
                # breaker open: don't wait on a node known to be failing; the map may move on
                failures += 1
                first_failure = first_failure or time.monotonic()
                if not self._may_retry(failures, first_failure):
                    raise errors.NodeUnavailableError(
                        f"{command_name(args)}: node {name} is unavailable (circuit breaker open after "
                        f"{st.failures} consecutive failures: {last_error}); retry later"
                    ) from last_error
                core.refresher.request()
                name = self._after_failure(name, info, slot, failures)
                continue
            pool = st.pool
            conn = pool.acquire()
            sent = False
            fresh = conn._sock is None
            if not fresh and not info.readonly and not self.retry_unknown_outcome:
                # a write cannot be retried once sent: check first, without a round trip, that
                # the server has not closed this pooled connection (CLIENT KILL, restart)
                pool.validate(conn)
                fresh = conn._sock is None
            try:
                if fresh:
                    conn.connect()
                if asking:
                    conn.send_packed_command(pack_many(conn, [("ASKING",), tuple(args)]), False)
                    sent = True
                    conn.read_response()
                else:
                    conn.send_packed(pack_one(conn, args))  # type: ignore[attr-defined]
                    sent = True
                response = conn.read_reply(NEVER_DECODE in options)  # type: ignore[attr-defined]
            except rx.AskError as e:  # and MovedError, its subclass
                pool.release(conn)
                last_error = e
                hops += 1
                if hops >= self.max_redirections:
                    break
                moved = isinstance(e, rx.MovedError)
                if moved:  # the slot has a new owner: repoint it now, refresh soon
                    core.on_moved(e.slot_id, e.host, e.port)
                    if st.readonly:  # a replica that does not serve the slot: keep reads off it for now
                        core.node_loading(name)
                name, asking = f"{e.host}:{e.port}", not moved  # ASK: this command only
                continue
            except (rx.TryAgainError, rx.ClusterDownError) as e:
                pool.release(conn)
                last_error = e
                hops += 1
                if hops >= self.max_redirections:
                    break
                if isinstance(e, rx.ClusterDownError):
                    core.refresher.request()
                time.sleep(self._backoff(hops))
                name = self._reroute(name, info, slot)
                continue
            except rx.BusyLoadingError as e:
                pool.release(conn)
                core.node_loading(name)
                last_error = e
                hops += 1
                if hops >= self.max_redirections:
                    break
                if not (info.readonly and slot is not None):
                    time.sleep(self._backoff(hops))
                name = self._reroute(name, info, slot)
                continue
            except rx.ResponseError:
                pool.release(conn)
                if EMPTY_RESPONSE in options:
                    return options[EMPTY_RESPONSE]
                raise
            except (rx.ConnectionError, rx.TimeoutError, OSError) as e:
                pool.discard(conn)
                last_error = e
                if not fresh and not stale_retried and isinstance(e, rx.ConnectionError):
                    # a pooled connection the server had closed (CLIENT KILL, idle timeout, restart):
                    # says nothing about the node yet, and its idle siblings are likely closed too.
                    # Drop them and retry once at once on a fresh connection; only failures of fresh
                    # connections (or timeouts) count towards the breaker, so one CLIENT KILL does
                    # not open it and stall the node's slots for breaker_cooldown.
                    stale_retried = True
                    pool.disconnect_all()
                    if sent and not (info.readonly or self.retry_unknown_outcome):
                        raise _unknown_outcome(args, name, e) from e
                    continue  # same node (with ASKING again if it was an ASK)
                core.node_failed(name, e)
                failures += 1
                first_failure = first_failure or time.monotonic()
                if sent and not (info.readonly or self.retry_unknown_outcome):
                    raise _unknown_outcome(args, name, e) from e
                if not self._may_retry(failures, first_failure):
                    raise
                name = self._after_failure(name, info, slot, failures)
                asking = False
                continue
            except BaseException:
                pool.discard(conn)
                raise
            pool.release(conn)
            if failures or st.loading:
                core.node_recovered(name)
            return self._parse(args[0], response, options)
        raise errors.TooManyRedirectionsError(
            f"{command_name(args)} for slot {slot} gave up after {hops} redirections/retries; "
            f"last node {name}, last reply: {last_error}"
        ) from last_error

    def _run_traced(self, node: Node | str, info: CommandInfo, slot: int | None, args: Sequence[Any],
                    options: dict[str, Any], asking: bool = False) -> Any:
        """`_run` with the command hook called once per command (installed only when a hook is set)."""
        hook = self._hook
        assert hook is not None
        name = node if isinstance(node, str) else node.name
        start = time.perf_counter()
        try:
            result = RouterMixin._run(self, node, info, slot, args, options, asking)
        except BaseException as e:
            hook(name, command_name(args), time.perf_counter() - start, e)
            raise
        hook(name, command_name(args), time.perf_counter() - start, None)
        return result

    def _may_retry(self, n: int, since: float) -> bool:
        """Whether the n-th retry of a failure first seen at `since` is within the budget:
        `retry_timeout` seconds when set, else the Retry's count."""
        if self.retry_timeout is not None:
            return time.monotonic() - since < self.retry_timeout
        return n <= self.retry.get_retries()

    def _backoff(self, n: int) -> float:
        return float(self.retry._backoff.compute(n))

    def _after_failure(self, name: str, info: CommandInfo, slot: int | None, n: int) -> str:
        """Where to retry after node `name` failed: at once if a map moves the slot elsewhere
        during the n-th backoff, else the same node when the backoff is over."""

        def elsewhere() -> str | None:
            nxt = self._reroute(name, info, slot)
            return nxt if nxt != name else None

        return self._wait_for(elsewhere, self._backoff(n)) or name

    def _reroute(self, name: str, info: CommandInfo, slot: int | None) -> str:
        """Where to try next after a failure: the slot's owner in the (maybe refreshed) map."""
        topo = self._core.topology
        if slot is None or topo is None:
            return name
        try:
            return self._pick(topo, slot, info.readonly).name
        except errors.SlotNotCoveredError:
            return name

    def _parse(self, head: Any, response: Any, options: dict[str, Any]) -> Any:
        cb = self._callbacks.get(head, _MISSING)
        if cb is _MISSING:
            cb = self.response_callbacks.get(str(head).upper() if not isinstance(head, bytes) else head.decode().upper())
            if len(self._callbacks) < 4096:
                self._callbacks[head] = cb
        if cb is None:
            return response
        if options:
            options.pop("keys", None)
            options.pop(EMPTY_RESPONSE, None)
            options.pop(NEVER_DECODE, None)
        return cb(response, **options)


_MISSING = object()


def _unknown_outcome(args: Sequence[Any], node: str, e: BaseException) -> errors.UnknownOutcomeError:
    return errors.UnknownOutcomeError(
        f"{command_name(args)} was sent to {node} but the connection failed before the reply ({e}); "
        "it may or may not have been applied. Not retried because it can write; "
        "pass retry_unknown_outcome=True to retry such commands."
    )
