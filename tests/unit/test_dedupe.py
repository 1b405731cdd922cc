"""Recent ids: redelivered events are recognised; memory stays bounded."""

from __future__ import annotations

from operators.dedupe import RecentIds


def test_an_id_is_new_once() -> None:
    seen = RecentIds(capacity=3)
    assert seen.add("a") is True
    assert seen.add("a") is False
    assert "a" in seen


def test_the_oldest_ids_are_forgotten_beyond_capacity() -> None:
    seen = RecentIds(capacity=3)
    for event_id in "abcd":
        seen.add(event_id)
    assert len(seen) == 3
    assert "a" not in seen
    assert all(event_id in seen for event_id in "bcd")


def test_copies_are_independent() -> None:
    seen = RecentIds(capacity=3)
    seen.add("a")
    copy = seen.copy()
    copy.add("b")
    assert "b" not in seen
    assert "a" in copy
