"""Dead letters keep the original bytes and say why, where and how often."""

from __future__ import annotations

from streams.deadletter import ORIGIN_HEADER, REPLAY_TOKEN_HEADER, DeadLetter, Header, Stage
from streams.messages import ConsumedMessage
from streams.topics import DLQ


def test_a_dead_letter_round_trips_through_its_headers() -> None:
    source = ConsumedMessage(
        topic="batchline.ingest",
        partition=2,
        offset=41,
        key=b"k",
        value=b"\xff not json",
        headers=(("trace", b"abc"), (Header.REPLAY_COUNT.value, b"1")),
    )

    letter = DeadLetter.for_failure(source, ValueError("bad"), Stage.DECODE, 1)
    # The count a replay token proves (looked up in PostgreSQL), never the header's.
    assert (letter.replay_count, letter.replay_token) == (0, None)
    outgoing = letter.model_copy(update={"replay_count": 1}).to_message()
    read_back = DeadLetter.from_message(
        ConsumedMessage(
            topic=DLQ,
            partition=0,
            offset=9,
            key=outgoing.key,
            value=outgoing.value,
            headers=tuple(outgoing.headers),
        )
    )

    assert outgoing.topic == DLQ
    assert outgoing.value == b"\xff not json"
    assert read_back.error_class == "ValueError"
    assert read_back.error_message == "bad"
    assert (read_back.source_topic, read_back.source_partition, read_back.source_offset) == (
        "batchline.ingest",
        2,
        41,
    )
    assert read_back.stage is Stage.DECODE
    assert read_back.replay_count == 1
    assert read_back.original_headers == (("trace", b"abc"),)
    assert (read_back.dlq_partition, read_back.dlq_offset) == (0, 9)


def test_a_replay_keeps_the_original_message_and_counts_itself() -> None:
    source = ConsumedMessage(
        topic="batchline.ingest", partition=1, offset=7, key=b"k", value=b"{}", headers=()
    )
    letter = DeadLetter.for_failure(source, ValueError("bad"), Stage.VALIDATE, 1)

    first = letter.replay_message("token-1")
    # The replayed message fails again at a new offset: the origin stays the first one.
    again = DeadLetter.for_failure(
        ConsumedMessage("batchline.ingest", 3, 99, first.key, first.value, tuple(first.headers)),
        ValueError("still bad"),
        Stage.VALIDATE,
        1,
    )
    assert (again.replay_count, again.replay_token) == (0, "token-1")
    # Its token proves one replay.
    again = again.model_copy(update={"replay_count": 1})
    second = again.replay_message("token-2")

    assert (first.topic, first.key, first.value) == ("batchline.ingest", b"k", b"{}")
    assert dict(first.headers) == {
        ORIGIN_HEADER: b"batchline.ingest:1:7",
        Header.REPLAY_COUNT.value: b"1",
        REPLAY_TOKEN_HEADER: b"token-1",
    }
    assert again.original_headers == ((ORIGIN_HEADER, b"batchline.ingest:1:7"),)
    assert dict(second.headers) == {
        ORIGIN_HEADER: b"batchline.ingest:1:7",
        Header.REPLAY_COUNT.value: b"2",
        REPLAY_TOKEN_HEADER: b"token-2",
    }


def test_a_dead_letter_with_missing_or_garbled_headers_is_still_readable() -> None:
    message = ConsumedMessage(
        topic=DLQ,
        partition=0,
        offset=3,
        key=None,
        value=b'{"entity": "activity", "batch_id": "b-1"}',
        headers=((Header.ATTEMPTS.value, b"many"), (Header.ERROR_CLASS.value, b"Boom")),
        timestamp_ms=1_700_000_000_000,
    )

    letter = DeadLetter.from_message(message)

    assert letter.error_class == "Boom"
    assert letter.attempts == 0
    assert letter.stage is Stage.PROCESS
    assert letter.id == "0:3"
    assert letter.envelope_field("entity") == "activity"
    assert letter.dead_lettered_at is not None
    assert letter.dead_lettered_at.year == 2023
