"""The command specs shipped with the package (command_specs.jsonl) and the lazy COMMAND INFO lookup."""

from __future__ import annotations

import json

import pytest
from redis.exceptions import NoPermissionError

from clusterpool.commands import (
    ALL_NODES,
    ALL_SHARDS,
    SPECS_FILE,
    UNKNOWN,
    CommandTable,
    bundled_entries,
    bundled_source,
    parse_command_entry,
)

GET_ENTRY = ["get", 2, ["readonly", "fast"], 1, 1, 1, [], [],
             [{"begin_search": {"spec": {"index": 1}, "type": "index"},
               "find_keys": {"spec": {"keystep": 1, "lastkey": 0, "limit": 0}, "type": "range"},
               "flags": ["RO"]}], []]


class CountingFetch:
    """A fetch function with canned answers that records what it was asked."""

    def __init__(self, answers=None, error=None):
        self.answers = answers or {}
        self.error = error
        self.asked: list[str] = []

    def __call__(self, name):
        self.asked.append(name)
        if self.error is not None:
            raise self.error
        return self.answers.get(name)


@pytest.fixture
def bundled():
    return CommandTable.bundled_with()


# ---------------------------------------------------------------- the file


def test_bundle_comes_from_redis_7_0():
    assert bundled_source().startswith("COMMAND of redis-server 7.0")


def test_every_bundled_line_parses_to_the_command_it_is_indexed_under():
    for name, line in bundled_entries().items():
        entry = json.loads(line)
        assert entry[0] == name
        assert parse_command_entry(entry)[0].name == name


def test_bundle_has_one_line_per_command():
    with open(SPECS_FILE, encoding="utf-8") as f:
        lines = f.read().splitlines()[1:]
    assert len(lines) == len(bundled_entries()) > 200


@pytest.mark.parametrize("args, keys", [
    (("GET", "k"), ["k"]),
    (("SET", "k", "v", "EX", 5), ["k"]),
    (("MSET", "a", 1, "b", 2), ["a", "b"]),
    (("EVAL", "return 1", 2, "a", "b", "x"), ["a", "b"]),
    (("XREAD", "COUNT", 2, "STREAMS", "s1", "s2", "0", "0"), ["s1", "s2"]),
    (("ZUNIONSTORE", "dst", 2, "a", "b"), ["dst", "a", "b"]),
    (("OBJECT", "ENCODING", "k"), ["k"]),
    (("CONFIG", "GET", "maxmemory"), []),
])
def test_bundled_key_positions(bundled, args, keys):
    assert bundled.keys(args) == keys


def test_bundled_flags_and_policies(bundled):
    assert bundled.get("get").readonly and not bundled.get("set").readonly
    assert bundled.get("dbsize").request_policy == ALL_SHARDS
    assert bundled.get("config|set").request_policy == ALL_NODES
    assert bundled.get("object|encoding").readonly


# ---------------------------------------------------------------- lazy lookup


def test_bundled_command_is_not_asked_for():
    fetch = CountingFetch()
    table = CommandTable.bundled_with(fetch)
    assert table.get("get") is not None
    assert fetch.asked == []


def test_command_missing_from_bundle_is_asked_for_once():
    fetch = CountingFetch({"newcmd": ["newcmd"] + GET_ENTRY[1:]})
    table = CommandTable(bundled={}, fetch=fetch)
    info, _ = table.resolve(("NEWCMD", "k"))
    table.resolve(("NEWCMD", "k2"))
    assert (info.name, info.readonly, info.keys(["newcmd", "k"])) == ("newcmd", True, ["k"])
    assert fetch.asked == ["newcmd"]


def test_command_the_server_does_not_know_is_asked_for_once():
    fetch = CountingFetch()
    table = CommandTable(bundled={}, fetch=fetch)
    assert table.resolve(("NOSUCH", "x"))[0] is UNKNOWN
    assert table.resolve(("NOSUCH", "y"))[0] is UNKNOWN
    assert fetch.asked == ["nosuch"]


def test_failed_lookup_is_tried_again_next_time():
    fetch = CountingFetch(error=ConnectionError("down"))
    table = CommandTable(bundled={}, fetch=fetch)
    assert table.get("newcmd") is None
    assert table.get("newcmd") is None
    assert fetch.asked == ["newcmd", "newcmd"]


def test_lookup_refused_by_the_server_is_not_asked_again():
    fetch = CountingFetch(error=NoPermissionError("this user has no permissions to run the 'command|info' command"))
    table = CommandTable(bundled={}, fetch=fetch)
    assert table.resolve(("NEWCMD", "x"))[0] is UNKNOWN
    assert table.resolve(("NEWCMD", "y"))[0] is UNKNOWN
    assert fetch.asked == ["newcmd"]


def test_subcommand_newer_than_the_bundle_asks_for_its_container_once():
    line = bundled_entries()["client"]
    live = json.loads(line)
    live[9].append(["client|no-touch", 3, ["noscript", "loading", "stale"], 0, 0, 0, [], [], [], []])
    fetch = CountingFetch({"client": live})
    table = CommandTable.bundled_with(fetch)
    assert table.get("client|no-touch").name == "client|no-touch"
    assert table.get("client|no-touch") is not None
    assert table.get("client|list") is not None
    assert fetch.asked == ["client"]
