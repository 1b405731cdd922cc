"""Routing keys that put stateful work on chosen workers.

Bytewax 0.21 routes a stateful step's key to worker
``SipHash-1-3(key bytes + 0xFF, keys 0, 0) % worker_count`` (Rust's
``DefaultHasher`` over a ``String``; ``stateful_batch`` in bytewax's
``src/operators.rs``). Keys ``"0"``, ``"1"`` ... land where that hash puts
them: with 2 workers, ``"0"`` to ``"3"`` all share one worker. So the
instrument groups and account shards are keyed by :func:`worker_key`, a key
whose hash is ``index`` modulo 840: it lands on worker ``index % W`` for
every worker count ``W`` that divides 840 (1 to 8, 10, 12, 14, 15, 20, ...).

Only placement depends on this: should Bytewax hash differently, each key
still names one shard, the messages are the same, and only the balance of
work over workers is lost (``tests/flows/test_instrument_groups.py``
checks the placement on the pinned Bytewax).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

_MASK: Final = (1 << 64) - 1
PLACEMENT_MODULUS: Final = 840
"""lcm(1..8): a key placed for this modulus is placed for every worker count that divides it."""


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _MASK


def siphash13(data: bytes) -> int:
    """SipHash-1-3 of ``data`` with the zero key (Rust's ``DefaultHasher::default()``)."""
    v0, v1, v2, v3 = 0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573

    def sip_round() -> None:
        nonlocal v0, v1, v2, v3
        v0 = (v0 + v1) & _MASK
        v1 = _rotl(v1, 13) ^ v0
        v0 = _rotl(v0, 32)
        v2 = (v2 + v3) & _MASK
        v3 = _rotl(v3, 16) ^ v2
        v0 = (v0 + v3) & _MASK
        v3 = _rotl(v3, 21) ^ v0
        v2 = (v2 + v1) & _MASK
        v1 = _rotl(v1, 17) ^ v2
        v2 = _rotl(v2, 32)

    n = len(data)
    end = n - n % 8
    for i in range(0, end, 8):
        m = int.from_bytes(data[i : i + 8], "little")
        v3 ^= m
        sip_round()
        v0 ^= m
    last = ((n & 0xFF) << 56) | int.from_bytes(data[end:], "little")
    v3 ^= last
    sip_round()
    v0 ^= last
    v2 ^= 0xFF
    sip_round()
    sip_round()
    sip_round()
    return (v0 ^ v1 ^ v2 ^ v3) & _MASK


def worker_of(key: str, workers: int) -> int:
    """The worker Bytewax routes a stateful key to, out of ``workers``."""
    return siphash13(key.encode("utf-8") + b"\xff") % workers


@lru_cache(maxsize=1024)
def worker_key(step: str, index: int) -> str:
    """A key of ``step`` that Bytewax places on worker ``index % W`` (``W`` dividing 840).

    The key reads ``<step>-<index>.<n>``, the first ``n`` that places it.
    """
    target = index % PLACEMENT_MODULUS
    n = 0
    while True:
        key = f"{step}-{index}.{n}"
        if worker_of(key, PLACEMENT_MODULUS) == target:
            return key
        n += 1
