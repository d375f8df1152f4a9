"""naming.plan: what CLIENT SETNAME / SETINFO change, without a server."""

from __future__ import annotations

import pytest
from redis.driver_info import DriverInfo

from clusterpool.errors import ConfigurationError
from clusterpool.naming import option_of, plan
from clusterpool.topology import PRIMARY, Node

A, B, C = (Node("127.0.0.1", p, PRIMARY) for p in (7000, 7001, 7002))


def test_setname_is_the_client_name_keyword():
    assert option_of(["CLIENT", "SETNAME", "x"], {}) == {"client_name": "x"}


def test_setinfo_lib_name_keeps_the_current_lib_version():
    got = option_of([b"CLIENT", b"SETINFO", b"lib-name", b"mylib"], {"driver_info": DriverInfo(lib_version="9")})
    assert got["driver_info"].name == "mylib" and got["driver_info"].lib_version == "9"


def test_setinfo_lib_ver_keeps_the_current_lib_name():
    got = option_of(["CLIENT", "SETINFO", "LIB-VER", "2.0"], {"driver_info": DriverInfo(name="mine")})
    assert got["driver_info"].name == "mine" and got["driver_info"].lib_version == "2.0"


@pytest.mark.parametrize("argv", [["CLIENT", "SETNAME"], ["CLIENT", "SETNAME", "a", "b"], ["CLIENT", "SETINFO", "LIB-NAME"]])
def test_a_wrong_argument_count_is_refused_before_anything_is_sent(argv):
    with pytest.raises(ConfigurationError):
        option_of(argv, {})


def test_without_targets_every_node_and_nodes_to_come_take_the_name_and_the_default_node_gets_the_command():
    p = plan(["CLIENT", "SETNAME", "x"], None, A, {"decode_responses": True},
             {B.name: {"client_name": "old", "driver_info": "kept"}}, [A.name, B.name])
    assert p.conn_kwargs == {"decode_responses": True, "client_name": "x"}
    assert p.node_kwargs == {B.name: {"driver_info": "kept"}}  # the node's own name gives way
    assert p.reset == (A.name, B.name)
    assert p.send_to == (A,) and p.probe == A


def test_with_targets_only_those_nodes_take_the_name_and_each_gets_the_command_once():
    p = plan(["CLIENT", "SETNAME", "x"], [B, C, B], A, {}, {C.name: {"driver_info": "kept"}}, [A.name])
    assert p.conn_kwargs == {}
    assert p.node_kwargs == {B.name: {"client_name": "x"}, C.name: {"driver_info": "kept", "client_name": "x"}}
    assert p.reset == (B.name, C.name)
    assert p.send_to == (B, C) and p.probe == B


def test_an_empty_target_list_is_refused():
    with pytest.raises(ConfigurationError):
        plan(["CLIENT", "SETNAME", "x"], [], A, {}, {}, [])


def test_the_keyword_sets_given_are_not_changed():
    conn: dict = {"client_name": "a"}
    per_node: dict = {B.name: {"client_name": "b"}}
    plan(["CLIENT", "SETNAME", "x"], [B], A, conn, per_node, [])
    plan(["CLIENT", "SETNAME", "x"], None, A, conn, per_node, [])
    assert conn == {"client_name": "a"} and per_node == {B.name: {"client_name": "b"}}
