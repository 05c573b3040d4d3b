"""One line per condition per interval, however often it happens."""

from __future__ import annotations

import io
import logging

from batchline.logs import RepeatFilter

TOO_MANY = OSError(24, "Too many open files")


def _lines(records: list[logging.LogRecord], seconds: float = 10.0) -> list[str]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RepeatFilter(seconds))
    for record in records:
        handler.handle(record)
    return [line for line in stream.getvalue().splitlines() if not line.startswith(("Tr", "OS"))]


def _record(at: float, message: str, *args: object, **kwargs: object) -> logging.LogRecord:
    level = kwargs.pop("level", logging.ERROR)
    error = kwargs.pop("error", None)
    record = logging.LogRecord(
        "asyncio",
        int(str(level)),
        __file__,
        1,
        message,
        args,
        (OSError, error, None) if error else None,
    )
    record.created = at
    return record


def test_a_flood_of_one_condition_is_one_line_then_a_count() -> None:
    # 100,000 refused accepts within ten seconds, then one more.
    flood = [
        _record(n / 10_000, "socket.accept() out of system resource %d", n, error=TOO_MANY)
        for n in range(100_000)
    ]
    flood.append(_record(10.5, "socket.accept() out of system resource %d", -1, error=TOO_MANY))

    assert _lines(flood) == [
        "ERROR socket.accept() out of system resource 0",
        "ERROR socket.accept() out of system resource -1 (and 99999 more like it in the last 10 s)",
    ]


def test_other_conditions_are_not_held_back() -> None:
    lines = _lines(
        [
            _record(0, "database unavailable on %s", "GET /a", level=logging.WARNING),
            _record(1, "database unavailable on %s", "GET /b", level=logging.WARNING),
            _record(2, "database unavailable on %s", "GET /a"),
            _record(3, "replay %s finished", "r-1", level=logging.WARNING),
            _record(11, "database unavailable on %s", "GET /c", level=logging.WARNING),
        ]
    )

    assert lines == [
        "WARNING database unavailable on GET /a",
        "ERROR database unavailable on GET /a",
        "WARNING replay r-1 finished",
        "WARNING database unavailable on GET /c (and 1 more like it in the last 10 s)",
    ]
