"""100,000 ticks, 10% adversarial, through the live all-in-one pipeline.

Bad input never stops a flow: each bad message lands in ``market.ticks.dlq``
with its reason, and fills and portfolios equal those of the clean ticks
alone. A tick for an instrument no strategy trades is *valid* (it decodes)
and is simply ignored: it is not dead-lettered and changes nothing.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from bytewax.testing import run_main

from dataflows.pipeline import live_flow
from schemas.codec import MAX_MESSAGE_BYTES, original_value
from schemas.events import OriginalMessage
from tests.integration.live_world import World, simulated_ticks
from tests.integration.test_live_pipeline import replay_reference, without_time

pytestmark = pytest.mark.integration

CLEAN = 90_000
ADVERSARIAL = 10_000
UNKNOWN_TOKEN = 999_999_001

# category -> (how many, a phrase its dead letter's reason must contain)
CATEGORIES: dict[str, tuple[int, str]] = {
    "not_json": (1_200, "malformed JSON at character"),
    "wrong_type_price": (1_100, "field data.last_price must be a number, got a string"),
    "wrong_type_token": (1_100, "field data.instrument_token must be an integer, got a string"),
    "missing_field": (1_100, "missing required field data.timestamp"),
    "negative_price": (1_100, "last_price must be finite, > 0"),
    "zero_price": (1_100, "last_price must be finite, > 0"),
    "nan_price": (1_000, "malformed JSON: NaN is not a JSON number"),
    "huge_price": (1_000, "last_price must be finite, > 0"),
    "oversized": (100, f"exceeds the {MAX_MESSAGE_BYTES} byte limit"),
    "invalid_utf8": (200, "invalid UTF-8 in field data.symbol"),
}
UNKNOWN_INSTRUMENT = ADVERSARIAL - sum(n for n, _ in CATEGORIES.values())  # valid, ignored


def bad_message(category: str, n: int) -> bytes:
    """A bad tick of ``category``; ``n`` makes it unique (so its dead letter maps back)."""
    when = "2024-01-02T09:15:00+05:30"
    data: dict[str, object] = {
        "instrument_token": 256265,
        "last_price": 100.0,
        "timestamp": when,
        "volume": n,
    }
    if category == "not_json":
        return f"garbage #{n} {{".encode()
    if category == "wrong_type_price":
        data["last_price"] = f"abc{n}"
    elif category == "wrong_type_token":
        data["instrument_token"] = f"tok{n}"
    elif category == "missing_field":
        del data["timestamp"]
    elif category == "negative_price":
        data["last_price"] = -1.0 - n
    elif category == "zero_price":
        data["last_price"] = 0
    elif category == "nan_price":
        return (
            b'{"type": "market_tick", "data": {"instrument_token": 256265, "last_price": NaN, "volume": %d}}'
            % n
        )
    elif category == "huge_price":
        data["last_price"] = 1e12 + n
    elif category == "oversized":
        data["symbol"] = "X" * (MAX_MESSAGE_BYTES + 100)
    elif category == "invalid_utf8":
        return (
            b'{"type": "market_tick", "data": {"instrument_token": 256265, "last_price": 1.0, '
            b'"timestamp": "2024-01-02T09:15:00+05:30", "volume": %d, "symbol": "\xff\xfe"}}' % n
        )
    return orjson.dumps({"type": "market_tick", "data": data})


def unknown_instrument(after: bytes, n: int) -> bytes:
    tick = orjson.loads(after)
    tick["data"].update(instrument_token=UNKNOWN_TOKEN, last_price=50.0 + n % 7)
    return orjson.dumps(tick)


def test_adversarial_ticks_are_dead_lettered_and_change_nothing(world: World, tmp_path: Path) -> None:
    rows = world.seed()
    clean = simulated_ticks(instruments=10, ticks=CLEAN // 10, seed=21)
    assert len(clean) == CLEAN
    rng = random.Random(4)
    bad = {bad_message(c, n): c for c, (count, _) in CATEGORIES.items() for n in range(count)}
    positions = sorted(rng.sample(range(1, CLEAN), ADVERSARIAL))
    extras = list(bad) + [None] * UNKNOWN_INSTRUMENT
    rng.shuffle(extras)
    stream: list[bytes] = []
    previous = 0
    for n, (position, extra) in enumerate(zip(positions, extras, strict=True)):
        stream += clean[previous:position]
        stream.append(extra if extra is not None else unknown_instrument(clean[position - 1], n))
        previous = position
    stream += clean[previous:]
    assert len(stream) == CLEAN + ADVERSARIAL
    world.produce_ticks(stream)

    started = time.monotonic()
    run_main(live_flow(world.settings()))  # must not raise: bad input never stops the flow
    elapsed = time.monotonic() - started
    print(f"\n100k ticks (10% adversarial) through the live pipeline: {elapsed:.1f} s")

    letters = world.topic("market.ticks.dlq")
    assert len(letters) == len(bad) == ADVERSARIAL - UNKNOWN_INSTRUMENT
    by_sha = {hashlib.sha256(raw).hexdigest(): category for raw, category in bad.items()}
    seen: Counter[str] = Counter()
    for letter in letters:
        data = letter["data"]
        original = data["original_message"]
        category = by_sha[original["value_sha256"]]
        if not original["truncated"]:
            assert original_value(OriginalMessage(**original)) in bad
        assert CATEGORIES[category][1] in data["failure_info"]["error_message"], (category, data)
        assert data["failure_info"]["error_type"] == "poison"
        assert data["replay_metadata"]["can_replay"] is False
        seen[category] += 1
    assert seen == Counter({c: n for c, (n, _) in CATEGORIES.items()})

    fills, reference = replay_reference(world, rows, clean, tmp_path)
    assert fills
    assert world.fills() == fills
    assert without_time(world.portfolios()) == without_time(reference)
