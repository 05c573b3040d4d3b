"""What operators type: times, ages, rates, dead-letter ids; and how filters match."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from streams.deadletter import DeadLetter, Stage
from streams.dlq import (
    DeadLetterFilter,
    Entry,
    LetterStatus,
    ReplayMark,
    ReplayMarks,
    entry_of,
    parse_id,
    parse_moment,
    parse_rate,
)
from streams.messages import ConsumedMessage

NOW = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", NOW - timedelta(hours=2)),
        ("30m", NOW - timedelta(minutes=30)),
        ("1.5d", NOW - timedelta(days=1.5)),
        ("2026-03-28T10:00:00", datetime(2026, 3, 28, 10, 0, tzinfo=UTC)),
        ("2026-03-28T10:00:00+02:00", datetime(2026, 3, 28, 8, 0, tzinfo=UTC)),
    ],
)
def test_times_are_iso_or_an_age(text: str, expected: datetime) -> None:
    assert parse_moment(text, now=NOW) == expected


@pytest.mark.parametrize(("text", "rate"), [("50", 50.0), ("50/s", 50.0), ("2.5 / s", 2.5)])
def test_rates_are_per_second(text: str, rate: float) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["0", "-1/s", "fast", "10/m"])
def test_a_rate_must_be_a_positive_number_per_second(text: str) -> None:
    with pytest.raises(ValueError, match="not a rate"):
        parse_rate(text)


def test_ids_are_partition_and_offset() -> None:
    assert parse_id("0:17") == (0, 17)
    with pytest.raises(ValueError, match="partition"):
        parse_id("17")


def _entry(replay_count: int, timestamp_ms: int, replayed: bool = False) -> Entry:
    letter = DeadLetter.for_failure(
        ConsumedMessage("batchline.ingest", 0, 5, b"batch-1", b'{"entity": "activity"}'),
        ValueError("x"),
        Stage.ROUTE,
        1,
    ).model_copy(update={"replay_count": replay_count})
    outgoing = letter.to_message()
    message = ConsumedMessage(
        "batchline.dlq", 0, 9, outgoing.key, outgoing.value, tuple(outgoing.headers), timestamp_ms
    )
    marks = ReplayMarks({(0, 9): ReplayMark(timestamp_ms, "replay-001")} if replayed else {})
    return entry_of(message, marks, max_replays=3)


def test_status_is_replayed_parked_or_pending() -> None:
    stamp = int(NOW.timestamp() * 1000)
    assert _entry(0, stamp).status is LetterStatus.PENDING
    assert _entry(3, stamp).status is LetterStatus.PARKED
    assert _entry(3, stamp, replayed=True).status is LetterStatus.REPLAYED


def test_every_given_filter_must_match() -> None:
    entry = _entry(0, int(NOW.timestamp() * 1000))

    assert DeadLetterFilter().matches(entry)
    assert DeadLetterFilter(
        since=NOW - timedelta(minutes=1),
        until=NOW + timedelta(minutes=1),
        error_class="valueerror",
        entity="Activity",
        stage=Stage.ROUTE,
        key="batch-1",
        status=LetterStatus.PENDING,
    ).matches(entry)
    assert not DeadLetterFilter(since=NOW + timedelta(seconds=1)).matches(entry)
    assert not DeadLetterFilter(until=NOW).matches(entry)
    assert not DeadLetterFilter(entity="instance").matches(entry)
    assert not DeadLetterFilter(stage=Stage.DECODE).matches(entry)
