"""Hostile ticks never stop a replay, never vanish, and change no good output.

Each bad kind lands in ``market.ticks.dlq`` with the project's own reason;
the good ticks give byte-identical outputs to a clean run, with one worker
and with two. Tick identity: distinct ticks never share an id, and a tick's
id does not depend on unrelated input.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest

from alpha_panda.replay import run_replay
from alpha_panda.strategy_file import load_strategy_file
from connectors.simulator import MarketSpec, simulate_lines
from dataflows.pipeline import PipelineParams
from schemas.codec import MAX_DLQ_VALUE_BYTES
from tests.flows.conftest import MOMENTUM_ONLY, tick_line

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CONFIGS = load_strategy_file(EXAMPLES / "strategies.yaml")


def _tick(**data: object) -> bytes:
    base: dict[str, object] = {
        "instrument_token": 256265,
        "last_price": 100.0,
        "timestamp": "2024-01-02T09:15:00Z",
    }
    base.update(data)
    return orjson.dumps({"type": "market_tick", "data": base})


HOSTILE: dict[str, tuple[bytes, str]] = {
    "unparseable time": (_tick(timestamp="half past nine"), "field data.timestamp is not an ISO-8601 time"),
    "time beyond UTC": (
        _tick(timestamp="9999-12-31T23:59:59-05:00"),
        "field data.timestamp cannot be converted to UTC (out of range)",
    ),
    "deep nesting": (
        b'{"type":"market_tick","data":{"instrument_token":1,"last_price":1.0,"timestamp":"2024-01-02T09:15:00Z",'
        b'"depth":{"a":' + b"[" * 5000 + b"]" * 5000 + b"}}}",
        "JSON nested deeper than 64 levels",
    ),
    "several MB": (_tick(symbol="X" * 3_000_000), "message of 3000123 bytes exceeds the 65536 byte limit"),
    "NUL in text": (_tick(symbol="IN\u0000FY"), "NUL character in a text field"),
    "huge number": (
        _tick().replace(b'"last_price"', b'"volume":1000000000000000000000000000000,"last_price"'),
        "field data.volume must be <= 9223372036854775807",
    ),
    "invalid UTF-8": (
        b'{"type":"market_tick","data":{"instrument_token":1,"last_price":1.0,'
        b'"timestamp":"2024-01-02T09:15:00Z","symbol":"\xff"}}',
        "invalid UTF-8 in field data.symbol",
    ),
    "far future": (
        _tick(timestamp="2031-01-02T09:15:00Z"),
        "is more than 1 day, 0:00:00 after the newest tick",
    ),
}


def _clean_lines() -> list[bytes]:
    spec = MarketSpec(instruments=6, ticks_per_instrument=300, seed=5)
    return [line.rstrip(b"\n") for line in simulate_lines(spec)]


def _replay(tmp_path: Path, name: str, lines: list[bytes], workers_shards: int = 1) -> dict[str, bytes]:
    ticks = tmp_path / f"{name}.jsonl"
    ticks.write_bytes(b"".join(line + b"\n" for line in lines))
    out = tmp_path / name
    run_replay(ticks, CONFIGS, out, PipelineParams(shards=workers_shards))
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.jsonl"))}


def test_every_hostile_tick_is_dead_lettered_with_its_reason_and_changes_nothing(tmp_path: Path) -> None:
    clean = _clean_lines()
    dirty = list(clean)
    for n, (raw, _reason) in enumerate(HOSTILE.values()):
        dirty.insert(50 + 97 * n, raw)
    reference = _replay(tmp_path, "clean", clean)
    outputs = _replay(tmp_path, "dirty", dirty)

    letters = [orjson.loads(line) for line in outputs.pop("market.ticks.dlq.jsonl").splitlines()]
    assert outputs == reference
    assert len(letters) == len(HOSTILE)
    by_sha = {hashlib.sha256(raw).hexdigest(): (kind, reason) for kind, (raw, reason) in HOSTILE.items()}
    for letter in letters:
        original = letter["data"]["original_message"]
        kind, reason = by_sha[original["value_sha256"]]
        assert reason in letter["data"]["failure_info"]["error_message"], kind
        assert letter["data"]["failure_info"]["error_type"] == "poison"
        assert len(orjson.dumps(letter)) < 1_000_000, kind
    sizes = {by_sha[x["data"]["original_message"]["value_sha256"]][0]: x for x in letters}
    big = sizes["several MB"]["data"]["original_message"]
    assert big["truncated"] is True
    assert big["value_length"] == len(HOSTILE["several MB"][0])
    assert len(big["value"]) == MAX_DLQ_VALUE_BYTES
    assert sizes["several MB"]["data"]["replay_metadata"]["can_replay"] is False


def test_naive_and_offset_times_of_one_instrument_mix_without_a_crash(tmp_path: Path) -> None:
    lines = [tick_line(256265, 100.0, s) for s in range(25)]
    naive = orjson.loads(lines[10])
    naive["data"]["timestamp"] = "2024-01-02T03:45:10"  # the same instant in UTC, no offset
    lines[10] = orjson.dumps(naive)
    lines.append(tick_line(256265, 103.0, 25))
    out = _replay(tmp_path, "mixed", lines)
    assert "market.ticks.dlq.jsonl" not in out
    signal = orjson.loads(out["paper.signals.raw.jsonl"].splitlines()[0])
    assert signal["data"]["timestamp"] == "2024-01-02T03:45:25Z"


def test_naive_times_can_be_read_in_a_zone_or_rejected(tmp_path: Path) -> None:
    from zoneinfo import ZoneInfo

    strategies = tmp_path / "s.yaml"
    strategies.write_text(MOMENTUM_ONLY)
    configs = load_strategy_file(strategies)
    lines = [
        orjson.dumps(
            {
                "type": "market_tick",
                "data": {
                    "instrument_token": 256265,
                    "last_price": 100.0 + s,
                    "timestamp": f"2024-01-02T09:15:{s:02d}",
                },
            }
        )
        for s in range(21)
    ]
    ticks = tmp_path / "naive.jsonl"
    ticks.write_bytes(b"".join(line + b"\n" for line in lines))
    run_replay(ticks, configs, tmp_path / "ist", PipelineParams(naive_tz=ZoneInfo("Asia/Kolkata")))
    signal = orjson.loads((tmp_path / "ist" / "paper.signals.raw.jsonl").read_bytes().splitlines()[0])
    assert signal["data"]["timestamp"] == "2024-01-02T03:45:19Z"
    summary = run_replay(ticks, configs, tmp_path / "rejected", PipelineParams(naive_tz="reject"))
    assert summary.dead_letters == 21
    letter = orjson.loads((tmp_path / "rejected" / "market.ticks.dlq.jsonl").read_bytes().splitlines()[0])
    assert (
        "has no UTC offset and NAIVE_TIMEZONE is 'reject'" in letter["data"]["failure_info"]["error_message"]
    )


def test_distinct_ticks_at_one_price_and_second_get_distinct_ids(tmp_path: Path) -> None:
    strategies = tmp_path / "s.yaml"
    strategies.write_text(MOMENTUM_ONLY.replace("lookback_period: 20", "lookback_period: 2"))
    configs = load_strategy_file(strategies)
    # Two trades at 100.0 in one second after a fall: both are SELL-side ticks
    # of the same instant; then two rises in one second at one price.
    lines = [
        tick_line(256265, 100.0, 0),
        tick_line(256265, 102.0, 1),
        tick_line(256265, 104.0, 2),
        tick_line(256265, 100.0, 3),
        tick_line(256265, 103.0, 4),
        tick_line(256265, 103.0, 4),
    ]
    ticks = tmp_path / "dup.jsonl"
    ticks.write_bytes(b"".join(line + b"\n" for line in lines))
    run_replay(ticks, configs, tmp_path / "out", PipelineParams(brokers=("paper",)))
    signals = [
        orjson.loads(x) for x in (tmp_path / "out" / "paper.signals.raw.jsonl").read_bytes().splitlines()
    ]
    ids = [s["correlation_id"] for s in signals]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("shards", [1, 3])
def test_a_ticks_id_does_not_depend_on_unrelated_input(tmp_path: Path, shards: int) -> None:
    clean = _clean_lines()
    other = [line.replace(b'"instrument_token":', b'"instrument_token":9') for line in clean[:200:7]]
    noisy = list(clean)
    for n, line in enumerate(other):
        noisy.insert(10 + 13 * n, line)
        noisy.insert(11 + 13 * n, b"{not json")
    reference = _replay(tmp_path, "clean", clean, shards)
    outputs = _replay(tmp_path, "noisy", noisy, shards)
    outputs.pop("market.ticks.dlq.jsonl")
    assert outputs == reference
