"""Logging: one line per record, JSON when asked (``BATCHLINE_LOG_FORMAT=json``)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import orjson


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


class RepeatFilter(logging.Filter):
    """One line per condition per interval: a message logged again within ``seconds`` of
    its first is dropped and counted, and the next one after the interval says how many.

    A condition is a logger, level and message template (not its arguments), plus the
    exception class: a client opening thousands of connections a second, or the database
    refusing every request, gives a few lines, not millions.
    """

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self._seconds = seconds
        # condition -> (when its last line was written, lines dropped since)
        self._seen: dict[tuple[str, int, str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if self._seconds <= 0:
            return True
        error = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else ""
        condition = (record.name, record.levelno, str(record.msg), error)
        last = self._seen.get(condition)
        if last is not None and record.created - last[0] < self._seconds:
            self._seen[condition] = (last[0], last[1] + 1)
            return False
        if len(self._seen) > _MAX_CONDITIONS:
            self._seen.clear()
        self._seen[condition] = (record.created, 0)
        if last is not None and last[1]:
            record.msg = (
                f"{record.msg} (and {last[1]} more like it in the last {self._seconds:g} s)"
            )
        return True


# Distinct conditions remembered; past this the memory starts afresh.
_MAX_CONDITIONS = 10_000


def configure(level: str, fmt: str, repeat_seconds: float = 0.0) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(RepeatFilter(repeat_seconds))
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Faust and aiokafka are chatty at INFO about every rebalance step, pgserver prints all
    # of initdb's and pg_ctl's output: heard only at BATCHLINE_LOG_LEVEL=debug (`dev -v`).
    quiet = logging.INFO if root.level <= logging.DEBUG else max(root.level, logging.WARNING)
    for noisy in ("aiokafka", "faust", "mode", "consumers.transport", "pgserver"):
        logging.getLogger(noisy).setLevel(quiet)
