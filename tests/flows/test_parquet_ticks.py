"""Parquet tick files: the same replay as JSONL, bad rows dead-lettered with their row numbers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from alpha_panda.cli import app
from alpha_panda.replay import run_replay
from alpha_panda.strategy_file import load_strategy_file
from connectors.files import TickFileSource
from connectors.marketdata.publish import file_kind, tick_file_messages
from connectors.parquet_ticks import ParquetTickFileError, iter_parquet_ticks, parquet_row_count
from connectors.simulator import MarketSpec, simulate_lines
from tests.flows.conftest import MOMENTUM_ONLY, tick_line, write_lines

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
COLUMNS = ("instrument_token", "last_price", "timestamp", "volume")
TEXT_TIMES = pa.schema(
    [
        ("instrument_token", pa.int64()),
        ("last_price", pa.float64()),
        ("timestamp", pa.string()),
        ("volume", pa.int64()),
    ]
)


def simulated(ticks: int = 400) -> list[bytes]:
    lines = simulate_lines(MarketSpec(instruments=6, ticks_per_instrument=ticks, seed=11))
    return [line.rstrip(b"\n") for line in lines]


def data_of(lines: list[bytes]) -> list[dict[str, Any]]:
    return [orjson.loads(line)["data"] for line in lines]


def write_parquet(path: Path, rows: list[dict[str, Any]], schema: pa.Schema, group_rows: int) -> Path:
    columns = {name: [row.get(name) for row in rows] for name in schema.names}
    pq.write_table(pa.table(columns, schema=schema), path, row_group_size=group_rows)
    return path


def outputs(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_a_parquet_file_replays_byte_identical_to_the_same_ticks_as_jsonl(tmp_path: Path) -> None:
    lines = simulated()
    rows = data_of(lines)
    assert all(tuple(row) == COLUMNS for row in rows)  # columns in the JSONL key order
    jsonl = write_lines(tmp_path / "ticks.jsonl", lines)
    parquet = write_parquet(tmp_path / "ticks.parquet", rows, TEXT_TIMES, group_rows=500)
    assert pq.ParquetFile(parquet).num_row_groups == 5  # read group by group

    assert [(t.row, t.line, t.problem) for t in iter_parquet_ticks(parquet)] == [
        (n, line, None) for n, line in enumerate(lines, start=1)
    ]
    configs = load_strategy_file(EXAMPLES / "strategies.yaml")
    from_jsonl = run_replay(jsonl, configs, tmp_path / "jsonl_out")
    run_replay(parquet, configs, tmp_path / "parquet_out")
    assert sum(a.fills for a in from_jsonl.accounts.values()) > 0
    assert outputs(tmp_path / "parquet_out") == outputs(tmp_path / "jsonl_out")


def test_timestamp_typed_columns_become_iso_times(tmp_path: Path) -> None:
    rows = data_of(simulated(100))
    for row in rows:
        row["timestamp"] = datetime.fromisoformat(row["timestamp"]).astimezone(UTC)
    schema = TEXT_TIMES.set(2, pa.field("timestamp", pa.timestamp("us", tz="UTC")))
    parquet = write_parquet(tmp_path / "ticks.parquet", rows, schema, group_rows=250)
    as_utc = [
        orjson.dumps({"type": "market_tick", "data": {**row, "timestamp": row["timestamp"].isoformat()}})
        for row in rows
    ]
    assert as_utc[0].count(b"+00:00") == 1
    assert [t.line for t in iter_parquet_ticks(parquet)] == as_utc
    jsonl = write_lines(tmp_path / "ticks.jsonl", as_utc)
    configs = load_strategy_file(EXAMPLES / "strategies.yaml")
    run_replay(jsonl, configs, tmp_path / "jsonl_out")
    run_replay(parquet, configs, tmp_path / "parquet_out")
    assert outputs(tmp_path / "parquet_out") == outputs(tmp_path / "jsonl_out")


def design_rows() -> list[dict[str, Any]]:
    lines = [tick_line(256265, 100.0, s) for s in range(19)] + [tick_line(256265, 101.5, 19)]
    return [{**row, "volume": 10} for row in data_of(lines)]


def test_rows_with_a_missing_or_invalid_column_are_dead_lettered_with_their_row_numbers(
    tmp_path: Path,
) -> None:
    clean = design_rows()
    bad: list[tuple[int, dict[str, Any]]] = [
        (3, {**clean[0], "last_price": None}),  # missing
        (6, {**clean[0], "last_price": float("nan")}),  # not a number
        (9, {**clean[0], "timestamp": None}),  # missing
        (12, {**clean[0], "instrument_token": None}),  # missing
        (15, {**clean[0], "last_price": -3.0}),  # invalid: the decoder's rule
        (18, {**clean[0], "timestamp": "not a time"}),  # invalid: the decoder's rule
    ]
    dirty = list(clean)
    for row_number, row in bad:
        dirty.insert(row_number - 1, row)
    strategies = tmp_path / "strategies.yaml"
    strategies.write_text(MOMENTUM_ONLY)
    configs = load_strategy_file(strategies)
    clean_file = write_parquet(tmp_path / "clean.parquet", clean, TEXT_TIMES, group_rows=7)
    dirty_file = write_parquet(tmp_path / "dirty.parquet", dirty, TEXT_TIMES, group_rows=7)

    problems = {t.row: t.problem for t in iter_parquet_ticks(dirty_file) if t.problem}
    assert problems == {
        3: "row 3: last_price is null",
        6: "row 6: last_price is not a finite number (nan)",
        9: "row 9: timestamp is null",
        12: "row 12: instrument_token is null",
    }

    run_replay(clean_file, configs, tmp_path / "clean_out")
    summary = run_replay(dirty_file, configs, tmp_path / "dirty_out")
    assert summary.dead_letters == len(bad)
    letters = [
        orjson.loads(x) for x in (tmp_path / "dirty_out" / "market.ticks.dlq.jsonl").read_bytes().splitlines()
    ]
    assert [letter["data"]["dlq_metadata"]["original_offset"] for letter in letters] == [n for n, _ in bad]
    reasons = [letter["data"]["failure_info"]["error_message"] for letter in letters]
    for reason, column in zip(
        reasons,
        ["last_price", "last_price", "timestamp", "instrument_token", "last_price", "timestamp"],
        strict=True,
    ):
        assert column in reason
    assert all(letter["data"]["failure_info"]["error_type"] == "poison" for letter in letters)
    fills = orjson.loads((tmp_path / "dirty_out" / "paper.orders.filled.jsonl").read_bytes().splitlines()[0])
    assert fills["data"]["fill_price"] == pytest.approx(101.55075)
    for name in ("paper.signals.raw.jsonl", "paper.orders.filled.jsonl", "portfolio.json"):
        assert (tmp_path / "dirty_out" / name).read_bytes() == (tmp_path / "clean_out" / name).read_bytes()


def test_reading_resumes_after_a_row_and_skips_earlier_row_groups(tmp_path: Path) -> None:
    lines = simulated(50)
    parquet = write_parquet(tmp_path / "ticks.parquet", data_of(lines), TEXT_TIMES, group_rows=40)
    assert parquet_row_count(parquet) == 300
    everything = list(iter_parquet_ticks(parquet))
    for after in (0, 39, 40, 41, 123, 299, 300):
        assert list(iter_parquet_ticks(parquet, after_row=after)) == everything[after:]

    part = TickFileSource(parquet, batch_size=64).build_part("in", parquet.name, 130)
    (first,) = part.next_batch()
    assert first.offsets == list(range(131, 195))
    assert part.snapshot() == 194
    assert first.values == lines[130:194]
    part.close()


def test_a_file_without_a_tick_column_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "bars.parquet"
    pq.write_table(
        pa.table({"instrument_token": [1], "close": [1.0], "timestamp": ["2024-01-02T00:00:00Z"]}), path
    )
    with pytest.raises(ParquetTickFileError, match=r"bars.parquet has no column last_price"):
        list(iter_parquet_ticks(path))
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ParquetTickFileError, match=r"parquet ticks: cannot read .*junk.parquet"):
        parquet_row_count(tmp_path / "junk.parquet")
    strategies = tmp_path / "strategies.yaml"
    strategies.write_text(MOMENTUM_ONLY)
    result = CliRunner().invoke(
        app,
        [
            "replay",
            "--ticks",
            str(path),
            "--strategies",
            str(strategies),
            "--out",
            str(tmp_path / "o"),
            "--quiet",
        ],
    )
    assert result.exit_code == 2
    assert "has no column last_price" in " ".join(result.output.split())


def test_feed_reads_parquet_as_it_reads_jsonl(tmp_path: Path) -> None:
    lines = simulated(20)
    jsonl = write_lines(tmp_path / "ticks.jsonl", lines)
    parquet = write_parquet(tmp_path / "ticks.parquet", data_of(lines), TEXT_TIMES, group_rows=33)
    assert file_kind(parquet) == "ticks"
    from_parquet = [(m.offset, m.value) for m in tick_file_messages(parquet)]
    assert from_parquet == [(m.offset, m.value) for m in tick_file_messages(jsonl)]
    assert len(from_parquet) == 120


def test_the_market_feed_paces_parquet_rows_as_it_paces_jsonl_lines(tmp_path: Path) -> None:
    from connectors.feeds import PacedFileSource

    lines = simulated(10)
    jsonl = write_lines(tmp_path / "ticks.jsonl", lines)
    parquet = write_parquet(tmp_path / "ticks.parquet", data_of(lines), TEXT_TIMES, group_rows=16)

    def read_all(path: Path) -> list[tuple[int | None, bytes]]:
        part = PacedFileSource(path, 0).build_part("feed", path.name, 5)  # resumed after 5
        found: list[tuple[int | None, bytes]] = []
        try:
            while True:
                found += [(m.offset, m.value) for m in part.next_batch()]
        except StopIteration:
            return found

    assert read_all(parquet) == read_all(jsonl)
    assert [value for _, value in read_all(parquet)] == lines[5:]
