"""What cluster pipelines and transactions refuse, and how their errors read (pure).

RedisCluster (redis-py 8.1) is the reference: the same calls are refused with
the same exception classes and messages, so code written for it sees no
difference. Where we refuse, the error also keeps our own class (CrossSlotError)
so `except CrossSlotError` works too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from redis import exceptions as rx

from ._redispy import PIPELINE_BLOCKED_COMMANDS, command_text, safe_str, truncate_text
from . import errors

# Pipeline methods RedisCluster blocks ("client_getname", "mget", "ping", ...): the method names
# redis-py installs its blocking stubs under.
BLOCKED_METHODS: tuple[str, ...] = tuple(dict.fromkeys(c.replace(" ", "_").lower() for c in PIPELINE_BLOCKED_COMMANDS))

# Keyless scripts and functions may run in a transaction (RedisCluster sends them to a random slot).
KEYLESS_IN_TRANSACTION = frozenset({"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro", "unwatch"})

TRANSACTION_CROSS_SLOT = "All keys involved in a cluster transaction must map to the same slot"
WATCH_CROSS_SLOT = "Cannot watch or send commands on different slots"


def blocked(method: str) -> rx.RedisClusterException:
    """The error RedisCluster raises for a blocked pipeline method."""
    return rx.RedisClusterException(
        f"ERROR: Calling pipelined function {method} is blocked when running redis in cluster mode..."
    )


def blocked_cross_slot(method: str) -> errors.CrossSlotCommandError:
    """`blocked(method)`'s message, for a blocked command whose keys span slots (or that has none)."""
    return errors.CrossSlotCommandError(blocked(method).args[0])


def multi_key_delete(command: str) -> errors.CrossSlotCommandError:
    """DEL/UNLINK of keys in several slots queued on a plain pipeline."""
    verb = "deleting" if command == "DEL" else "unlinking"
    return errors.CrossSlotCommandError(f"{verb} multiple keys is not implemented in pipeline command")


def outside_transaction(method: str) -> rx.RedisClusterException:
    return rx.RedisClusterException(f"method {method}() is not supported outside of transactional context")


def not_implemented(method: str) -> rx.RedisClusterException:
    return rx.RedisClusterException(f"method {method}() is not implemented")


def missing_key_message(args: Sequence[Any]) -> str:
    """RedisCluster's words for a keyed command without its key (or a keyless one in a transaction)."""
    return ("No way to dispatch this command to Redis Cluster. Missing key.\n"
            f"You can execute the command by specifying target nodes.\nCommand: {command_text(args)}")


def missing_key(args: Sequence[Any]) -> rx.RedisClusterException:
    """A keyless command queued in a transaction: nothing says which node should run it."""
    return rx.RedisClusterException(missing_key_message(args))


def keys_cross_slot(args: Sequence[Any]) -> errors.CrossSlotCommandError:
    return errors.CrossSlotCommandError(f"{args[0]} - all keys must map to the same key slot")


def annotate(exception: BaseException, number: int, args: Sequence[Any]) -> None:
    """Prefix the error with the command's position and text, exactly as redis-py's pipelines do."""
    cmd = " ".join(map(safe_str, args))
    first = exception.args[0] if exception.args else ""
    msg = f"Command # {number} ({truncate_text(cmd)}) of pipeline caused error: {first}"
    exception.args = (msg,) + exception.args[1:]


def raise_first_error(results: Iterable[tuple[Sequence[Any], Any]]) -> None:
    """Raise the first error among (args, result) pairs, annotated with its 1-based position."""
    for i, (args, r) in enumerate(results):
        if isinstance(r, Exception):
            annotate(r, i + 1, args)
            raise r
