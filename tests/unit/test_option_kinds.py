"""A value of the wrong kind fails in either client's constructor with a ConfigurationError naming
the option (clusterpool.optionkinds.check_types), and a misspelt name suggests the near one. No server:
the constructors never touch the network."""

from __future__ import annotations

import pytest

from clusterpool import ClusterClient, ConfigurationError
from clusterpool.asyncio import ClusterClient as AsyncClusterClient
from clusterpool.optionkinds import check_types, port_number, unknown_options

CLIENTS = [pytest.param(ClusterClient, id="sync"), pytest.param(AsyncClusterClient, id="asyncio")]

BAD_OPTIONS = [
    ("pool_timeout", "x"),
    ("socket_timeout", "abc"),
    ("socket_connect_timeout", "2s"),
    ("retry_timeout", "soon"),
    ("refresh_interval", [30]),
    ("health_interval", True),
    ("max_connections", "50"),
    ("max_connections", 2.5),
    ("failure_threshold", "x"),
    ("min_idle", "1"),
    ("ssl", "yes"),
    ("replica_fallback", "false"),
    ("retry", 3),
    ("command_hook", "print"),
    ("address_map", {"a": "b"}),
    ("read_from", "replicas-please"),
    ("read_from", 3),
    ("socket_timeout", 0),
    ("pool_timeout", -1),
    ("failure_threshold", 0),
]


@pytest.mark.parametrize("client_class", CLIENTS)
@pytest.mark.parametrize("name,value", BAD_OPTIONS, ids=[f"{n}={v!r}" for n, v in BAD_OPTIONS])
def test_a_bad_option_value_is_a_configuration_error_naming_it(client_class, name, value):
    with pytest.raises(ConfigurationError, match=name):
        client_class("127.0.0.1", 7000, **{name: value})


@pytest.mark.parametrize("client_class", CLIENTS)
@pytest.mark.parametrize("port", ["abc", -1, 70000, None, 7000.5, True])
def test_a_bad_port_is_a_configuration_error_naming_the_port(client_class, port):
    with pytest.raises(ConfigurationError, match="port"):
        client_class("127.0.0.1", port)


@pytest.mark.parametrize("client_class", CLIENTS)
@pytest.mark.parametrize("node", [("127.0.0.1", "abc"), {"host": "127.0.0.1", "port": "x"}, "127.0.0.1:99999"])
def test_a_bad_startup_node_port_names_the_node(client_class, node):
    with pytest.raises(ConfigurationError, match="startup node"):
        client_class(startup_nodes=[node])


@pytest.mark.parametrize("client_class", CLIENTS)
def test_a_port_given_as_digits_is_accepted_as_redis_py_does(client_class):
    client = client_class("127.0.0.1", "7000")  # the constructor opens nothing: no close needed
    assert client.config.startup_nodes == (("127.0.0.1", 7000),)


@pytest.mark.parametrize("client_class", CLIENTS)
def test_a_misspelt_option_suggests_the_near_one(client_class):
    with pytest.raises(ConfigurationError, match=r"socket_timout \(did you mean socket_timeout\?\)"):
        client_class("127.0.0.1", 7000, socket_timout=1)


@pytest.mark.parametrize("client_class", CLIENTS)
def test_an_unknown_option_far_from_any_is_named_without_a_guess(client_class):
    with pytest.raises(ConfigurationError, match="unknown option") as e:
        client_class("127.0.0.1", 7000, zzz_quux=1)
    assert "zzz_quux" in str(e.value) and "did you mean" not in str(e.value)


def test_none_and_numbers_of_either_kind_pass():
    check_types({"pool_timeout": None, "socket_timeout": 2, "refresh_interval": 0.5, "max_connections": 8,
                 "ssl": False, "command_hook": print})


def test_unknown_options_lists_each_name_with_its_suggestion():
    text = unknown_options({"max_conections", "refresh_intervl"}, {"max_connections", "refresh_interval"})
    assert "max_conections (did you mean max_connections?)" in text
    assert "refresh_intervl (did you mean refresh_interval?)" in text


def test_port_number_takes_digit_strings_and_ints():
    assert port_number("7000", "port") == 7000
    assert port_number(6379, "port") == 6379
