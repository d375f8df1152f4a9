"""One seam to redis-py's internals: only `clusterpool/_redispy.py` touches them.

Every other module imports from redis-py only the names listed here (its
documented API: exceptions, connection/retry/backoff/lock/pubsub classes,
command mixins, `__all__` names) and reads no private attribute of a redis-py
object. A redis-py release that moves an internal then breaks the seam, and
this test says so, instead of `import clusterpool` failing for users.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import redis

from clusterpool import _redispy

PACKAGE = Path(__file__).resolve().parents[2] / "clusterpool"
SEAM = PACKAGE / "_redispy.py"

# module -> names other modules may import from it ("*": any name)
PUBLIC: dict[str, set[str]] = {
    "redis": {"*"},  # `import redis` / names in redis.__all__ (checked below)
    "redis.exceptions": {"*"},
    "redis.asyncio": {"Redis", "RedisCluster"},
    "redis.asyncio.connection": {"Connection", "SSLConnection"},
    "redis.asyncio.lock": {"Lock"},
    "redis.backoff": {"*"},
    "redis.retry": {"Retry"},
    "redis.asyncio.retry": {"Retry"},
    "redis.lock": {"Lock"},
    "redis.cluster": {"RedisCluster", "ClusterNode"},
    "redis.client": {"PubSub", "PubSubWorkerThread", "Pipeline", "Redis"},
    "redis.commands": {"CoreCommands", "RedisClusterCommands", "AsyncRedisClusterCommands"},
    "redis.commands.core": {"BasicKeyCommands"},
    "redis.connection": {"AbstractConnection", "Connection", "SSLConnection", "ConnectionPool"},
    "redis.driver_info": {"DriverInfo"},
    "redis.cache": {"CacheConfig", "CacheProxy", "DefaultCache"},
    "redis.keyspace_notifications": {"ClusterKeyspaceNotifications"},
}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p != SEAM)


# redis-py modules whose objects clusterpool holds: connections, parsers, retry, pubsub, lock
_HELD = ("connection.py", "asyncio/connection.py", "retry.py", "asyncio/retry.py", "client.py",
         "asyncio/client.py", "backoff.py", "lock.py", "_parsers/base.py", "_parsers/hiredis.py",
         "_parsers/resp2.py", "_parsers/resp3.py")


def _assigned_privates(paths) -> set[str]:
    found: set[str] = set()
    for p in paths:
        found.update(re.findall(r"self\.(_[a-z]\w*)\s*[:=]", Path(p).read_text(encoding="utf-8")))
    return found


def _redispy_private_names() -> set[str]:
    """Private attributes of the redis-py objects we hold, less the names our own classes also
    use (`_conn`, `_reader`, ...): reading those on our own objects is not reaching into redis-py,
    and inside a subclass of a redis-py class they are still caught."""
    root = Path(redis.__file__).parent
    theirs = _assigned_privates(root / f for f in _HELD if (root / f).exists())
    ours = _assigned_privates(_modules()) | {
        name for p in _modules() for name in re.findall(r"def (_[a-z]\w*)\(", p.read_text(encoding="utf-8"))}
    return theirs - ours


def _import_violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "redis":
            allowed = PUBLIC.get(node.module)
            for alias in node.names:
                if node.module == "redis" and alias.name not in redis.__all__ and alias.name != "exceptions":
                    bad.append(f"{path.name}:{node.lineno} from redis import {alias.name}")
                elif allowed is None or ("*" not in allowed and alias.name not in allowed):
                    bad.append(f"{path.name}:{node.lineno} from {node.module} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("redis.") and alias.name not in PUBLIC:
                    bad.append(f"{path.name}:{node.lineno} import {alias.name}")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute):
            # redis.connection.Encoder and the like, reached through `import redis`
            inner = node.value
            if isinstance(inner.value, ast.Name) and inner.value.id == "redis":
                module = f"redis.{inner.attr}"
                allowed = PUBLIC.get(module)
                if allowed is not None and "*" not in allowed and node.attr not in allowed:
                    bad.append(f"{path.name}:{node.lineno} {module}.{node.attr}")
    return bad


def _redis_base_classes(tree: ast.Module) -> set[str]:
    """Names bound to redis-py classes in this module (imported from redis*)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "redis":
            names.update(a.asname or a.name for a in node.names)
    return names


def _private_violations(path: Path, private: set[str]) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    redis_names = _redis_base_classes(tree)
    bad = []
    # self._x inside a class that subclasses a redis-py class is redis-py's private state too
    subclass_bodies: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(
                isinstance(b, ast.Name) and b.id in redis_names for b in node.bases):
            subclass_bodies.update(id(n) for n in ast.walk(node))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in private:
            receiver = node.value
            own = isinstance(receiver, ast.Name) and receiver.id in ("self", "cls")
            if not own or id(node) in subclass_bodies:
                bad.append(f"{path.name}:{node.lineno} .{node.attr}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
              and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
              and node.args[1].value in private
              and not (isinstance(node.args[0], ast.Name) and node.args[0].id in ("self", "cls"))):
            bad.append(f"{path.name}:{node.lineno} getattr(..., {node.args[1].value!r})")
    return bad


def test_only_the_seam_imports_redis_py_internals():
    bad = [v for p in _modules() for v in _import_violations(p)]
    assert bad == [], "redis-py internals outside clusterpool/_redispy.py:\n" + "\n".join(bad)


def test_no_module_but_the_seam_reads_redis_py_private_attributes():
    private = _redispy_private_names() | {"_reader", "_writer", "_sock", "_parser"}
    bad = [v for p in _modules() for v in _private_violations(p, private)]
    assert bad == [], "private redis-py attributes read outside clusterpool/_redispy.py:\n" + "\n".join(bad)


def test_the_seam_finds_every_internal_it_adapts_to_in_the_installed_redis_py():
    """A release that drops one of these is noticed here, before a user is."""
    import redis.client
    import redis.cluster

    assert _redispy.EMPTY_RESPONSE == redis.client.EMPTY_RESPONSE
    assert _redispy.NEVER_DECODE == redis.client.NEVER_DECODE
    assert _redispy.SLOT_ID == redis.cluster.SLOT_ID
    assert _redispy.PIPELINE_BLOCKED_COMMANDS and set(_redispy.PIPELINE_BLOCKED_COMMANDS) == set(
        redis.cluster.PIPELINE_BLOCKED_COMMANDS)
    assert _redispy.NOT_ENOUGH_DATA is not None
    assert callable(_redispy.get_response_callbacks)
    assert _redispy.cluster_reply_callbacks(None, True)["CLUSTER SLOTS"] is not None


def test_the_owned_read_commands_copy_matches_redis_py_where_it_still_has_one():
    from redis import commands

    theirs = getattr(commands, "READ_COMMANDS", None)
    if theirs is None:
        pytest.skip("this redis-py no longer ships READ_COMMANDS: the owned copy is in use")
    assert frozenset(theirs) == _redispy.READ_COMMANDS


def test_a_sync_connection_exposes_its_socket_and_parser_through_the_seam():
    from redis.connection import Connection

    conn = Connection()
    assert _redispy.raw_socket(conn) is None
    assert hasattr(_redispy.sync_parser(conn), "read_response")
    assert _redispy.backoff_of(conn.retry) is not None
