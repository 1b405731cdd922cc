"""Report options: the return interval as typed and as stated in the report."""

from __future__ import annotations

from datetime import timedelta

import pytest

from alpha_panda.report import ReportError, interval_label, parse_interval


@pytest.mark.parametrize(
    ("text", "seconds", "label"),
    [
        ("1s", 1, "1 s"),
        ("30", 30, "30 s"),
        ("5m", 300, "5 min"),
        ("15min", 900, "15 min"),
        ("4h", 14_400, "4 h"),
    ],
)
def test_intervals_parse_and_label(text: str, seconds: int, label: str) -> None:
    assert parse_interval(text) == timedelta(seconds=seconds)
    assert interval_label(parse_interval(text)) == label


def test_labels_of_days_and_odd_intervals() -> None:
    assert interval_label(timedelta(days=1)) == "1 d"
    assert interval_label(timedelta(seconds=90)) == "90 s"
    assert interval_label(timedelta(seconds=1.5)) == "1.5 s"


@pytest.mark.parametrize("text", ["often", "0s", "-5m", "5 weeks", ""])
def test_bad_intervals_are_refused_by_name(text: str) -> None:
    with pytest.raises(ReportError, match="--interval must be a positive duration like 1s, 5m, 1h or 1d"):
        parse_interval(text)
