"""clusterpool.commands: CommandTable from a Redis 7 style COMMAND reply, key extraction, policies."""

from __future__ import annotations

import threading

import pytest

from clusterpool.commands import (
    ALL_SHARDS,
    DEFAULT,
    MULTI_SHARD,
    UNKNOWN,
    CommandTable,
    KeySpec,
    parse_command_entry,
)


def index(i):
    return {b"type": b"index", b"spec": {b"index": i}}


def keyword(kw, startfrom):
    return {b"type": b"keyword", b"spec": {b"keyword": kw, b"startfrom": startfrom}}


def rng(lastkey, keystep=1, limit=0):
    return {b"type": b"range", b"spec": {b"lastkey": lastkey, b"keystep": keystep, b"limit": limit}}


def keynum(keynumidx, firstkey, keystep):
    return {b"type": b"keynum", b"spec": {b"keynumidx": keynumidx, b"firstkey": firstkey, b"keystep": keystep}}


def spec(begin, find, flags=(b"RO",)):
    return {b"flags": list(flags), b"begin_search": begin, b"find_keys": find}


GET = [b"get", 2, [b"readonly", b"fast"], 1, 1, 1, [b"@read"], [],
       [{b"flags": [b"RO"], b"begin_search": {b"type": b"index", b"spec": {b"index": 1}},
         b"find_keys": {b"type": b"range", b"spec": {b"lastkey": 0, b"keystep": 1, b"limit": 0}}}], []]
SET = [b"set", -3, [b"write", b"denyoom"], 1, 1, 1, [b"@write"], [], [spec(index(1), rng(0), (b"RW",))], []]
MGET = [b"mget", -2, [b"readonly", b"fast"], 1, -1, 1, [b"@read"], [b"request_policy:multi_shard"],
        [spec(index(1), rng(-1))], []]
EVAL = [b"eval", -3, [b"noscript", b"movablekeys"], 0, 0, 0, [b"@scripting"], [],
        [spec(index(2), keynum(0, 1, 1), (b"RW", b"ACCESS", b"UPDATE"))], []]
XREAD = [b"xread", -4, [b"readonly", b"blocking", b"movablekeys"], 0, 0, 0, [b"@read"], [],
         [spec(keyword(b"STREAMS", 1), rng(-1, 1, 2))], []]
ZUNIONSTORE = [b"zunionstore", -4, [b"write", b"denyoom", b"movablekeys"], 1, 1, 1, [b"@write"], [],
               [spec(index(1), rng(0), (b"OW",)), spec(index(2), keynum(0, 1, 1))], []]
MIGRATE = [b"migrate", -6, [b"write", b"movablekeys"], 3, 3, 1, [b"@write"], [b"nondeterministic_output"],
           [spec(index(3), rng(0), (b"RW", b"ACCESS", b"DELETE")),
            spec(keyword(b"KEYS", -2), rng(-1), (b"RW", b"ACCESS", b"DELETE", b"INCOMPLETE"))], []]
DBSIZE = [b"dbsize", 1, [b"readonly", b"fast"], 0, 0, 0, [b"@keyspace"],
          [b"request_policy:all_shards", b"response_policy:agg_sum"], [], []]
XINFO = [b"xinfo", -2, [], 0, 0, 0, [b"@slow"], [], [],
         [[b"xinfo|stream", -3, [b"readonly"], 2, 2, 1, [], [], [spec(index(2), rng(0))], []]]]
OLD_INCR = [b"incr", 2, [b"write", b"denyoom", b"fast"], 1, 1, 1, [b"@write"], []]  # pre-7.0, len 8
OLD_MGET = [b"mget", -2, [b"readonly", b"fast"], 1, -1, 1, [b"@read"]]  # pre-7.0 (6.x), len 7
OLD_MSET = [b"mset", -3, [b"write", b"denyoom"], 1, -1, 2, [b"@write"]]
PING = [b"ping", -1, [b"fast"], 0, 0, 0, [b"@connection"], [b"request_policy:all_shards", b"response_policy:all_succeeded"], [], []]

REPLY = [GET, SET, MGET, EVAL, XREAD, ZUNIONSTORE, MIGRATE, DBSIZE, XINFO, PING]


@pytest.fixture
def table():
    return CommandTable.from_reply(REPLY)


@pytest.fixture
def old_table():
    return CommandTable.from_reply([OLD_INCR, OLD_MGET, OLD_MSET])


# ---------------------------------------------------------------- key extraction


def test_get_key(table):
    assert table.keys(("GET", "k")) == ["k"]


def test_get_single_key_index_is_1(table):
    assert table.get("get").single_key == 1


def test_mget_has_no_single_key(table):
    assert table.get("mget").single_key == 0


def test_mget_keys_are_all_args(table):
    assert table.keys(("MGET", "a", "b", "c")) == ["a", "b", "c"]


def test_set_key_ignores_value_and_options(table):
    assert table.keys(("SET", "k", "v", "EX", 10)) == ["k"]


def test_eval_keys_from_numkeys(table):
    assert table.keys(("EVAL", "return 1", 2, "k1", "k2", "arg")) == ["k1", "k2"]


def test_eval_numkeys_as_string(table):
    assert table.keys(("EVAL", "return 1", "2", "k1", "k2", "arg")) == ["k1", "k2"]


def test_eval_zero_keys(table):
    assert table.keys(("EVAL", "return 1", 0, "arg")) == []


def test_eval_missing_numkeys_gives_no_keys(table):
    assert table.keys(("EVAL", "return 1")) == []


def test_eval_non_numeric_numkeys_gives_no_keys(table):
    assert table.keys(("EVAL", "return 1", "x", "k")) == []


def test_eval_negative_numkeys_gives_no_keys(table):
    assert table.keys(("EVAL", "s", -5, "a", "b", "c", "d", "e")) == []


def test_eval_single_key_is_0(table):
    assert table.get("eval").single_key == 0


def test_xread_keys_are_first_half_after_streams(table):
    assert table.keys(("XREAD", "STREAMS", "a", "b", "0", "0")) == ["a", "b"]


def test_xread_with_count_and_block(table):
    assert table.keys(("XREAD", "COUNT", 10, "BLOCK", 5, "STREAMS", "s1", "$")) == ["s1"]


def test_xread_keyword_is_case_insensitive(table):
    assert table.keys(("xread", b"streams", b"a", b"0")) == [b"a"]


def test_xread_without_streams_keyword_gives_no_keys(table):
    assert table.keys(("XREAD", "COUNT", 1)) == []


def test_xread_streams_as_last_argument_gives_no_keys(table):
    assert table.keys(("XREAD", "STREAMS")) == []


def test_zunionstore_keys_are_destination_and_sources(table):
    assert table.keys(("ZUNIONSTORE", "dst", 2, "a", "b")) == ["dst", "a", "b"]


def test_zunionstore_ignores_weights(table):
    assert table.keys(("ZUNIONSTORE", "dst", 2, "a", "b", "WEIGHTS", 1, 2)) == ["dst", "a", "b"]


def test_migrate_single_key_form(table):
    assert table.keys(("MIGRATE", "host", 6379, "k", 0, 5000)) == ["k"]


def test_migrate_keys_form(table):
    assert table.keys(("MIGRATE", "host", 6379, "", 0, 5000, "KEYS", "k1", "k2")) == ["k1", "k2"]


def test_migrate_keys_form_finds_keys_after_keyword(table):
    keys = table.keys(("MIGRATE", "host", 6379, "", 0, 5000, "KEYS", "k1", "k2"))
    assert keys[-2:] == ["k1", "k2"]


def test_dbsize_has_no_keys(table):
    assert table.keys(("DBSIZE",)) == []


def test_pre7_entry_uses_first_last_step(old_table):
    assert old_table.keys(("INCR", "k")) == ["k"]
    assert old_table.get("incr").single_key == 1


def test_pre7_entry_last_minus_one(old_table):
    assert old_table.keys(("MGET", "a", "b", "c")) == ["a", "b", "c"]


def test_pre7_entry_step_two(old_table):
    assert old_table.keys(("MSET", "a", 1, "b", 2)) == ["a", "b"]


def test_pre7_entry_flags(old_table):
    assert old_table.get("incr").write and not old_table.get("incr").readonly
    assert old_table.get("mget").readonly


def test_keyspec_index_past_argv_gives_no_keys():
    assert KeySpec("index", index=3).keys(["CMD", "a"]) == []


def test_keyspec_unknown_begin_gives_no_keys():
    assert KeySpec("unknown").keys(["CMD", "a"]) == []


# ---------------------------------------------------------------- flags and policies


def test_get_is_readonly(table):
    assert table.get("get").readonly and not table.get("get").write


def test_set_is_write_not_readonly(table):
    assert table.get("set").write and not table.get("set").readonly


def test_mget_is_readonly(table):
    assert table.get("mget").readonly


def test_eval_is_not_readonly(table):
    info = table.get("eval")
    assert not info.readonly and not info.write
    assert "movablekeys" in info.flags


def test_dbsize_request_policy_all_shards_agg_sum(table):
    info = table.get("dbsize")
    assert info.request_policy == ALL_SHARDS
    assert info.response_policy == "agg_sum"


def test_dbsize_override_applies_without_tips():
    t = CommandTable.from_reply([[b"dbsize", 1, [b"readonly"], 0, 0, 0, [], [], [], []]])
    assert t.get("dbsize").request_policy == ALL_SHARDS
    assert t.get("dbsize").response_policy == "agg_sum"


def test_keyless_command_without_tips_is_default():
    t = CommandTable.from_reply([[b"time", 1, [b"fast"], 0, 0, 0, [], [], [], []]])
    assert t.get("time").request_policy == DEFAULT


def test_mget_request_policy_multi_shard(table):
    assert table.get("mget").request_policy == MULTI_SHARD


def test_get_request_policy_key(table):
    assert table.get("get").request_policy == "key"


def test_ping_override(table):
    assert table.get("ping").request_policy == ALL_SHARDS
    assert table.get("ping").response_policy == "all_succeeded"


# ---------------------------------------------------------------- resolve


def test_resolve_container_subcommand_in_first_arg(table):
    info, argv = table.resolve(("XINFO STREAM", "s"))
    assert info.name == "xinfo|stream"
    assert argv == ["XINFO", "STREAM", "s"]
    assert info.keys(argv) == ["s"]


def test_resolve_container_subcommand_in_first_arg_cached(table):
    table.resolve(("XINFO STREAM", "s"))
    info, argv = table.resolve(("XINFO STREAM", "t"))
    assert info.name == "xinfo|stream"
    assert argv == ["XINFO", "STREAM", "t"]
    assert table.keys(("XINFO STREAM", "u")) == ["u"]


def test_resolve_container_subcommand_as_separate_args(table):
    info, argv = table.resolve(("xinfo", "stream", "s"))
    assert info.name == "xinfo|stream"
    assert argv == ["xinfo", "stream", "s"]
    assert info.keys(argv) == ["s"]


def test_resolve_container_twice_as_separate_args(table):
    table.resolve(("xinfo", "stream", "s"))
    assert table.keys(("xinfo", "stream", "t")) == ["t"]


def test_resolve_container_without_subcommand_then_with(table):
    info, _ = table.resolve(("XINFO",))
    assert info.name == "xinfo"
    assert info.has_subcommands
    info, _ = table.resolve(("XINFO", "STREAM", "s"))
    assert info.name == "xinfo|stream"


def test_resolve_bytes_container_subcommand(table):
    info, argv = table.resolve((b"XINFO", b"STREAM", b"s"))
    assert info.name == "xinfo|stream"
    assert info.keys(argv) == [b"s"]


def test_subcommand_flags(table):
    sub = table.get("xinfo|stream")
    assert sub.readonly
    assert sub.single_key == 2


def test_container_has_subcommands(table):
    assert table.get("xinfo").has_subcommands
    assert not table.get("get").has_subcommands


@pytest.mark.parametrize("head", ["get", "GET", "Get", b"GET", b"get"])
def test_resolve_is_case_insensitive(table, head):
    info, argv = table.resolve((head, "k"))
    assert info.name == "get"
    assert argv == [head, "k"]
    assert table.keys((head, "k")) == ["k"]


def test_get_and_contains_are_case_insensitive(table):
    assert table.get("MGET") is table.get("mget")
    assert "GET" in table and "get" in table
    assert "nosuch" not in table


def test_unknown_command_resolves_to_info_without_keys(table):
    info, argv = table.resolve(("NOSUCH", "a", "b"))
    assert info is UNKNOWN
    assert argv == ["NOSUCH", "a", "b"]
    assert info.keys(argv) == []
    assert table.keys(("NOSUCH", "a")) == []


def test_unknown_command_policy_is_default(table):
    info, _ = table.resolve(("NOSUCH",))
    assert info.request_policy == DEFAULT
    assert not info.readonly


def test_table_length_counts_every_command(table):
    assert len(table) == len(REPLY)


def test_lookup_parses_only_on_first_use(table):
    first = table.get("get")
    assert table.get("get") is first


class _BlockingEntry(list):
    """A COMMAND entry whose parsing (reading its flags) blocks until released."""

    def __init__(self, entry, entered, release):
        super().__init__(entry)
        self.entered, self.release = entered, release

    def __getitem__(self, i):
        if i == 2 and not self.entered.is_set():  # only the first parse blocks
            self.entered.set()
            assert self.release.wait(10)
        return super().__getitem__(i)


def test_concurrent_first_lookup_finds_command():
    entered, release = threading.Event(), threading.Event()
    table = CommandTable.from_reply([_BlockingEntry(GET, entered, release)])
    first: list = []
    t = threading.Thread(target=lambda: first.append(table.get("get")))
    t.start()
    try:
        assert entered.wait(10)
        second = table.resolve(("GET", "k"))[0]
    finally:
        release.set()
        t.join(10)
    assert first[0].name == "get"
    assert second.name == "get"


def test_parse_command_entry_returns_container_then_subcommands():
    infos = parse_command_entry(XINFO)
    assert [i.name for i in infos] == ["xinfo", "xinfo|stream"]


def test_fast_lookup_after_resolve(table):
    assert table.resolved.get("GET") is None
    table.resolve(("GET", "k"))
    info, shift = table.resolved.get("GET")
    assert info.name == "get" and shift == 0
