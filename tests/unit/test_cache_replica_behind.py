"""What a replica falling behind its primary does to the client-side cache (NodeBook, no server)."""

from clusterpool.bus import EventBus
from clusterpool.cachestore import CacheStore
from clusterpool.config import Config
from clusterpool.nodebook import NodeBook
from clusterpool.nodestate import NodeState
from clusterpool.topology import Node, Shard, Topology

PRIMARY, REPLICA = Node("h", 1, "primary"), Node("h", 2, "replica")


class Book(NodeBook):
    def __init__(self, **options):
        self.config = Config.build("h", 1, None, options)
        self.topology = Topology((Shard(((0, 16383),), PRIMARY, (REPLICA,)),))
        self.nodes = {n.name: NodeState(n.name, None, 3, 2.0, 0.05) for n in (PRIMARY, REPLICA)}
        self.nodes[REPLICA.name].readonly = True
        self.bus = EventBus()
        self.observer = None
        self.cache = CacheStore(100, 1 << 20)

    def request_refresh(self):
        pass


def cached_from_replica(book: Book) -> None:
    book.cache.finish_one(book.cache.begin(("GET", b"k"), b"k", 1), REPLICA.name, b"v")


def test_a_replica_whose_link_to_its_primary_is_down_loses_its_entries():
    book = Book()
    cached_from_replica(book)
    book.node_info(REPLICA.name, "# Replication\r\nrole:slave\r\nmaster_link_status:down\r\n")
    assert book.cache.stats().entries == 0
    assert book.cache.stats().flushes == {"replica_behind": 1}


def test_a_replica_past_max_replica_lag_loses_its_entries():
    book = Book(max_replica_lag_bytes=100)
    cached_from_replica(book)
    book.node_info(PRIMARY.name, "# Replication\r\nrole:master\r\nmaster_repl_offset:5000\r\n"
                                 "slave0:ip=h,port=2,state=online,offset=1000,lag=0\r\n")
    assert book.cache.stats().entries == 0


def test_a_replica_within_the_bound_keeps_its_entries():
    book = Book(max_replica_lag_bytes=100)
    cached_from_replica(book)
    book.node_info(PRIMARY.name, "# Replication\r\nrole:master\r\nmaster_repl_offset:5000\r\n"
                                 "slave0:ip=h,port=2,state=online,offset=4990,lag=0\r\n")
    assert book.cache.stats().entries == 1
