"""``batchline load FILE``: send a large NDJSON or CSV file to the batch-inserts API."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm
from yarl import URL

from batchline.loader.loading import LoadOptions, load
from batchline.loader.reading import (
    FileFormat,
    LineError,
    UnreadableFile,
    estimated_records,
    format_for,
)
from batchline.loader.sending import RetryPolicy

# Line errors shown as they are found; the rest are counted (and all are in --report).
_SHOWN_LINE_ERRORS = 20


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "load",
        help="send an NDJSON or CSV file of activities to the API in batches",
        description="Send a large NDJSON (one activity per line) or CSV (header row naming"
        " the fields) file to POST /api/v1/batch-inserts in concurrent batches. Re-running"
        " the same command after a crash inserts nothing twice.",
    )
    parser.add_argument("file", type=Path, help="the NDJSON or CSV file")
    parser.add_argument(
        "--url",
        type=_api_url,
        default="http://127.0.0.1:8080",
        help="the API (default %(default)s)",
    )
    parser.add_argument(
        "--batch-size", type=_positive, default=1000, help="records per request (default 1000)"
    )
    parser.add_argument(
        "--concurrency", type=_positive, default=4, help="requests in flight (default 4)"
    )
    parser.add_argument(
        "--format",
        dest="file_format",
        choices=[f.value for f in FileFormat],
        help="default: from the extension (.ndjson, .jsonl, .json, .csv)",
    )
    parser.add_argument(
        "--idempotency-prefix",
        default="load-",
        help="starts every batch's Idempotency-Key; change it to send the file again as new"
        " batches (default %(default)s)",
    )
    parser.add_argument(
        "--publish-events", action="store_true", help="publish a domain event per insert"
    )
    parser.add_argument(
        "--report", type=Path, help="write every line not inserted (line, error, details) here"
    )
    parser.add_argument(
        "--max-attempts",
        type=_positive,
        default=RetryPolicy().max_attempts,
        help="tries per request on 503, 409 in flight or connection errors, with doubling"
        " backoff (default %(default)s)",
    )


def _api_url(text: str) -> str:
    url = URL(text)
    if url.scheme not in ("http", "https") or not url.host:
        raise argparse.ArgumentTypeError(f"expected http://host:port, got {text!r}")
    return text


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    path: Path = args.file
    if not path.is_file():
        print(f"batchline: {path} is not a file", file=sys.stderr)
        return 2
    try:
        file_format = FileFormat(args.file_format) if args.file_format else format_for(path)
    except UnreadableFile as exc:
        print(f"batchline: {exc}", file=sys.stderr)
        return 2
    options = LoadOptions(
        path=path,
        file_format=file_format,
        url=args.url,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        idempotency_prefix=args.idempotency_prefix,
        publish_events=args.publish_events,
        report=args.report,
        retry=RetryPolicy(max_attempts=args.max_attempts),
    )
    bars = _Bars(estimated_records(path, file_format))
    try:
        summary = asyncio.run(load(options, bars))
    except KeyboardInterrupt:
        bars.close(finished=False)
        print(
            "batchline: interrupted; run the same command again to carry on (batches"
            " already sent are not inserted twice)",
            file=sys.stderr,
        )
        return 130
    bars.close(finished=True)
    print("\n".join(summary.lines()))
    return 0 if summary.everything_sent else 1


class _Bars:
    """Two bars on stderr, in records: sent (requests started) and completed (answered).

    The total is the file's line count, an estimate: local line errors take it down.
    """

    def __init__(self, estimated_total: int) -> None:
        self._sent = tqdm(desc="sent     ", total=estimated_total, unit=" rec", file=sys.stderr)
        self._done = tqdm(desc="completed", total=estimated_total, unit=" rec", file=sys.stderr)
        self._failed = 0
        self._line_errors = 0

    def sending(self, records: int) -> None:
        self._sent.update(records)

    def completed(self, records: int, failed: int) -> None:
        if failed:
            self._failed += failed
            self._done.set_postfix(failed=self._failed, refresh=False)
        self._done.update(records)

    def line_error(self, error: LineError) -> None:
        self._line_errors += 1
        for bar in (self._sent, self._done):
            if bar.total:
                bar.total -= 1
        if self._line_errors <= _SHOWN_LINE_ERRORS:
            tqdm.write(f"line {error.line}: {error.message}", file=sys.stderr)
        elif self._line_errors == _SHOWN_LINE_ERRORS + 1:
            tqdm.write(
                "more line errors: counted in the summary, listed by --report", file=sys.stderr
            )

    def close(self, *, finished: bool) -> None:
        for bar in (self._sent, self._done):
            if finished:  # the estimate was the line count; end the bars at what was read
                bar.total = bar.n
                bar.refresh()
            bar.close()
