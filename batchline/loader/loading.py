"""Reading batches, sending them concurrently, and summing up what happened to each line."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import aiohttp
import orjson

from batchline.loader.reading import (
    Batch,
    FileFormat,
    LineError,
    UnreadableFile,
    batches,
    idempotency_key_base,
    read_items,
)
from batchline.loader.sending import BatchAnswer, BatchNotSent, BatchSender, RetryPolicy

# The server may hold a POST for its sync wait (10 s by default) before answering 202.
_READ_TIMEOUT_SECONDS = 120
_CONNECT_TIMEOUT_SECONDS = 10
# A record the server gave no result for: its batch failed before reaching it.
NO_RESULT = "no_result"
# A record of a batch that could not be sent (the report lists it; nothing was inserted).
NOT_SENT = "not_sent"


@dataclass(frozen=True, slots=True)
class LoadOptions:
    path: Path
    file_format: FileFormat
    url: str = "http://127.0.0.1:8080"
    batch_size: int = 1000
    concurrency: int = 4
    idempotency_prefix: str = "load-"
    publish_events: bool = False
    report: Path | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)


class Progress(Protocol):
    def sending(self, records: int) -> None: ...
    def completed(self, records: int, failed: int) -> None: ...
    def line_error(self, error: LineError) -> None: ...


class NoProgress:
    def sending(self, records: int) -> None:
        pass

    def completed(self, records: int, failed: int) -> None:
        pass

    def line_error(self, error: LineError) -> None:
        pass


@dataclass(frozen=True, slots=True)
class UnsentBatch:
    number: int
    first_line: int
    last_line: int
    records: int
    reason: str


@dataclass(slots=True)
class LoadSummary:
    path: Path
    url: str = ""
    batches_completed: int = 0
    records_completed: int = 0
    inserted: int = 0
    # Inserted by an earlier run with the same idempotency keys (answers replayed).
    inserted_earlier: int = 0
    batches_replayed: int = 0
    failed_by_error: Counter[str] = field(default_factory=Counter)
    line_errors_by_code: Counter[str] = field(default_factory=Counter)
    unsent: list[UnsentBatch] = field(default_factory=list)
    read_error: str | None = None
    elapsed_seconds: float = 0.0
    # Stopped by the user (Ctrl-C): the summary says how far it got.
    interrupted: bool = False

    @property
    def failed(self) -> int:
        return sum(self.failed_by_error.values())

    @property
    def line_errors(self) -> int:
        return sum(self.line_errors_by_code.values())

    @property
    def everything_sent(self) -> bool:
        """Every record read was sent and answered (record-level failures are data)."""
        return not self.unsent and self.read_error is None and not self.interrupted

    @property
    def nothing_sent(self) -> bool:
        """Not one record reached the API (the file held none, or none could be sent)."""
        return self.records_completed == 0

    def lines(self) -> list[str]:
        rate = self.records_completed / self.elapsed_seconds if self.elapsed_seconds else 0.0
        out = [
            f"{self.path.name}: {self.batches_completed} batches, {self.records_completed}"
            f" records in {self.elapsed_seconds:.1f} s ({rate:.0f} records/s)",
            f"  inserted      {self.inserted}",
        ]
        if self.batches_replayed:
            out.append(
                f"  already done  {self.inserted_earlier} inserted by an earlier run"
                f" ({self.batches_replayed} batches answered from their idempotency keys;"
                " nothing inserted twice)"
            )
        out.append(f"  failed        {self.failed}{_by_code(self.failed_by_error)}")
        out.append(f"  local errors  {self.line_errors}{_by_code(self.line_errors_by_code)}")
        out.extend(
            f"  not sent      batch {u.number} (lines {u.first_line}-{u.last_line},"
            f" {u.records} records): {u.reason}"
            for u in self.unsent
        )
        if self.read_error is not None:
            out.append(f"  stopped       {self.read_error}")
        if self.interrupted:
            out.append("  stopped       interrupted: batches not answered yet are not counted")
        if self.failed or self.line_errors:
            out.append(
                "Some records were not inserted (see above; --report lists each with its line)."
                + (
                    " They are data errors, not a failure of the load."
                    if self.everything_sent
                    else ""
                )
            )
        if self.interrupted:
            out.append(
                "Interrupted. Run the same command again to carry on: batches already sent are"
                " answered from their idempotency keys, not inserted twice."
            )
        elif self.nothing_sent and self.unsent:
            out.append(
                f"No record was sent: the API at {self.url} refused or did not answer the"
                " first batch (see above). Is batchline running there? (`batchline dev` starts"
                " it; --url points elsewhere.) Then run the same command again."
            )
        elif self.nothing_sent and self.read_error is None:
            out.append(f"No record was sent: {self.path.name} holds no activity to send.")
        elif not self.everything_sent:
            out.append(
                "Not everything was sent: no batch was started after the first one that could"
                " not be sent. Fix the cause and run the same command again: batches already"
                " sent are answered from their idempotency keys, not inserted twice."
            )
        return out


def _by_code(counts: Counter[str]) -> str:
    if not counts:
        return ""
    return " (" + ", ".join(f"{code}: {n}" for code, n in counts.most_common()) + ")"


class _Report:
    """Per-line failures as NDJSON, in the file's line order.

    Batches finish out of order; each one's entries wait until every earlier batch has been
    written, so at most the batches in flight are held.
    """

    def __init__(self, out: IO[bytes] | None) -> None:
        self._out = out
        self._next = 1
        self._waiting: dict[int, list[dict[str, Any]]] = {}

    def batch_done(self, number: int, entries: list[dict[str, Any]]) -> None:
        if self._out is None:
            return
        self._waiting[number] = entries
        while self._next in self._waiting:
            self._write(self._waiting.pop(self._next))
            self._next += 1

    def close(self) -> None:
        """Writes what still waits (after an interruption: batches past an unanswered one)."""
        for number in sorted(self._waiting):
            self._write(self._waiting.pop(number))

    def _write(self, entries: list[dict[str, Any]]) -> None:
        assert self._out is not None
        for entry in sorted(entries, key=_line_of):
            self._out.write(orjson.dumps(entry) + b"\n")


def _line_of(entry: dict[str, Any]) -> int:
    line: int = entry["line"]
    return line


@contextlib.contextmanager
def _report(path: Path | None) -> Iterator[_Report]:
    if path is None:
        yield _Report(None)
        return
    with path.open("wb") as out:
        report = _Report(out)
        try:
            yield report
        finally:
            report.close()


async def load(
    options: LoadOptions, progress: Progress | None = None, summary: LoadSummary | None = None
) -> LoadSummary:
    """Send the file; returns when every batch read has been answered or given up on.

    ``summary``, when given, is filled as batches finish: after an interruption it says how
    far the load got.

    Reading runs in a thread one batch at a time, at most ``concurrency`` batches are in
    flight, and nothing more is read than they need: memory stays at a few batches
    whatever the file's size. After the first batch that cannot be sent no further
    batches are started (those in flight finish).
    """
    progress = progress or NoProgress()
    started = time.perf_counter()
    summary = summary or LoadSummary(options.path, options.url)
    key_base = idempotency_key_base(
        options.path, options.file_format, options.batch_size, options.idempotency_prefix
    )
    stop = asyncio.Event()
    slots = asyncio.Semaphore(options.concurrency)
    source = batches(read_items(options.path, options.file_format), options.batch_size)
    timeout = aiohttp.ClientTimeout(
        sock_connect=_CONNECT_TIMEOUT_SECONDS, sock_read=_READ_TIMEOUT_SECONDS
    )
    connector = aiohttp.TCPConnector(limit=options.concurrency)

    with _report(options.report) as report:
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            sender = BatchSender(
                session, options.url, publish_events=options.publish_events, retry=options.retry
            )

            async def send(batch: Batch, entries: list[dict[str, Any]]) -> None:
                try:
                    progress.sending(len(batch.records))
                    answer = await sender.send(batch.body(), f"{key_base}{batch.number}")
                except BatchNotSent as exc:
                    summary.unsent.append(
                        UnsentBatch(
                            batch.number,
                            batch.first_line,
                            batch.last_line,
                            len(batch.records),
                            str(exc),
                        )
                    )
                    entries.extend(
                        {"line": r.line, "error": NOT_SENT, "details": str(exc)}
                        for r in batch.records
                    )
                    report.batch_done(batch.number, entries)
                    stop.set()
                else:
                    failed = _account(summary, entries, batch, answer)
                    report.batch_done(batch.number, entries)
                    progress.completed(len(batch.records), failed)
                finally:
                    slots.release()

            try:
                async with asyncio.TaskGroup() as in_flight:
                    while True:
                        await slots.acquire()
                        if stop.is_set():
                            break
                        try:
                            batch = await asyncio.to_thread(next, source, None)
                        except (UnreadableFile, OSError, UnicodeDecodeError) as exc:
                            summary.read_error = f"reading {options.path}: {exc}"
                            break
                        if batch is None:
                            break
                        entries = []
                        for error in batch.line_errors:
                            summary.line_errors_by_code[error.code] += 1
                            entries.append(
                                {"line": error.line, "error": error.code, "details": error.message}
                            )
                            progress.line_error(error)
                        if not batch.records:
                            report.batch_done(batch.number, entries)
                            break
                        in_flight.create_task(send(batch, entries))
            finally:
                # Still inside next() in its thread if this task was cancelled there.
                with contextlib.suppress(ValueError):
                    source.close()
                summary.elapsed_seconds = time.perf_counter() - started
    return summary


def _account(
    summary: LoadSummary, entries: list[dict[str, Any]], batch: Batch, answer: BatchAnswer
) -> int:
    """Adds a finished batch to the summary and its failed records to its report entries."""
    summary.batches_completed += 1
    summary.records_completed += len(batch.records)
    if answer.replayed:
        summary.batches_replayed += 1
        summary.inserted_earlier += answer.inserted
    else:
        summary.inserted += answer.inserted
    answered: set[int] = set()
    failed = 0
    for result in answer.results:
        index = result["index"]
        if not 0 <= index < len(batch.records):
            continue  # not a record this batch sent: nothing of the file to report
        answered.add(index)
        if result["status"] == "success":
            continue
        failed += 1
        error = result.get("error") or "failed"
        summary.failed_by_error[error] += 1
        entry = {
            "line": batch.records[index].line,
            "error": error,
            "details": result.get("details"),
            "batch_id": answer.batch_id,
            "index": index,
        }
        entries.append(entry)
    for index in range(len(batch.records)):
        if index not in answered:
            failed += 1
            summary.failed_by_error[NO_RESULT] += 1
            entries.append(
                {
                    "line": batch.records[index].line,
                    "error": NO_RESULT,
                    "details": answer.failure_reason,
                    "batch_id": answer.batch_id,
                    "index": index,
                }
            )
    return failed
