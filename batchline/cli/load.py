"""``batchline load FILE``: send a large NDJSON or CSV file to the batch-inserts API."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any, Protocol, TextIO

from tqdm import tqdm
from yarl import URL

from batchline.loader.loading import LoadOptions, LoadSummary, NoProgress, Progress, load
from batchline.loader.reading import (
    EXPECTED,
    FileFormat,
    LineError,
    UnreadableFile,
    estimated_records,
    format_for,
    not_as_expected,
)
from batchline.loader.sending import RetryPolicy

# The client's token comes from the environment, not the command line (which `ps` shows).
TOKEN_VARIABLE = "BATCHLINE_TOKEN"  # noqa: S105 - the name of a variable, not a secret
# Line errors shown as they are found; the rest are counted (and all are in --report).
_SHOWN_LINE_ERRORS = 5
# Without a terminal (a log, CI), progress is a plain line this often.
_PROGRESS_LINE_SECONDS = 10.0


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "load",
        help="send an NDJSON or CSV file of activities to the API in batches",
        description="Send a large NDJSON (one activity per line) or CSV (header row naming"
        " the fields) file to POST /api/v1/batch-inserts in concurrent batches. Re-running"
        " the same command after a crash inserts nothing twice. When the API requires tokens,"
        f" put one with the producer role in the environment variable {TOKEN_VARIABLE}.",
    )
    parser.add_argument("file", type=Path, help="the NDJSON or CSV file")
    parser.add_argument(
        "--url",
        type=_api_url,
        help="the API (default: that of a `batchline dev` running from this folder, else"
        " http://127.0.0.1:8080)",
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
        "--report",
        type=Path,
        help="write every line not inserted (line, error, details) here, in line order",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress and no line errors on stderr; the summary is still printed",
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
        problem = not_as_expected(path, file_format)
    except (UnreadableFile, OSError) as exc:
        print(f"batchline: {exc}", file=sys.stderr)
        return 2
    if problem is not None:
        print(
            f"batchline: {path.name} is not {file_format.value.upper()}: {problem}.\n"
            f"Expected {EXPECTED[file_format.value]}.",
            file=sys.stderr,
        )
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
        token=os.environ.get(TOKEN_VARIABLE) or None,
    )
    progress = _progress(args.quiet, estimated_records(path, file_format), sys.stderr)
    summary = LoadSummary(path, args.url)
    try:
        asyncio.run(load(options, progress, summary))
    except KeyboardInterrupt:
        progress.close(finished=False)
        summary.interrupted = True
        print("\n".join(summary.lines()))
        return 130
    progress.close(finished=True)
    print("\n".join(summary.lines()))
    return 0 if summary.everything_sent and not summary.nothing_sent else 1


class _Shown(Progress, Protocol):
    def close(self, *, finished: bool) -> None: ...


class _Quiet(NoProgress):
    def close(self, *, finished: bool) -> None:
        pass


def _progress(quiet: bool, estimated_total: int, out: TextIO) -> _Shown:
    if quiet:
        return _Quiet()
    if out.isatty():
        return _Bars(estimated_total)
    return _Lines(estimated_total, out)


class _LineErrors:
    """The first few line errors as they are found, then one line saying there are more."""

    def __init__(self) -> None:
        self.count = 0

    def show(self, error: LineError, write: Any) -> None:
        self.count += 1
        if self.count <= _SHOWN_LINE_ERRORS:
            write(f"line {error.line}: {error.message}")
        elif self.count == _SHOWN_LINE_ERRORS + 1:
            write("more line errors: counted in the summary, listed by --report")


class _Lines:
    """Progress as a plain line every few seconds, for logs: no carriage returns."""

    def __init__(self, estimated_total: int, out: TextIO) -> None:
        self._total = estimated_total
        self._out = out
        self._sent = self._done = self._failed = 0
        self._started = self._last = time.monotonic()
        self._errors = _LineErrors()

    def sending(self, records: int) -> None:
        self._sent += records
        self._maybe_report()

    def completed(self, records: int, failed: int) -> None:
        self._done += records
        self._failed += failed
        self._maybe_report()

    def line_error(self, error: LineError) -> None:
        self._errors.show(error, self._write)

    def close(self, *, finished: bool) -> None:
        if finished and self._done:
            self._report()

    def _maybe_report(self) -> None:
        if time.monotonic() - self._last >= _PROGRESS_LINE_SECONDS:
            self._report()

    def _report(self) -> None:
        self._last = time.monotonic()
        elapsed = self._last - self._started
        self._write(
            f"progress: {self._done} of ~{self._total} records answered ({self._failed}"
            f" failed), {self._sent} sent, {elapsed:.0f} s"
        )

    def _write(self, line: str) -> None:
        print(line, file=self._out, flush=True)


class _Bars:
    """Two bars on stderr, in records: sent (requests started) and completed (answered).

    The total is the file's line count, an estimate: local line errors take it down.
    """

    def __init__(self, estimated_total: int) -> None:
        self._sent = tqdm(desc="sent     ", total=estimated_total, unit=" rec", file=sys.stderr)
        self._done = tqdm(desc="completed", total=estimated_total, unit=" rec", file=sys.stderr)
        self._failed = 0
        self._line_errors = _LineErrors()

    def sending(self, records: int) -> None:
        self._sent.update(records)

    def completed(self, records: int, failed: int) -> None:
        if failed:
            self._failed += failed
            self._done.set_postfix(failed=self._failed, refresh=False)
        self._done.update(records)

    def line_error(self, error: LineError) -> None:
        for bar in (self._sent, self._done):
            if bar.total:
                bar.total -= 1
        self._line_errors.show(error, self._write)

    def _write(self, line: str) -> None:
        tqdm.write(line, file=sys.stderr)

    def close(self, *, finished: bool) -> None:
        for bar in (self._sent, self._done):
            if finished:  # the estimate was the line count; end the bars at what was read
                bar.total = bar.n
                bar.refresh()
            bar.close()
