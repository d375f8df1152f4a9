"""What cluster pipelines and transactions refuse, and how their errors read (pure).

RedisCluster (redis-py 8.1 and 8.2, sync and asyncio) is the reference: the same
calls are refused with the same exception classes and messages, so code written for
it sees no difference. Where we refuse, the error also keeps our own class
(CrossSlotError) so `except CrossSlotError` works too. Both clients' pipelines and
transactions apply these rules; none is written twice.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from redis import exceptions as rx

from ._redispy import PIPELINE_BLOCKED_COMMANDS, command_text, safe_str, truncate_text
from . import errors
from .slots import slot_of

# Pipeline methods RedisCluster blocks ("client_getname", "mget", "ping", ...): the method names
# redis-py installs its blocking stubs under (the installed version's list), and client_list_iter,
# which sends CLIENT LIST (redis-py 8.2 blocks it too; 8.1's pipelines lack the method).
BLOCKED_METHODS: tuple[str, ...] = tuple(dict.fromkeys(
    [*(c.replace(" ", "_").lower() for c in PIPELINE_BLOCKED_COMMANDS), "client_list_iter"]))

# Commands whose argument list can carry a password: shown without their arguments in errors.
_CREDENTIALS = frozenset({"AUTH", "HELLO", "MIGRATE", "ACL SETUSER", "CONFIG SET", "SENTINEL SET"})

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


def check_blocked(method: str, slots: Iterable[int]) -> None:
    """A method RedisCluster blocks in pipelines, queued with keys in `slots`: refused (as
    RedisCluster refuses it) unless there is a key and every key is in one slot; then it can
    run on one node, so it does."""
    n = len(set(slots))
    if n == 0:
        raise blocked(method)
    if n > 1:
        raise blocked_cross_slot(method)


def by_slot(keys: Iterable[Any]) -> dict[int, list[Any]]:
    """The keys grouped per slot, slots in the order of their first key, keys in the given order
    (how RedisCluster splits DEL/EXISTS/TOUCH/UNLINK and MSET per slot)."""
    groups: dict[int, list[Any]] = {}
    for k in keys:
        groups.setdefault(slot_of(k), []).append(k)
    return groups


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


def summed(results: Sequence[Any]) -> Any:
    """The reply of a DEL/UNLINK/EXISTS/TOUCH split per slot: the counts summed, or the first
    part's error (the command's error, in its place)."""
    for r in results:
        if isinstance(r, Exception):
            return r
    return sum(int(r) for r in results)


def shown_command(args: Sequence[Any]) -> str:
    """The command as errors show it: its words joined, the arguments of a command that can
    carry a password (AUTH, HELLO, MIGRATE, ACL SETUSER, CONFIG SET, SENTINEL SET) replaced by
    "<REDACTED>", as redis-py 8.2 shows them, whatever the installed version (8.1 showed
    the password)."""
    parts = [safe_str(a) for a in args]
    shown = 0
    if parts:
        name = parts[0].upper()
        if name in _CREDENTIALS:
            shown = 1
        elif len(parts) > 1 and f"{name} {parts[1].upper()}" in _CREDENTIALS:
            shown = 2
    if shown and len(parts) > shown:
        parts[shown:] = ["<REDACTED>"]
    return " ".join(parts)


def annotate(exception: BaseException, number: int, args: Sequence[Any]) -> None:
    """Prefix the error with the command's position and text as RedisCluster's pipelines do:
    "Command # 2 (HSET k f...) of pipeline caused error: <the error's first argument>", the
    command shortened to 100 characters at a word boundary; an error without arguments is
    named by its class."""
    first = exception.args[0] if exception.args else type(exception).__name__
    msg = f"Command # {number} ({truncate_text(shown_command(args))}) of pipeline caused error: {first}"
    exception.args = (msg,) + exception.args[1:]


def raise_first_error(results: Iterable[tuple[Sequence[Any], Any]]) -> None:
    """Raise the first error among (args, result) pairs, annotated with its 1-based position."""
    for i, (args, r) in enumerate(results):
        if isinstance(r, Exception):
            annotate(r, i + 1, args)
            raise r


class _Capture:
    """Stands in for a pipeline while a blocked command method builds its arguments."""

    def __init__(self) -> None:
        self.call: tuple[tuple[Any, ...], dict[str, Any]] | None = None

    def execute_command(self, *args: Any, **options: Any) -> None:
        self.call = args, options


def blocking(method: str, command: Callable[..., Any] | None) -> Callable[..., Any]:
    """Pipeline method `method` (one RedisCluster blocks), for a pipeline class with
    `execute_command` and `_keys(args)`: RedisCluster's error whatever the arguments, unless
    they build a command whose keys are all in one slot; that command is then queued."""
    if command is None or inspect.isgeneratorfunction(command) or inspect.iscoroutinefunction(command):
        command = None  # nothing a pipeline could queue (client_list_iter, the async mget_nonatomic)
    signature = inspect.signature(command) if command is not None else None

    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        if command is None or signature is None:
            raise blocked(method)
        capture = _Capture()
        try:
            signature.bind(self, *args, **kwargs)
            command(capture, *args, **kwargs)
        except Exception:  # noqa: BLE001 - bad arguments, or a method that asks the client (slowlog_get)
            pass  # RedisCluster refuses these calls before looking at the arguments
        if capture.call is None:
            raise blocked(method)
        argv, options = capture.call
        check_blocked(method, (slot_of(k) for k in self._keys(argv)))
        return self.execute_command(*argv, **options)

    call.__name__ = method
    call.__doc__ = getattr(command, "__doc__", None)
    return call


def block_methods(cls: type, commands: type) -> None:
    """Install `blocking` on pipeline class `cls` for each method RedisCluster blocks that `cls`
    does not define itself; `commands` is the redis-py mixin the command methods come from."""
    for method in BLOCKED_METHODS:
        if method not in cls.__dict__:
            setattr(cls, method, blocking(method, getattr(commands, method, None)))
