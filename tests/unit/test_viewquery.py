"""clusterpool.viewquery: which discovery commands to send a node, and what a refusal teaches."""

from __future__ import annotations

import pytest
from redis import exceptions as rx

from clusterpool import errors
from clusterpool.errors import refused
from clusterpool.refreshsteps import drive
from clusterpool.viewquery import DEFAULT, NODES, SHARDS, SLOTS, Queries, Query, view_steps

NAME = "127.0.0.1:7000"
SHARDS_REPLY = [[
    b"slots", [0, 16383],
    b"nodes", [
        [b"id", b"p1", b"port", 7000, b"ip", b"127.0.0.1", b"endpoint", b"127.0.0.1", b"role", b"master",
         b"replication-offset", 10, b"health", b"online"],
        [b"id", b"r1", b"port", 7003, b"ip", b"127.0.0.1", b"endpoint", b"127.0.0.1", b"role", b"replica",
         b"replication-offset", 10, b"health", b"online"],
    ],
]]
SLOTS_REPLY = [[0, 16383, [b"127.0.0.1", 7000, b"p1"], [b"127.0.0.1", 7003, b"r1"]]]
NODES_REPLY = (b"p1 127.0.0.1:7000@17000 myself,master - 0 0 4 connected 0-16383\n"
               b"r1 127.0.0.1:7003@17003 slave p1 0 0 4 connected\n")
NOPERM = rx.NoPermissionError("this user has no permissions to run the 'cluster|shards' command")
UNKNOWN = rx.ResponseError("Unknown subcommand or wrong number of arguments for 'SHARDS'. Try CLUSTER HELP.")


class Node:
    """Answers each command from a table (an exception instance is an error reply) and records rounds."""

    def __init__(self, **answers):
        self.answers = {SHARDS: SHARDS_REPLY, SLOTS: SLOTS_REPLY, NODES: NODES_REPLY}
        self.answers.update({{"shards": SHARDS, "slots": SLOTS, "nodes": NODES}[k]: v for k, v in answers.items()})
        self.rounds: list[tuple[tuple[str, ...], ...]] = []

    def __call__(self, commands):
        self.rounds.append(commands)
        return [self.answers[c] for c in commands]


def ask(node: Node, query: Query = DEFAULT):
    return drive(view_steps(NAME, query), node)


def test_refused_means_denied_by_acl_or_unknown_to_the_server():
    assert refused(NOPERM)
    assert refused(UNKNOWN)
    assert refused(rx.ResponseError("ERR unknown command 'CLUSTER', with args beginning with: 'SHARDS'"))


def test_other_error_replies_are_not_refusals():
    assert not refused(rx.ResponseError("ERR something else"))
    assert not refused(rx.BusyLoadingError("Redis is loading the dataset in memory"))
    assert not refused(rx.ConnectionError("unknown host"))


def test_default_query_asks_shards_and_nodes_in_one_round_trip():
    node = Node()
    view, worked = ask(node)
    assert node.rounds == [(SHARDS, NODES)]
    assert worked == DEFAULT
    assert view.topology.by_name[NAME].health == "online"
    assert view.epochs == {"p1": 4, "r1": 4}


def test_shards_denied_reads_the_map_from_slots():
    node = Node(shards=NOPERM)
    view, worked = ask(node)
    assert node.rounds == [(SHARDS, NODES), (SLOTS,)]
    assert worked == Query(SLOTS, epochs=True)
    assert [n.name for n in view.topology.nodes] == [NAME, "127.0.0.1:7003"]
    assert view.epochs == {"p1": 4, "r1": 4}


def test_shards_unknown_to_an_old_server_reads_the_map_from_slots():
    _, worked = ask(Node(shards=UNKNOWN))
    assert worked.map == SLOTS


def test_nodes_denied_gives_a_view_without_epochs_and_stops_asking_for_them():
    node = Node(nodes=rx.NoPermissionError("no permissions to run the 'cluster|nodes' command"))
    view, worked = ask(node)
    assert view.epochs == {}
    assert len(view.topology.nodes) == 2
    assert worked == Query(SHARDS, epochs=False)


def test_nodes_failing_otherwise_gives_no_epochs_this_time_only():
    view, worked = ask(Node(nodes=rx.ResponseError("ERR some transient trouble")))
    assert view.epochs == {}
    assert worked == DEFAULT


def test_shards_and_nodes_both_denied_still_give_a_map():
    node = Node(shards=NOPERM, nodes=NOPERM)
    view, worked = ask(node)
    assert worked == Query(SLOTS, epochs=False)
    assert view.topology.covered == 16384


def test_a_remembered_query_costs_one_round_trip():
    node = Node(shards=NOPERM, nodes=NOPERM)
    ask(node, Query(SLOTS, epochs=False))
    assert node.rounds == [(SLOTS,)]


def test_a_remembered_slots_query_that_is_now_refused_tries_shards():
    node = Node(slots=NOPERM)
    view, worked = ask(node, Query(SLOTS))
    assert node.rounds == [(SLOTS, NODES), (SHARDS,)]
    assert worked == DEFAULT
    assert view.topology.covered == 16384


def test_both_map_commands_refused_is_a_no_permission_error_naming_both():
    with pytest.raises(rx.NoPermissionError, match="neither CLUSTER SHARDS nor CLUSTER SLOTS"):
        ask(Node(shards=NOPERM, slots=NOPERM))


def test_a_standalone_server_is_not_a_cluster():
    with pytest.raises(errors.NotAClusterError, match="cluster-enabled is off"):
        ask(Node(shards=rx.ResponseError("This instance has cluster support disabled")))


def test_another_error_to_the_map_command_is_raised_as_it_came():
    odd = rx.ResponseError("ERR something odd")
    with pytest.raises(rx.ResponseError, match="something odd"):
        ask(Node(shards=odd))


def test_an_unasked_node_gets_the_default_query():
    assert Queries().for_node(NAME, now=0.0) == DEFAULT


def test_a_refusal_is_remembered_for_that_node_only():
    q = Queries()
    q.learn(NAME, DEFAULT, Query(SLOTS), now=10.0)
    assert q.for_node(NAME, now=11.0) == Query(SLOTS)
    assert q.for_node("127.0.0.1:7001", now=11.0) == DEFAULT


def test_a_refusal_is_tried_again_after_recheck_seconds():
    q = Queries(recheck=60.0)
    q.learn(NAME, DEFAULT, Query(SLOTS), now=10.0)
    assert q.for_node(NAME, now=69.0) == Query(SLOTS)
    assert q.for_node(NAME, now=70.0) == DEFAULT


def test_answering_the_remembered_query_does_not_postpone_the_recheck():
    q = Queries(recheck=60.0)
    q.learn(NAME, DEFAULT, Query(SLOTS), now=10.0)
    q.learn(NAME, Query(SLOTS), Query(SLOTS), now=50.0)
    assert q.for_node(NAME, now=70.0) == DEFAULT


def test_a_node_answering_the_default_again_is_forgotten():
    q = Queries(recheck=60.0)
    q.learn(NAME, DEFAULT, Query(SLOTS), now=10.0)
    q.learn(NAME, DEFAULT, DEFAULT, now=80.0)
    assert len(q) == 0


def test_stale_entries_go_when_something_new_is_learnt():
    q = Queries(recheck=60.0)
    q.learn(NAME, DEFAULT, Query(SLOTS), now=10.0)
    q.learn("127.0.0.1:7001", DEFAULT, Query(SLOTS), now=100.0)
    assert len(q) == 1
