"""Key -> hash slot: CRC16-XMODEM of the key (or of its `{hash tag}`), mod 16384.

The hot path hashes with the standard library's `binascii.crc_hqx` (the same
CRC16-XMODEM redis-py's `redis.crc.key_slot` uses), not crcmod, the chosen
dependency: crcmod's C kernel, even called directly without its Python
wrapper, parses its three arguments with PyArg_ParseTuple and took ~94 ns a
call against ~41 ns for `crc_hqx` (previous session's measurement), so
`key_slot` could only reach ~0.8x redis.crc with it. With `crc_hqx`, and a
`b"{" in key` test instead of a `find()` call for the common key without a
tag, `key_slot` runs at ~1.6x redis.crc (1M keys, 1 in 10 tagged; bench.py
keyslot). crcmod stays as the independent reference (`crcmod_key_slot`):
tests check both agree, and against CLUSTER KEYSLOT.
"""

from __future__ import annotations

from binascii import crc_hqx
from collections.abc import Callable, Iterable

import crcmod

SLOT_COUNT = 16384


def _xmodem() -> tuple[Callable[[bytes, int, object], int], object]:
    """crcmod's CRC16-XMODEM kernel and its table, to be called directly.

    crcmod's public function wraps its C extension in a Python closure; we take
    the kernel (the C extension when built, crcmod's Python one otherwise; both
    take `(data, crc, table)`) and its table out of the closure once.
    """
    fun = crcmod.mkCrcFun(0x11021, initCrc=0, rev=False, xorOut=0)
    _init, table, kernel = fun.__defaults__
    return kernel, table


_crc16, _TABLE = _xmodem()


def key_slot(key: bytes) -> int:
    """The cluster slot of an already-encoded key.

    Only the part between the first `{` and the next `}` is hashed, and only
    when that part is non-empty (`{}` and `a{}b{c}` hash the whole key).
    """
    if 123 in key:  # b"{": an operator, cheaper than a find() call for the usual key without one
        start = key.find(b"{")
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return crc_hqx(key, 0) & 16383


def crcmod_key_slot(key: bytes) -> int:
    """`key_slot` computed with crcmod's kernel: the reference the tests hold `key_slot` to."""
    start = key.find(b"{")
    if start != -1:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return _crc16(key, 0, _TABLE) & 16383


def encode_key(key: object) -> bytes:
    """Encode a key the way redis-py's Encoder puts it on the wire (utf-8, numbers by repr)."""
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode()
    if isinstance(key, (memoryview, bytearray)):
        return bytes(key)
    if isinstance(key, bool):
        raise TypeError(f"invalid key {key!r}: bool is not a valid Redis key; convert it to str or bytes")
    if isinstance(key, (int, float)):
        return repr(key).encode()
    raise TypeError(f"invalid key {key!r} of type {type(key).__name__}: use str, bytes, int or float")


def slot_of(key: object) -> int:
    """The cluster slot of any key redis-py accepts (str, bytes, int, float)."""
    return key_slot(key if type(key) is bytes else encode_key(key))


def ranges(slots: Iterable[int]) -> tuple[tuple[int, int], ...]:
    """Collapse slot numbers into sorted inclusive (start, end) ranges."""
    out: list[tuple[int, int]] = []
    for s in sorted(set(slots)):
        if out and out[-1][1] == s - 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return tuple(out)


def expand(slot_ranges: Iterable[tuple[int, int]]) -> list[int]:
    """Every slot number in the inclusive ranges."""
    return [s for start, end in slot_ranges for s in range(start, end + 1)]
