"""Both CRC16 implementations in slots.py (binascii on the hot path, crcmod as reference)
agree with the server's CLUSTER KEYSLOT."""

from __future__ import annotations

import random

import redis

from clusterpool.slots import crcmod_key_slot, key_slot


def test_key_slot_and_crcmod_agree_with_cluster_keyslot(cluster):
    rnd = random.Random(5)
    keys = [f"user:{rnd.randrange(10**9)}".encode() for _ in range(200)]
    keys += [b"{tag}:a", b"a{}b{c}", b"{", b"}{x}", "ключ:{ü}".encode(), bytes(range(1, 64))]
    with redis.Redis(host=cluster.host, port=cluster.primaries()[0], socket_timeout=5) as r:
        pipe = r.pipeline(transaction=False)
        for k in keys:
            pipe.execute_command("CLUSTER", "KEYSLOT", k)
        server = [int(s) for s in pipe.execute()]
    assert [key_slot(k) for k in keys] == server
    assert [crcmod_key_slot(k) for k in keys] == server
