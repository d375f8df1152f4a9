"""batchrules: RedisCluster's pipeline refusals and error annotation, without a server."""

from __future__ import annotations

import pytest
from redis import exceptions as rx

from clusterpool._redispy import command_text
from clusterpool import CrossSlotError, errors
from clusterpool import batchrules as br


def test_annotation_numbers_and_quotes_the_command():
    e = rx.ResponseError("WRONGTYPE bad")
    br.annotate(e, 2, ("LPUSH", b"k", 1, 1.5))
    assert e.args == ("Command # 2 (LPUSH k 1 1.5) of pipeline caused error: WRONGTYPE bad",)


def test_annotation_shortens_long_commands_as_textwrap_does():
    e = rx.ResponseError("boom")
    br.annotate(e, 1, ("SET", "k", "x" * 500))  # a word that does not fit in 100 characters is dropped
    assert str(e) == "Command # 1 (SET k...) of pipeline caused error: boom"
    e = rx.ResponseError("boom")
    br.annotate(e, 1, ("MSET", *["key"] * 40))
    inner = str(e).split("(", 1)[1].rsplit(") of pipeline", 1)[0]
    assert len(inner) <= 100 and inner.endswith(" key...")


def test_annotation_keeps_further_arguments_and_the_object():
    e = rx.ResponseError("a", "b")
    br.annotate(e, 1, ("GET", "k"))
    assert e.args[1:] == ("b",)


def test_raise_first_error_raises_the_stored_exception():
    first, second = rx.ResponseError("one"), rx.ResponseError("two")
    with pytest.raises(rx.ResponseError) as info:
        br.raise_first_error([(("GET", "a"), b"x"), (("INCR", "b"), first), (("INCR", "c"), second)])
    assert info.value is first
    assert str(first) == "Command # 2 (INCR b) of pipeline caused error: one"
    assert str(second) == "two"


def test_raise_first_error_without_errors_returns():
    br.raise_first_error([(("GET", "a"), None), (("SET", "a", 1), True)])


def test_cross_slot_errors_are_both_families():
    for err in (errors.CrossSlotTransactionError(br.TRANSACTION_CROSS_SLOT), br.keys_cross_slot(("MGET", "a", "b")),
                br.multi_key_delete("DEL"), br.blocked_cross_slot("mget")):
        assert isinstance(err, CrossSlotError) and isinstance(err, rx.RedisClusterException)
    assert isinstance(errors.CrossSlotTransactionError("x"), rx.CrossSlotTransactionError)


def test_messages_are_redis_clusters():
    assert str(br.blocked("ping")) == (
        "ERROR: Calling pipelined function ping is blocked when running redis in cluster mode...")
    assert str(br.multi_key_delete("UNLINK")) == "unlinking multiple keys is not implemented in pipeline command"
    assert str(br.keys_cross_slot(("DEL", "a", "b"))) == "DEL - all keys must map to the same key slot"
    assert str(br.missing_key(["DBSIZE"])).endswith(f"Command: {command_text(['DBSIZE'])}")


def test_blocked_methods_are_redis_pys_names():
    assert {"mget", "ping", "client_getname", "mset_nonatomic", "script_load"} <= set(br.BLOCKED_METHODS)
    assert "get" not in br.BLOCKED_METHODS


def test_annotation_hides_the_arguments_of_commands_that_carry_passwords():
    for args, shown in [(("AUTH", "user", "secret"), "AUTH <REDACTED>"),
                        (("config", "set", "requirepass", "secret"), "config set <REDACTED>"),
                        (("HELLO", 3, "AUTH", "u", "secret"), "HELLO <REDACTED>"),
                        (("AUTH",), "AUTH"), (("CONFIG", "GET", "x"), "CONFIG GET x")]:
        e = rx.ResponseError("boom")
        br.annotate(e, 1, args)
        assert str(e) == f"Command # 1 ({shown}) of pipeline caused error: boom"


def test_annotation_of_an_error_without_arguments_names_its_class():
    e = rx.ConnectionError()
    br.annotate(e, 4, ("GET", "k"))
    assert e.args == ("Command # 4 (GET k) of pipeline caused error: ConnectionError",)


def test_check_blocked_allows_only_keys_of_one_slot():
    br.check_blocked("mget", [7, 7])
    with pytest.raises(rx.RedisClusterException, match="function mget is blocked") as info:
        br.check_blocked("mget", [])
    assert not isinstance(info.value, CrossSlotError)
    with pytest.raises(CrossSlotError, match="function mget is blocked"):
        br.check_blocked("mget", [1, 2])


def test_by_slot_groups_keys_in_first_seen_order():
    keys = ["a", "{a}x", "b", b"{a}y", "{b}z"]
    assert list(br.by_slot(keys).values()) == [["a", "{a}x", b"{a}y"], ["b", "{b}z"]]
    assert br.by_slot([]) == {}


def test_summed_adds_the_counts_or_gives_the_first_error():
    assert br.summed([1, b"2", 0]) == 3
    first = rx.ResponseError("x")
    assert br.summed([1, first, rx.ResponseError("y")]) is first


class _Pipe:
    """A pipeline as `blocking` needs one: queued commands, keys from argument 1 on."""

    def __init__(self) -> None:
        self.queued: list[tuple[tuple, dict]] = []

    def execute_command(self, *args, **options):
        self.queued.append((args, options))
        return self

    def _keys(self, args):
        return list(args[1:])

    def mget(self, keys, *args):
        return self.execute_command("MGET", *([keys] if isinstance(keys, str) else keys), *args)

    def slowlog_get(self, num=None):
        return self.execute_command("SLOWLOG GET", self.get_connection_kwargs())  # type: ignore[attr-defined]


def test_blocking_queues_a_one_slot_call_and_refuses_the_rest():
    mget = br.blocking("mget", _Pipe.mget)
    pipe = _Pipe()
    assert mget(pipe, "{t}a", "{t}b") is pipe
    assert pipe.queued == [(("MGET", "{t}a", "{t}b"), {})]
    for args in [(), ("a", "b")]:  # no arguments, keys of two slots
        with pytest.raises(rx.RedisClusterException, match="function mget is blocked"):
            mget(pipe, *args)
    assert len(pipe.queued) == 1


def test_blocking_refuses_methods_that_cannot_build_their_command():
    for method, command in [("slowlog_get", _Pipe.slowlog_get), ("bless_scan", None)]:
        with pytest.raises(rx.RedisClusterException, match=f"function {method} is blocked"):
            br.blocking(method, command)(_Pipe())


def test_block_methods_keeps_what_the_class_defines():
    class Pipe(_Pipe):
        def ping(self):
            return "mine"

    br.block_methods(Pipe, _Pipe)
    assert Pipe().ping() == "mine"
    assert "mget" in Pipe.__dict__ and "client_list_iter" in Pipe.__dict__
