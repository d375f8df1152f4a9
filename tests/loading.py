"""Make a real node answer LOADING for a while: DEBUG RELOAD with a per-key load delay.

`reloading(cluster, port, tag)` fills the slot of `tag` on that node with keys, slows the
load down (the server's hidden `key-load-delay` and `loading-process-events-interval-bytes`
settings, which its own test suite uses), starts DEBUG RELOAD in a thread and returns once
the node reports `loading:1`; on exit it waits for the reload to end and puts everything
back (keys, settings, the dump file the reload wrote).
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

from waiting import poll

from clusterpool.slots import key_slot

KEYS = 1500  # at 1 ms each: the node answers LOADING for about 1.5 s
KEY_DELAY_US = 1000


@contextlib.contextmanager
def reloading(cluster: Any, port: int, tag: str) -> Iterator[None]:
    """While inside, node `port` answers LOADING to keyed commands (see the module docstring)."""
    admin = cluster.client(port, socket_timeout=60)
    prefix = "{" + tag + "}:fill"
    admin.execute_command("DEBUG", "POPULATE", KEYS, prefix, 10)
    saved = admin.config_get("loading-process-events-interval-bytes")
    admin.config_set("key-load-delay", KEY_DELAY_US)
    admin.config_set("loading-process-events-interval-bytes", 1024)
    done = threading.Event()
    failed: list[BaseException] = []

    def reload() -> None:
        try:
            admin.execute_command("DEBUG", "RELOAD")
        except BaseException as e:  # noqa: BLE001 - reported by the test
            failed.append(e)
        finally:
            done.set()

    worker = threading.Thread(target=reload, name="debug-reload")
    worker.start()
    watcher = cluster.client(port)
    try:
        poll(lambda: done.is_set() or watcher.info("persistence")["loading"] == 1, timeout=10,
             what=f"node {port} to start loading")
        assert not done.is_set(), "the reload ended before the test could use it"
        yield
    finally:
        done.wait(60)
        worker.join(60)
        watcher.close()
        with cluster.client(port) as c:
            c.config_set("key-load-delay", 0)
            c.config_set("loading-process-events-interval-bytes", saved["loading-process-events-interval-bytes"])
            for batch in _batches([f"{prefix}:{i}" for i in range(KEYS)], 500):
                c.delete(*batch)
            dump = os.path.join(c.config_get("dir")["dir"], c.config_get("dbfilename")["dbfilename"])
        with contextlib.suppress(FileNotFoundError):
            os.remove(dump)  # so a later restart of the node does not load these keys back
        admin.close()
    assert not failed, failed


def _batches(items: list[str], n: int) -> Iterator[list[str]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def loading_case(cluster: Any) -> tuple[str, str, int, list[tuple[str, int]]]:
    """(tag, key, the key's owner, startup nodes without the owner) for a fresh test: a client on
    those startup nodes opens its connection to the owner only when it first sends there, as
    after a restart (a DEBUG RELOAD leaves connections opened before it unanswered until the
    load ends)."""
    tag = "loading-" + uuid.uuid4().hex[:8]
    key = "{" + tag + "}:k"
    owner = cluster.slot_owner(key_slot(key.encode()))
    return tag, key, owner, [(cluster.host, p) for p in cluster.primaries() if p != owner]
