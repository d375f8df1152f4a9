"""The steps of one refresh, without I/O, driven alike by the sync and the asyncio client.

How this works: `refresh_steps()` is a generator. Each value it yields is a tuple of node
names to ask for their view; the driver asks them (threads or tasks, in parallel) and
sends back their `Answers`; when it returns, its value (`StopIteration.value`) is the
`Outcome`. The order is: a sample of the candidates, `agreement.decide`, the nodes the
decision asks about (up to `max_views` in all), and when no node answered at all, the
startup addresses and the suspects one by one. `drive` and `adrive` run it with a sync or
async ask function, so the drivers only do the asking.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from .agreement import Decision, View, decide
from .slots import SLOT_COUNT
from .topology import Topology


@dataclass(frozen=True, slots=True)
class Candidates:
    """Whom a refresh may ask: `first` before the rest (a failing shard's replicas), `known`
    (the map's usable nodes), `startup` (last resort), `suspects` (failing now: not asked)."""

    first: tuple[str, ...] = ()
    known: tuple[str, ...] = ()
    startup: tuple[str, ...] = ()
    suspects: frozenset[str] = frozenset()
    urgent: bool = False  # the map has a hole or a failing primary: poll fast


FAST_INTERVAL = 0.1  # seconds between refreshes while the map is urgent (a primary failing)
FAST_WINDOW = 30.0  # ... for this long; then once a second until it is not


def next_wait(interval: float, urgent: bool, urgent_since: float | None, now: float,
              fast_interval: float = FAST_INTERVAL, fast_window: float = FAST_WINDOW) -> tuple[float, float | None]:
    """The refresh loops' schedule (both clients): how long to sleep before the next refresh,
    and since when the map has been urgent (None: it is not). `interval` while all is well;
    `fast_interval` for the first `fast_window` seconds of trouble, then once a second."""
    if not urgent:
        return interval, None
    since = now if urgent_since is None else urgent_since
    return min(interval, fast_interval if now - since < fast_window else 1.0), since


def candidates(topology: Topology | None, suspects: frozenset[str], startup: tuple[str, ...]) -> Candidates:
    """Whom a refresh asks (pure): a failing shard's replicas first, and whether to poll fast.
    `suspects`: nodes failing now (failures counted or breaker open)."""
    if topology is None:
        return Candidates(startup=startup)
    first: list[str] = []
    for shard in topology.shards:
        if shard.primary is None or shard.primary.name in suspects:
            first.extend(r.name for r in shard.replicas if r.usable)
    urgent = bool(first) or topology.covered < SLOT_COUNT or any(p.name in suspects for p in topology.primaries)
    known = tuple(n.name for n in topology.nodes if n.usable)
    return Candidates(tuple(first), known, startup, suspects, urgent)


def sample(cand: Candidates, size: int) -> tuple[str, ...]:
    """Up to `size` nodes: the urgent ones first, then a random pick of the rest
    (spreading CLUSTER SHARDS load over the cluster), skipping suspects."""
    first = [n for n in cand.first if n not in cand.suspects]
    rest = [n for n in cand.known if n not in cand.suspects and n not in first]
    random.shuffle(rest)
    picked = (first + rest)[: max(size, len(first))]
    if not picked:  # nothing healthy known: try the suspects, then the startup nodes
        picked = [n for n in cand.known if n in cand.suspects][:size]
    if not picked:
        picked = list(cand.startup[:1])
    return tuple(picked)


@dataclass(frozen=True, slots=True)
class Answers:
    """What asking some nodes gave: their views, the nodes that failed, and their errors."""

    views: tuple[View, ...] = ()
    silent: frozenset[str] = frozenset()
    errors: tuple[str, ...] = ()

    @classmethod
    def of(cls, names: Sequence[str], results: Sequence[View | BaseException]) -> Answers:
        """From one result per name, in order: a View, or the exception asking it raised."""
        failed = [(n, r) for n, r in zip(names, results) if not isinstance(r, View)]
        return cls(tuple(r for r in results if isinstance(r, View)), frozenset(n for n, _ in failed),
                   tuple(f"{n}: {e}" for n, e in failed))

    def __add__(self, other: Answers) -> Answers:
        return Answers(self.views + other.views, self.silent | other.silent, self.errors + other.errors)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a refresh ended: the decision (a map to adopt, or why not) and what it heard."""

    decision: Decision
    answers: Answers

    @property
    def topology(self) -> Topology | None:
        """The map to adopt, or None to keep the current one."""
        return self.decision.topology

    @property
    def unanswered(self) -> bool:
        """No node answered at all (the driver reports a refresh failure)."""
        return not self.answers.views


Steps = Generator[tuple[str, ...], Answers, Outcome]


def refresh_steps(current: Topology | None, cand: Candidates, sample_size: int, max_views: int) -> Steps:
    """One refresh of `current` (see the module docstring); yields whom to ask next."""
    suspects = cand.suspects
    asked = sample(cand, sample_size)
    got = yield asked
    decision = decide(current, got.views, silent=got.silent | suspects, asked=asked)
    if decision.ask:
        more = tuple(n for n in decision.ask if n not in suspects)[: max(max_views - len(asked), 0)]
        if more:
            got += yield more
        asked += more
        decision = decide(current, got.views, silent=got.silent | suspects, asked=asked, final=True)
    if not got.views:  # every known node is gone: the startup addresses, resolved again
        for name in [s for s in cand.startup if s not in asked] + list(suspects):
            got += yield (name,)
            if got.views:
                decision = decide(current, got.views, final=True)
                break
    return Outcome(decision, got)


Y = TypeVar("Y")  # what a step generator yields (whom or what to ask)
S = TypeVar("S")  # what the driver sends back (the answers)
R = TypeVar("R")  # what the generator returns


def drive(steps: Generator[Y, S, R], ask: Callable[[Y], S]) -> R:
    """Run `steps` (these refresh steps, or viewquery's) to the end with a blocking `ask`."""
    try:
        question = next(steps)
        while True:
            question = steps.send(ask(question))
    except StopIteration as done:
        return done.value


async def adrive(steps: Generator[Y, S, R], ask: Callable[[Y], Awaitable[S]]) -> R:
    """Run `steps` to the end with an awaitable `ask`."""
    try:
        question = next(steps)
        while True:
            question = steps.send(await ask(question))
    except StopIteration as done:
        return done.value
