"""The peers' tick tape, byte for byte as ``../shared/peers/make_tape.py`` writes it.

``instruments`` random walks (tokens ``100000 + i``), each from 100.0 with
gaussian returns of standard deviation 0.004 and a floor of 1.0, emitted
prices rounded to 0.01. ``ticks`` ticks in total, round-robin over the
instruments, one tick per instrument per second from 2026-11-20T09:15:00+05:30,
volume 10. Everything comes from one ``random.Random(seed)`` (seed 7 by
default), so the same arguments always give the same bytes.

Out: ``ticks.jsonl`` (producer-form ``market_tick`` lines, what
``alpha-panda replay`` reads) and ``ticks.csv`` (``token,timestamp,price,volume``,
what the reference rule and the peers read).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

START = datetime(2026, 11, 20, 9, 15, tzinfo=timezone(timedelta(hours=5, minutes=30)))
FIRST_TOKEN = 100_000
START_PRICE = 100.0
RETURN_SD = 0.004
FLOOR = 1.0
VOLUME = 10
CSV_HEADER = "token,timestamp,price,volume\n"


@dataclass(frozen=True)
class PeerTape:
    """Where a tape was written, and its size."""

    jsonl: Path
    csv: Path
    instruments: int
    ticks: int

    def tokens(self) -> list[int]:
        """The tape's instrument tokens, in order."""
        return peer_tokens(self.instruments)


def peer_tokens(instruments: int) -> list[int]:
    """Tokens of a tape of ``instruments`` instruments."""
    return [FIRST_TOKEN + i for i in range(instruments)]


def peer_ticks(instruments: int, ticks: int, seed: int = 7) -> Iterator[tuple[int, str, float]]:
    """Yield ``(token, ISO timestamp, price)`` of every tick, in tape order."""
    rng = random.Random(seed)  # noqa: S311 - a simulation, not cryptography
    tokens = peer_tokens(instruments)
    walk = dict.fromkeys(tokens, START_PRICE)
    second, stamp = -1, ""
    for n in range(ticks):
        token = tokens[n % instruments]
        walk[token] = max(FLOOR, walk[token] * (1 + rng.gauss(0, RETURN_SD)))
        if n // instruments != second:
            second = n // instruments
            stamp = (START + timedelta(seconds=second)).isoformat()
        yield token, stamp, round(walk[token], 2)


def write_peer_tape(instruments: int, ticks: int, out_dir: Path, seed: int = 7) -> PeerTape:
    """Write ``out_dir/ticks.jsonl`` and ``out_dir/ticks.csv``; return where they are."""
    if instruments < 1 or ticks < 0:
        msg = f"a peer tape needs at least 1 instrument and 0 ticks, got {instruments} and {ticks}"
        raise ValueError(msg)
    out_dir.mkdir(parents=True, exist_ok=True)
    tape = PeerTape(out_dir / "ticks.jsonl", out_dir / "ticks.csv", instruments, ticks)
    with tape.jsonl.open("w", encoding="ascii") as jsonl, tape.csv.open("w", encoding="ascii") as csv:
        csv.write(CSV_HEADER)
        for token, stamp, price in peer_ticks(instruments, ticks, seed):
            # repr() of the float, as the peers' script writes it (e.g. 100.0, 99.57).
            jsonl.write(
                f'{{"type":"market_tick","data":{{"instrument_token":{token},"last_price":{price!r},'
                f'"volume":{VOLUME},"timestamp":"{stamp}"}}}}\n'
            )
            csv.write(f"{token},{stamp},{price!r},{VOLUME}\n")
    return tape
