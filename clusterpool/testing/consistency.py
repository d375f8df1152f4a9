#!/usr/bin/env python3
"""A consistency checker for a Redis Cluster client, in the spirit of Redis's consistency-test.rb.

Importable as ``clusterpool.testing.consistency`` and runnable::

    python -m clusterpool.testing.consistency --url redis://127.0.0.1:7000 --seconds 30 [--threads 4]

It keeps ``keys`` counters (``cc:0`` .. ``cc:999``, spread over the slot
space). A worker picks a random counter, reads it (GET) and compares the value
with what it expects, then INCRs it and records the acknowledged value. Every
counter has exactly one writer (with several threads, thread ``t`` owns the keys
``i % threads == t``), so the checker knows the exact value each counter must
have:

* **lost writes**: a read (or the pre-value an INCR reports) lower than the last
  acknowledged INCR. Counted as the number of acknowledged increments missing.
* **reads that went backwards**: a value lower than the highest value seen
  before for that key (acknowledged or read). This includes lost writes, and
  also increments that were applied without acknowledgement, seen by a read,
  and later lost (e.g. to asynchronous replication at a failover).
* **unacknowledged writes**: an INCR that raised; the next read tells whether it
  was applied after all (``unacked_applied``) or not (``unacked_not_applied``).
* **errors** surfaced to the caller, by exception type.

The first read of a counter sets its baseline, so a key that already exists is
fine (counters are not reset). Operations slower than ``slow`` seconds or that
raised are kept as *incidents* (end time, latency, error type): `recovery_after`
uses them to say how long after a fault the client took to serve normally again.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

__all__ = ["Anomaly", "Checker", "Incident", "Report"]


@dataclass(frozen=True)
class Incident:
    """An operation that raised or was slow: when it ended, how long it took, what it raised."""

    end: float  # time.monotonic()
    latency: float
    op: str  # "get" / "incr"
    error: str | None  # exception type name, None when merely slow


@dataclass(frozen=True)
class Anomaly:
    """A read that went backwards or revealed lost writes."""

    at: float  # time.monotonic()
    key: str
    how: str  # "get" or "incr" (the INCR reply minus one)
    acked: int  # last acknowledged value
    seen: int  # highest value seen before
    got: int


@dataclass
class Report:
    """Figures of one checker run (or a snapshot of a running one)."""

    seconds: float = 0.0
    ops: int = 0  # commands attempted (GET + INCR)
    reads: int = 0
    writes: int = 0  # INCRs acknowledged
    errors: dict[str, int] = field(default_factory=dict)  # exception type -> count
    lost_writes: int = 0  # acknowledged increments missing
    lost_events: int = 0  # observations that revealed lost writes
    unacked: int = 0  # INCRs that raised
    unacked_applied: int = 0
    unacked_not_applied: int = 0
    backwards_reads: int = 0
    max_latency: float = 0.0
    recovery: float | None = None  # filled in by callers that inject a fault

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def consistent(self) -> bool:
        return self.lost_writes == 0 and self.backwards_reads == 0

    def line(self) -> str:
        errs = ",".join(f"{k}={v}" for k, v in sorted(self.errors.items())) or "0"
        rate = self.ops / self.seconds if self.seconds > 0 else 0.0
        out = (
            f"{self.seconds:6.1f}s ops={self.ops} ({rate:.0f}/s) errors={errs} "
            f"lost={self.lost_writes} unacked={self.unacked} unacked_applied={self.unacked_applied} "
            f"backwards={self.backwards_reads} max_latency={self.max_latency * 1000:.0f}ms"
        )
        if self.recovery is not None:
            out += f" recovery={self.recovery:.2f}s"
        return out


class _Stats:
    """One worker's counters (summed for reports; only its own thread writes them)."""

    def __init__(self) -> None:
        self.ops = self.reads = self.writes = 0
        self.errors: dict[str, int] = {}
        self.lost_writes = self.lost_events = 0
        self.unacked = self.unacked_applied = self.unacked_not_applied = 0
        self.backwards_reads = 0
        self.max_latency = 0.0


def _int(v: Any) -> int:
    if v is None:
        return 0
    return int(v)


class Checker:
    """Counters with one writer each; see the module docstring for what is counted."""

    def __init__(
        self,
        client: Any,
        keys: int = 1000,
        seed: int | None = None,
        prefix: str = "cc:",
        slow: float = 0.25,
        report_every: float | None = 1.0,
        out: TextIO | None = None,
        label: str = "",
    ) -> None:
        if keys < 1:
            raise ValueError("keys must be >= 1")
        self.client = client
        self.keys = [f"{prefix}{i}" for i in range(keys)]
        self.seed = seed
        self.slow = slow
        self.report_every = report_every
        self.out = out if out is not None else sys.stdout
        self.label = label
        # per key: last acknowledged value (None until the first observation), highest value
        # seen, and INCRs that raised since the value was last known
        self.acked: dict[str, int | None] = dict.fromkeys(self.keys)
        self.seen: dict[str, int] = dict.fromkeys(self.keys, 0)
        self.pending: dict[str, int] = dict.fromkeys(self.keys, 0)
        self.incidents: list[Incident] = []
        self.anomalies: list[Anomaly] = []  # first 1000 lost/backwards observations
        self.samples: dict[str, str] = {}  # exception type -> first message
        self.types: dict[str, type] = {}  # exception type name -> class
        self._stats: list[_Stats] = []
        self._started = 0.0
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- per-key bookkeeping

    def _observe(self, st: _Stats, key: str, value: int, how: str = "get") -> None:
        """`value` is what the server holds for `key` now (from a GET, or an INCR's pre-value)."""
        expected = self.acked[key]
        pending = self.pending[key]
        if expected is None:  # first sight: baseline (earlier unacked INCRs stay unresolved)
            self.acked[key] = value
            self.seen[key] = max(self.seen[key], value)
            self.pending[key] = 0
            return
        if value < self.seen[key]:
            st.backwards_reads += 1
        if value < expected:
            st.lost_writes += expected - value
            st.lost_events += 1
        if (value < self.seen[key] or value < expected) and len(self.anomalies) < 1000:
            self.anomalies.append(Anomaly(time.monotonic(), key, how, expected, self.seen[key], value))
        if pending:
            applied = min(max(value - expected, 0), pending)
            st.unacked_applied += applied
            st.unacked_not_applied += pending - applied
            self.pending[key] = 0
        # from now on the server's value is the truth we check against
        self.acked[key] = value
        if value > self.seen[key]:
            self.seen[key] = value

    def _error(self, st: _Stats, op: str, began: float, e: BaseException) -> None:
        name = type(e).__name__
        st.errors[name] = st.errors.get(name, 0) + 1
        now = time.monotonic()
        with self._lock:
            self.samples.setdefault(name, f"{op}: {e}")
            self.types.setdefault(name, type(e))
            self.incidents.append(Incident(now, now - began, op, name))

    def _timed(self, st: _Stats, op: str, began: float) -> None:
        now = time.monotonic()
        lat = now - began
        if lat > st.max_latency:
            st.max_latency = lat
        if lat >= self.slow:
            with self._lock:
                self.incidents.append(Incident(now, lat, op, None))

    def step(self, st: _Stats, rng: random.Random, keys: list[str]) -> None:
        """One GET + check + INCR on a random key of `keys`."""
        key = rng.choice(keys)
        st.ops += 1
        began = time.monotonic()
        try:
            raw = self.client.get(key)
        except Exception as e:  # noqa: BLE001 - every error is a figure
            self._error(st, "get", began, e)
            return
        self._timed(st, "get", began)
        st.reads += 1
        self._observe(st, key, _int(raw))
        st.ops += 1
        began = time.monotonic()
        try:
            n = self.client.incr(key)
        except Exception as e:  # noqa: BLE001
            self._error(st, "incr", began, e)
            self.pending[key] += 1
            st.unacked += 1
            return
        self._timed(st, "incr", began)
        st.writes += 1
        self._observe(st, key, int(n) - 1, "incr")
        self.acked[key] = int(n)
        if n > self.seen[key]:
            self.seen[key] = int(n)

    # ---------------------------------------------------------------- running

    def snapshot(self) -> Report:
        r = Report(seconds=(time.monotonic() - self._started) if self._started else 0.0)
        for st in list(self._stats):
            r.ops += st.ops
            r.reads += st.reads
            r.writes += st.writes
            for k, v in list(st.errors.items()):
                r.errors[k] = r.errors.get(k, 0) + v
            r.lost_writes += st.lost_writes
            r.lost_events += st.lost_events
            r.unacked += st.unacked
            r.unacked_applied += st.unacked_applied
            r.unacked_not_applied += st.unacked_not_applied
            r.backwards_reads += st.backwards_reads
            r.max_latency = max(r.max_latency, st.max_latency)
        return r

    def verify(self) -> Report:
        """Read every known counter once more (resolving pending INCRs); returns the snapshot.

        Call after `run` when the cluster is healthy again, so unacknowledged INCRs are
        classified and losses that no random read happened to see are counted.
        """
        st = _Stats()
        self._stats.append(st)
        for key in self.keys:
            if self.acked[key] is None and not self.pending[key]:
                continue
            st.ops += 1
            began = time.monotonic()
            try:
                raw = self.client.get(key)
            except Exception as e:  # noqa: BLE001
                self._error(st, "get", began, e)
                continue
            st.reads += 1
            self._observe(st, key, _int(raw))
        return self.snapshot()

    def run(
        self,
        seconds: float | None = None,
        ops: int | None = None,
        threads: int = 1,
        stop_event: threading.Event | None = None,
    ) -> Report:
        """Run until `seconds` passed, `ops` operations were done, or `stop_event` is set.

        At least one bound is required. Returns the Report (also printed when reporting).
        """
        if seconds is None and ops is None and stop_event is None:
            raise ValueError("give seconds, ops or stop_event: the checker must stop by itself")
        threads = max(1, min(threads, len(self.keys)))
        stop = threading.Event()
        deadline = None if seconds is None else time.monotonic() + seconds
        per_thread_ops = None if ops is None else max(1, ops // threads)
        self._started = self._started or time.monotonic()
        base = self.seed if self.seed is not None else random.randrange(2**31)
        stats = [_Stats() for _ in range(threads)]
        self._stats.extend(stats)

        def should_stop() -> bool:
            return (
                stop.is_set()
                or (stop_event is not None and stop_event.is_set())
                or (deadline is not None and time.monotonic() >= deadline)
            )

        def worker(t: int) -> None:
            st = stats[t]
            rng = random.Random(base + t)
            mine = self.keys[t::threads]
            while not should_stop():
                if per_thread_ops is not None and st.ops >= per_thread_ops:
                    return
                self.step(st, rng, mine)

        workers = [
            threading.Thread(target=worker, args=(t,), name=f"consistency-{t}", daemon=True)
            for t in range(threads)
        ]
        for w in workers:
            w.start()
        try:
            last = time.monotonic()
            while any(w.is_alive() for w in workers):
                time.sleep(0.05)
                if self.report_every is not None and time.monotonic() - last >= self.report_every:
                    last = time.monotonic()
                    self._print(self.snapshot().line())
        finally:
            stop.set()
            for w in workers:
                w.join(60)
        report = self.snapshot()
        if self.report_every is not None:
            self._print("final " + report.line())
        return report

    def _print(self, line: str) -> None:
        try:
            self.out.write((f"[{self.label}] " if self.label else "") + line + "\n")
            self.out.flush()
        except (OSError, ValueError):
            pass

    # ---------------------------------------------------------------- analysis

    def recovery_after(self, t_fault: float) -> float:
        """Seconds from `t_fault` until the client served normally again: the end of the
        last operation, finished after the fault, that raised or was slow (0 if none)."""
        with self._lock:
            ends = [i.end for i in self.incidents if i.end >= t_fault]
        return max(ends) - t_fault if ends else 0.0

    def errors_between(self, t0: float, t1: float | None = None) -> dict[str, int]:
        out: dict[str, int] = {}
        with self._lock:
            for i in self.incidents:
                if i.error is not None and i.end >= t0 and (t1 is None or i.end <= t1):
                    out[i.error] = out.get(i.error, 0) + 1
        return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="redis://host:port of any cluster node")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--ops", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--socket-timeout", type=float, default=1.0)
    ap.add_argument("--retry-unknown-outcome", action="store_true")
    a = ap.parse_args(argv)
    from clusterpool import ClusterClient

    client = ClusterClient.from_url(
        a.url, socket_timeout=a.socket_timeout, retry_unknown_outcome=a.retry_unknown_outcome
    )
    try:
        checker = Checker(client, keys=a.keys, seed=a.seed)
        checker.run(seconds=a.seconds, ops=a.ops, threads=a.threads)
        report = checker.verify()
        print("verified " + report.line())
        return 0 if report.consistent else 1
    except KeyboardInterrupt:
        return 130
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
