"""The hot path's batch decoder: one parser call, each time string parsed once, bad lines named."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from schemas.codec import TimeCache, decode_tick_batch


def _tick(timestamp: str, price: float = 100.0) -> bytes:
    data = {"instrument_token": 256265, "last_price": price, "timestamp": timestamp}
    return orjson.dumps({"type": "market_tick", "data": data})


def test_good_and_bad_times_of_one_batch_each_get_their_own_result() -> None:
    second = "2024-01-02T09:15:00+05:30"
    values = [
        _tick("", 99.0),  # first in the batch: nothing parsed yet to mistake it for
        _tick(second, 100.0),
        _tick(second, 101.0),
        _tick("", 102.0),  # an empty time after a good one is still refused
        _tick(second, 103.0),
        _tick("yesterday", 104.0),
        _tick("2024-01-02T03:45:01Z", 105.0),
        _tick("yesterday", 106.0),
    ]
    batch = decode_tick_batch(values, TimeCache())
    assert batch.positions == [1, 2, 4, 6]
    assert [t.data.last_price for t in batch.ticks] == [100.0, 101.0, 103.0, 105.0]
    at = datetime(2024, 1, 2, 3, 45, tzinfo=UTC)
    assert batch.times == [at, at, at, datetime(2024, 1, 2, 3, 45, 1, tzinfo=UTC)]
    assert [(i, err.reason) for i, err in batch.failed] == [
        (0, "field data.timestamp is not an ISO-8601 time: ''"),
        (3, "field data.timestamp is not an ISO-8601 time: ''"),
        (5, "field data.timestamp is not an ISO-8601 time: 'yesterday'"),
        (7, "field data.timestamp is not an ISO-8601 time: 'yesterday'"),
    ]
