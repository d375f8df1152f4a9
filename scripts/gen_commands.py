#!/usr/bin/env python3
"""Generate clusterpool/command_specs.jsonl, the command table shipped with the package.

The file (JSON lines: a header object, then one command per line, so that a
client indexes it by name without parsing it and parses only the commands it
uses) holds the server's own COMMAND reply (name, arity, flags, first/last/step,
tips, key specs, subcommands; ACL categories dropped: the router never reads
them), normalised to JSON, so a client can route every command the server
knows without fetching the ~240-entry COMMAND table at start-up. Commands the
file does not know (newer servers, modules) are looked up with COMMAND INFO
when first used. Regenerate after moving to a newer redis-server:

    .venv/bin/python scripts/gen_commands.py            # starts a throw-away redis-server
    .venv/bin/python scripts/gen_commands.py --url redis://127.0.0.1:7000
    .venv/bin/python scripts/gen_commands.py --check    # exit 1 if the file is stale

COMMAND DOCS is not read: it describes arguments for people, and nothing in it
decides where a command goes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

import redis

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from cluster import find_redis_server, free_port_run  # noqa: E402

OUT = os.path.join(ROOT, "clusterpool", "command_specs.jsonl")


def normalise(v: Any) -> Any:
    """bytes -> str, maps with str keys, sequences -> lists; numbers unchanged."""
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, dict):
        return {normalise(k): normalise(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [normalise(x) for x in v]
    if isinstance(v, set):
        return sorted(normalise(x) for x in v)
    return v


def entry_of(raw: Any) -> list[Any]:
    """One COMMAND entry without its ACL categories (index 6), subcommands likewise."""
    e = normalise(raw)
    e[6] = []
    if len(e) > 9 and e[9]:
        e[9] = sorted((entry_of(s) for s in raw[9]), key=lambda s: s[0])
    return e


def fetch(r: redis.Redis) -> dict[str, Any]:
    conn = r.connection_pool.get_connection()
    try:
        conn.send_command("COMMAND")
        reply = conn.read_response()
        version = r.info("server")["redis_version"]
    finally:
        r.connection_pool.release(conn)
    entries = sorted((entry_of(e) for e in reply), key=lambda e: e[0])
    return {
        "source": f"COMMAND of redis-server {version}",
        "generator": "scripts/gen_commands.py",
        "commands": entries,
    }


def render(doc: dict[str, Any]) -> str:
    """Header line, then one command per line (each starts with `["name",`, which the loader
    relies on); a diff after a server upgrade shows which commands changed."""
    head = json.dumps({k: v for k, v in doc.items() if k != "commands"})
    lines = [json.dumps(e, separators=(",", ":"), sort_keys=True) for e in doc["commands"]]
    return "\n".join([head, *lines]) + "\n"


def from_local_server() -> dict[str, Any]:
    binary = find_redis_server()
    with tempfile.TemporaryDirectory(prefix="cp-cmdspecs-") as d:
        port = free_port_run(1)
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", d, "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            r = redis.Redis(port=port, protocol=3, socket_timeout=5)
            deadline = time.monotonic() + 10
            while True:
                try:
                    r.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            return fetch(r)
        finally:
            proc.terminate()
            proc.wait(10)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="read COMMAND from this server instead of starting one")
    ap.add_argument("--check", action="store_true", help="exit 1 if the checked-in file differs")
    ap.add_argument("--out", default=OUT)
    a = ap.parse_args(argv)
    doc = fetch(redis.Redis.from_url(a.url, protocol=3)) if a.url else from_local_server()
    text = render(doc)
    if a.check:
        with open(a.out) as f:
            current = f.read()
        if current != text:
            print(f"{a.out} is stale: run scripts/gen_commands.py", file=sys.stderr)
            return 1
        return 0
    with open(a.out, "w") as f:
        f.write(text)
    print(f"wrote {a.out}: {len(doc['commands'])} commands ({doc['source']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
