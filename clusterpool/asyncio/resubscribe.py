"""Keeping an asyncio pubsub's subscriptions where they belong: one keeper task per pubsub.

How this works: the keeper sleeps until it is kicked (a link lost subscriptions: its
connection broke, the server unsubscribed a shard channel, SSUBSCRIBE got MOVED), the
client adopts a new map, or the backoff after a failed attempt ends. Then, under the
pubsub's lock, it orphans the shard channels the current map gives to another primary
and resubscribes every orphan: shard channels on their slot's owner (refreshing the map
first), classic ones on the node `subscriptions.classic_candidates` names first that
answers. While no owner answers it backs off as `policy.decide` says, never giving up;
rounds start at least 0.1 s apart; `aclose()` cancels it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from .. import errors
from .. import subscriptions as rules
from ..policy import Failure, Kind, decide
from .sublinks import CONN_ERRORS, FOREVER, Links

log = logging.getLogger("clusterpool.asyncio")

_IDLE_WAIT = 3600.0  # the longest wait with nothing to do (any change wakes it earlier)
# rounds start at least this far apart, so nodes disagreeing about a slot (MOVED back and
# forth while a failover settles) cost a few rounds a second, not a busy loop
_MIN_GAP = 0.1


class Keeper:
    """Resubscribes a pubsub's orphaned subscriptions (see the module docstring)."""

    def __init__(self, links: Links, lock: asyncio.Lock) -> None:
        self.links = links
        self.lock = lock  # the pubsub's: subscribing and resubscribing never interleave
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Something was orphaned: resubscribe soon (starts the task on first use)."""
        self._kick.set()
        self.start()

    def start(self) -> None:
        if self._task is None and not self.links.closed and not self.links.state.closed:
            self._task = asyncio.get_running_loop().create_task(self._keep(), name="clusterpool-async-pubsub")

    async def _keep(self) -> None:
        links, state = self.links, self.links.state
        budget = FOREVER
        delay: float | None = None
        last = -_MIN_GAP
        version = self._version()
        while not links.closed and not state.closed:
            await self._wait(version, delay)
            gap = last + _MIN_GAP - time.monotonic()
            if gap > 0:
                await asyncio.sleep(gap)
            if links.closed or state.closed:
                return
            last = time.monotonic()
            try:
                async with self.lock:
                    version = self._version()  # a map adopted from here on wakes the next round
                    links.move_shards()
                    ok = await self.recover(refresh=budget.failures > 0 or bool(links.lost[rules.SHARD]))
            except errors.PoolClosedError:  # the client was closed under us
                return
            except Exception as e:  # noqa: BLE001 - never let the task die: back off and try again
                log.debug("resubscribing failed: %s", e)
                ok = False
            self._kick.clear()  # our own failed attempts kicked too: wait out the backoff instead
            if ok:
                # orphaned while we were resubscribing: go again at once
                budget, delay = FOREVER, (0.0 if links.orphans() else None)
            else:
                action = decide(Failure(Kind.CONNECTION, ""), budget, now=time.monotonic(), backoff=links.backoff,
                                readonly=True)
                budget, delay = action.budget, action.delay

    def _version(self) -> int:
        t = self.links.state.topology
        return t.version if t is not None else 0

    async def _wait(self, version: int, delay: float | None) -> None:
        """Until kicked, the map changes from `version`, or `delay` s pass; then clear the kick."""
        if not self._kick.is_set():
            kick = asyncio.ensure_future(self._kick.wait())
            change = asyncio.ensure_future(self.links.state.wait_for_change(version, delay or _IDLE_WAIT))
            try:
                await asyncio.wait((kick, change), timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for f in (kick, change):
                    f.cancel()
                await asyncio.gather(kick, change, return_exceptions=True)
        self._kick.clear()

    async def recover(self, refresh: bool = True) -> bool:
        """Resubscribe orphans where the current map puts them (call under the lock);
        whether every one of them found a node."""
        links = self.links
        if not links.orphans() or links.closed:
            return True
        if refresh:
            await links.refresh()
        ok = True
        if links.lost[rules.CHANNEL] or links.lost[rules.PATTERN]:
            ok = await self._recover_classic()
        lost, links.lost[rules.SHARD] = links.lost[rules.SHARD], {}
        groups = list(rules.by_slot(lost).values())
        while groups:
            try:
                await links.ssubscribe_slot(groups[0])
            except (*CONN_ERRORS, errors.SlotNotCoveredError, errors.PoolTimeoutError):
                links.lost[rules.SHARD].update(groups[0])
                ok = False
            except BaseException:  # cancelled: what was not resubscribed yet keeps waiting
                for group in groups:
                    links.lost[rules.SHARD].update(group)
                raise
            groups.pop(0)
        return ok

    async def _recover_classic(self) -> bool:
        """Classic orphans onto the classic link if one was opened since (a subscribe after the
        loss), else onto the first candidate node that answers."""
        links = self.links
        chans, pats = links.lost[rules.CHANNEL], links.lost[rules.PATTERN]
        existing = links.classic
        if existing is not None:
            names = [existing.name]
        else:
            topo = links.state.topology
            others = [p.name for p in (topo.primaries if topo else ()) if p.usable]
            random.shuffle(others)
            key_owner = "" if links.pinned else await links.owner(links.classic_key)
            names = rules.classic_candidates(links.pinned, key_owner, links.lost_classic_node, others)
        for name in names:
            try:
                link = existing or await links.open(name, sharded=False)
            except (*CONN_ERRORS, errors.PoolTimeoutError):
                continue
            link.subs[rules.CHANNEL].update(chans)
            link.subs[rules.PATTERN].update(pats)
            try:
                if chans:
                    await links.send(link, "SUBSCRIBE", *chans)
                if pats:
                    await links.send(link, "PSUBSCRIBE", *pats)
            except CONN_ERRORS:  # the link was lost, giving back what it held: try the next node
                continue
            links.classic = link
            links.lost[rules.CHANNEL], links.lost[rules.PATTERN] = {}, {}
            links.lost_classic_node = ""
            return True
        return False

    async def aclose(self) -> None:
        """Stop the task and wait for it."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
