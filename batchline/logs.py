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


def configure(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
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
