"""Dead letters keep the original bytes and say why, where and how often."""

from __future__ import annotations

from streams.deadletter import DeadLetter, Header, Stage
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
    outgoing = letter.to_message()
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
