"""A consumed Kafka message, independent of the client library that read it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple


class ConsumedMessage(NamedTuple):
    # Immutable like a frozen dataclass, and cheaper to build: the projector makes one per
    # record (README, Performance).
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    # A header's value may be null, which is not the same as empty.
    headers: Sequence[tuple[str, bytes | None]] = ()
    timestamp_ms: int | None = None

    def header(self, name: str) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None
