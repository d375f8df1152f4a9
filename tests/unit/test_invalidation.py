"""Invalidation links as values: which connection is tracked by a live link, and what a message says."""

from clusterpool.invalidation import CHANNEL, FLUSH, LinkBook, invalidated, tracking_command


def test_a_connection_set_up_for_the_live_link_is_tracked():
    book = LinkBook()
    link = book.up("n1", 42)
    assert book.redirect_for("n1") == link
    assert book.tracked("n1", link.gen)
    assert tracking_command(42) == ("CLIENT", "TRACKING", "ON", "REDIRECT", 42)


def test_a_connection_of_an_older_link_is_not_tracked_after_the_link_comes_back():
    book = LinkBook()
    old = book.up("n1", 42)
    assert book.down("n1")
    assert not book.tracked("n1", old.gen) and book.redirect_for("n1") is None
    new = book.up("n1", 43)
    assert not book.tracked("n1", old.gen) and book.tracked("n1", new.gen)


def test_an_untracked_connection_or_unknown_node_is_never_tracked():
    book = LinkBook()
    book.up("n1", 1)
    assert not book.tracked("n1", None)
    assert not book.tracked("n2", 1)


def test_down_twice_reports_the_link_was_up_only_once():
    book = LinkBook()
    book.up("n1", 1)
    assert book.down("n1") and not book.down("n1")
    book.forget("n1")
    assert "n1" not in book.links


def test_an_invalidation_message_names_its_keys():
    assert invalidated([b"message", CHANNEL, [b"a", b"b"]]) == [b"a", b"b"]
    assert invalidated(["message", CHANNEL.decode(), ["a"]]) == [b"a"]


def test_a_message_without_keys_means_every_key():
    assert invalidated([b"message", CHANNEL, None]) is FLUSH


def test_other_messages_are_not_invalidations():
    assert invalidated([b"subscribe", CHANNEL, 1]) is None
    assert invalidated([b"pong", b""]) is None
    assert invalidated(b"OK") is None
