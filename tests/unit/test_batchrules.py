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
