"""clusterpool.txplan: a transaction's slot rules, framing, EXEC reply handling and what follows
a failed attempt, without a server (the sync and asyncio drivers both rely on these)."""

from __future__ import annotations

import pytest
from redis import exceptions as rx

from clusterpool._redispy import command_text
from clusterpool import policy, txplan
from clusterpool.commands import CommandTable
from clusterpool.errors import CrossSlotCommandError, CrossSlotTransactionError
from clusterpool.policy import Action, Budget, Do, Failure, Kind
from clusterpool.slots import key_slot

TABLE = CommandTable.bundled_with(None)


def other_slot(key: str) -> str:
    return next(f"o{i}" for i in range(100) if key_slot(f"o{i}".encode()) != key_slot(key.encode()))


# ---------------------------------------------------------------- queue or run at once


@pytest.mark.parametrize(("args", "watching", "multi", "expected"), [
    (("SET", "k", 1), False, False, txplan.Mode.QUEUE),
    (("SET", "k", 1), True, False, txplan.Mode.IMMEDIATE),
    (("SET", "k", 1), True, True, txplan.Mode.QUEUE),
    (("UNWATCH",), True, False, txplan.Mode.UNWATCH),
    (("unwatch",), True, False, txplan.Mode.UNWATCH),
    (("UNWATCH",), False, False, txplan.Mode.QUEUE),
    (("UNWATCH",), True, True, txplan.Mode.QUEUE),
])
def test_mode_runs_commands_at_once_only_while_watching_before_multi(args, watching, multi, expected):
    assert txplan.mode(args, watching, multi) is expected


# ---------------------------------------------------------------- slots


def test_command_slot_is_the_slot_of_its_keys():
    assert txplan.command_slot(TABLE, ("MSET", "{t}a", 1, "{t}b", 2)) == key_slot(b"t")


def test_command_slot_of_a_keyless_script_is_none():
    assert txplan.command_slot(TABLE, ("EVAL", "return 1", 0)) is None


def test_command_slot_refuses_a_keyless_command_with_redis_clusters_message():
    with pytest.raises(rx.RedisClusterException) as e:
        txplan.command_slot(TABLE, ("DBSIZE",))
    assert str(e.value) == ("No way to dispatch this command to Redis Cluster. Missing key.\n"
                            "You can execute the command by specifying target nodes.\n"
                            f"Command: {command_text(('DBSIZE',))}")


def test_command_slot_refuses_keys_of_two_slots():
    with pytest.raises(CrossSlotCommandError) as e:
        txplan.command_slot(TABLE, ("MGET", "a", other_slot("a")))
    assert str(e.value) == "MGET - all keys must map to the same key slot"


@pytest.mark.parametrize(("slots", "slot"), [(set(), 5), ({5}, 5), ({5}, None), (set(), None)])
def test_check_slot_accepts_the_transactions_slot(slots, slot):
    txplan.check_slot(slots, slot)


def test_check_slot_refuses_another_slot():
    with pytest.raises(CrossSlotTransactionError) as e:
        txplan.check_slot({5}, 6)
    assert isinstance(e.value, rx.CrossSlotTransactionError)
    assert str(e.value) == "Cannot watch or send commands on different slots"


def test_exec_slot_is_the_one_slot():
    assert txplan.exec_slot({7}, lambda n: pytest.fail("no pick with a slot")) == 7


def test_exec_slot_of_keyless_scripts_is_picked():
    assert txplan.exec_slot(set(), lambda n: n - 1) == 16383


def test_exec_slot_refuses_two_slots_with_redis_clusters_message():
    with pytest.raises(rx.CrossSlotTransactionError) as e:
        txplan.exec_slot({1, 2}, lambda n: 0)
    assert str(e.value) == "All keys involved in a cluster transaction must map to the same slot"


# ---------------------------------------------------------------- order of calls


def test_check_watch_refuses_watch_after_multi():
    txplan.check_watch(False)
    with pytest.raises(rx.RedisError, match="^Cannot issue a WATCH after a MULTI$"):
        txplan.check_watch(True)


def test_check_multi_refuses_nested_multi():
    with pytest.raises(rx.RedisError, match="^Cannot issue nested calls to MULTI$"):
        txplan.check_multi(True, 0)


def test_check_multi_refuses_multi_after_queued_commands():
    txplan.check_multi(False, 0)
    with pytest.raises(rx.RedisError, match="^Commands without an initial WATCH have already been issued$"):
        txplan.check_multi(False, 1)


@pytest.mark.parametrize(("queued", "watching", "slots", "expected"), [
    (0, False, set(), True),
    (0, True, set(), True),
    (0, True, {3}, False),  # a WATCH alone still runs an empty MULTI/EXEC
    (1, False, set(), False),
])
def test_nothing_to_run(queued, watching, slots, expected):
    assert txplan.nothing_to_run(queued, watching, slots) is expected


def test_first_write_finds_the_first_command_that_may_write():
    assert txplan.first_write(TABLE, [("GET", "k"), ("TTL", "k")]) is None
    assert txplan.first_write(TABLE, [("GET", "k"), ("SET", "k", 1), ("DEL", "k")]) == ("SET", "k", 1)


# ---------------------------------------------------------------- framing and replies


def test_body_wraps_the_commands_in_multi_exec():
    assert txplan.body([["SET", "k", 1]]) == [("MULTI",), ("SET", "k", 1), ("EXEC",)]


def test_frame_puts_asking_before_multi():
    body = txplan.body([("SET", "k", 1)])
    assert txplan.frame(body, False) == (body, 1)
    assert txplan.frame(body, True) == ([("ASKING",), *body], 2)


def test_exec_reply_is_execs_reply():
    cmds = txplan.body([("SET", "k", 1)])
    assert txplan.exec_reply(cmds, [b"OK", b"QUEUED", [b"OK"]], 1) == [b"OK"]


def test_exec_reply_none_means_a_watch_fired():
    cmds = txplan.body([("SET", "k", 1)])
    assert txplan.exec_reply(cmds, [b"OK", b"QUEUED", None], 1) is None


def test_execabort_raises_the_queued_error_numbered_by_its_queue_position():
    cmds, first = txplan.frame(txplan.body([("SET", "k", 1), ("INCRBY", "k")]), True)
    err = rx.ResponseError("wrong number of arguments for 'incrby' command")
    with pytest.raises(rx.ResponseError) as e:
        txplan.exec_reply(cmds, [b"OK", b"OK", b"QUEUED", err, rx.ExecAbortError("EXECABORT")], first)
    assert e.value is err
    assert str(err) == "Command # 2 (INCRBY k) of pipeline caused error: wrong number of arguments for 'incrby' command"


def test_execabort_after_moved_raises_the_moved_error_for_the_policy():
    cmds = txplan.body([("SET", "k", 1)])
    moved = rx.MovedError("3999 127.0.0.1:7001")
    with pytest.raises(rx.MovedError) as e:
        txplan.exec_reply(cmds, [b"OK", moved, rx.ExecAbortError("EXECABORT")], 1)
    assert (e.value.slot_id, e.value.host, e.value.port) == (3999, "127.0.0.1", 7001)


def test_an_error_before_the_queued_commands_is_raised_unnumbered():
    cmds, first = txplan.frame(txplan.body([("SET", "k", 1)]), True)
    err = rx.ResponseError("ASKING failed")
    with pytest.raises(rx.ResponseError) as e:
        txplan.exec_reply(cmds, [err, b"OK", b"QUEUED", rx.ExecAbortError("EXECABORT")], first)
    assert str(e.value) == "ASKING failed"


def test_execabort_without_a_queued_error_is_raised():
    cmds = txplan.body([("SET", "k", 1)])
    with pytest.raises(rx.ExecAbortError):
        txplan.exec_reply(cmds, [b"OK", b"QUEUED", rx.ExecAbortError("EXECABORT")], 1)


# ---------------------------------------------------------------- failures and what follows


def test_failure_of_a_redirect_names_its_target():
    f = policy.failure_of(rx.MovedError("3999 127.0.0.1:7001"), "n:1", sent=True)
    assert f == Failure(Kind.MOVED, "n:1", sent=True, target="127.0.0.1:7001")
    f = policy.failure_of(rx.AskError("3999 127.0.0.1:7002"), "n:1", sent=True)
    assert f == Failure(Kind.ASK, "n:1", sent=True, target="127.0.0.1:7002")
    f = policy.failure_of(rx.BusyLoadingError("LOADING"), "n:1", sent=True)
    assert f is not None and f.kind is Kind.LOADING


def test_failure_of_a_users_error_reply_is_none():
    assert policy.failure_of(rx.ResponseError("WRONGTYPE"), "n:1", sent=True) is None


def test_resend_to_follows_redirect_and_fresh_retry():
    f = Failure(Kind.ASK, "n:1", sent=True, target="n:2")
    assert txplan.resend_to(Action(Do.REDIRECT, Budget(), node="n:2", asking=True), f, None, False) == ("n:2", True)
    assert txplan.resend_to(Action(Do.RETRY_FRESH, Budget(), node="n:1"), f, None, False) == ("n:1", False)


@pytest.mark.parametrize("do", [Do.BACKOFF, Do.WAIT_FOR_MAP])
def test_resend_to_after_a_wait_goes_to_the_slots_owner(do):
    f = Failure(Kind.TRYAGAIN, "n:1", sent=True)
    assert txplan.resend_to(Action(do, Budget(), delay=0.1), f, None, False) == ("", False)


def test_resend_to_under_watch_raises_watch_error():
    moved = rx.MovedError("1 127.0.0.1:7001")
    with pytest.raises(rx.WatchError) as e:
        txplan.resend_to(Action(Do.REDIRECT, Budget(), node="n:2"), Failure(Kind.MOVED, "n:1", sent=True), moved, True)
    assert str(e.value) == "the watched slot moved to another node before EXEC; retry the transaction"
    assert e.value.__cause__ is moved
    with pytest.raises(rx.WatchError, match="is being migrated or failed over"):
        txplan.resend_to(Action(Do.REDIRECT, Budget(), node="n:2", asking=True),
                         Failure(Kind.ASK, "n:1", sent=True), None, True)


def test_results_of_a_fired_watch_raise_watch_error():
    with pytest.raises(rx.WatchError, match=r"^Watched variable changed\.$"):
        txplan.results(None, [("SET", "k", 1)], True)


def test_results_keep_errors_in_place_or_raise_the_first():
    err = rx.ResponseError("WRONGTYPE")
    assert txplan.results([b"OK", err], [("SET", "k", 1), ("LPUSH", "k", "x")], False) == [b"OK", err]
    with pytest.raises(rx.ResponseError) as e:
        txplan.results([b"OK", err], [("SET", "k", 1), ("LPUSH", "k", "x")], True)
    assert str(e.value) == "Command # 2 (LPUSH k x) of pipeline caused error: WRONGTYPE"


def test_results_of_the_wrong_length_raise_invalid_pipeline_stack():
    with pytest.raises(rx.InvalidPipelineStack):
        txplan.results([b"OK"], [("SET", "k", 1), ("GET", "k")], True)
