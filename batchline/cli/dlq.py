"""``batchline dlq list | show ID | replay``: the dead-letter topic from a terminal."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

import asyncpg
import orjson
from tqdm import tqdm

from batchline.settings import Settings
from sql import db
from sql.replay_runs import ReplayRuns
from streams import dlq
from streams.deadletter import Stage
from streams.producer import AsyncProducer

_MESSAGE_WIDTH = 60


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("dlq", help="inspect and replay dead letters")
    actions = parser.add_subparsers(dest="dlq_command", required=True)

    listing = actions.add_parser("list", help="dead letters as a table, newest first")
    _add_filters(listing)
    listing.add_argument("--limit", type=_limit, default=100, help="newest N (default 100)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")

    show = actions.add_parser("show", help="one dead letter: headers and value")
    show.add_argument("id", help="<partition>:<offset> on batchline.dlq, as `list` shows")
    show.add_argument("--json", action="store_true", help="as one JSON object")

    replay = actions.add_parser(
        "replay", help="put dead letters back on their source topic (pending ones only)"
    )
    _add_filters(replay)
    replay.add_argument("--dry-run", action="store_true", help="count, change nothing")
    replay.add_argument(
        "--rate", type=_rate, default=None, metavar="N/s", help="at most N messages a second"
    )


def _moment(text: str) -> datetime:
    try:
        return dlq.parse_moment(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _limit(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= _MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"not a limit: {text!r} (1 to {_MAX_LIMIT})")
    return int(text)


_MAX_LIMIT = 1_000_000


def _rate(text: str) -> float:
    try:
        return dlq.parse_rate(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since", type=_moment, help="dead-lettered at or after: ISO time or age (2h, 7d)"
    )
    parser.add_argument("--until", type=_moment, help="dead-lettered before: ISO time or age")
    parser.add_argument("--error-class", help="e.g. ValidationError, UnknownEntity")
    parser.add_argument("--entity", help="the envelope's entity")
    parser.add_argument("--stage", choices=[s.value for s in Stage])
    parser.add_argument("--key", help="Kafka key (the batch id, for chunks batchline produced)")
    parser.add_argument(
        "--status",
        choices=[s.value for s in dlq.LetterStatus],
        help="pending, replayed or parked (a replay puts back only pending ones)",
    )


def _filters(args: argparse.Namespace) -> dlq.DeadLetterFilter:
    return dlq.DeadLetterFilter(
        since=args.since,
        until=args.until,
        error_class=args.error_class,
        entity=args.entity,
        stage=args.stage,
        key=args.key,
        status=args.status,
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.dlq_command == "list":
        return asyncio.run(_list(settings, _filters(args), args.limit, args.json))
    if args.dlq_command == "show":
        return asyncio.run(_show(settings, args.id, args.json))
    return asyncio.run(_replay(settings, _filters(args), args.dry_run, args.rate))


@asynccontextmanager
async def _pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    # One connection holds the replay lock while the run writes its marks on another.
    pool = await db.create_pool(settings.require_database_url(), max_size=3)
    try:
        yield pool
    finally:
        await pool.close()


async def _list(
    settings: Settings, filters: dlq.DeadLetterFilter, limit: int, as_json: bool
) -> int:
    async with _pool(settings) as pool:
        found = await dlq.list_entries(settings, ReplayRuns(pool), filters, limit)
    if as_json:
        for entry in found:
            sys.stdout.write(orjson.dumps(dlq.entry_view(entry)).decode() + "\n")
        return 0
    print_table(found, sys.stdout)
    return 0


def _time(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def _cell(text: str | None, width: int | None = None) -> str:
    flat = " ".join((text or "-").split())
    if width is not None and len(flat) > width:
        return flat[: width - 1] + "…"
    return flat


def print_table(found: Sequence[dlq.Entry], out: TextIO) -> None:
    header = (
        "ID",
        "DEAD-LETTERED (UTC)",
        "STAGE",
        "ERROR",
        "ENTITY",
        "KEY",
        "TRIES",
        "REPLAYS",
        "STATUS",
        "MESSAGE",
    )
    rows = [
        (
            entry.id,
            _time(entry.letter.dead_lettered_at),
            entry.letter.stage.value,
            _cell(entry.letter.error_class),
            _cell(entry.entity, 20),
            _cell(entry.key, 24),
            str(entry.letter.attempts),
            str(entry.letter.replay_count),
            entry.status.value,
            _cell(entry.letter.error_message, _MESSAGE_WIDTH),
        )
        for entry in found
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        out.write("\n")
    out.write(f"{len(rows)} dead letter{'s' if len(rows) != 1 else ''}\n")


async def _show(settings: Settings, letter_id: str, as_json: bool) -> int:
    try:
        dlq.parse_id(letter_id)
    except ValueError as exc:
        print(f"batchline: {exc}", file=sys.stderr)
        return 2
    async with _pool(settings) as pool:
        entry = await dlq.find(settings, ReplayRuns(pool), letter_id)
    if entry is None:
        print(f"batchline: no dead letter {letter_id}", file=sys.stderr)
        return 1
    view = dlq.entry_view(entry, with_value=True)
    if as_json:
        sys.stdout.write(orjson.dumps(view).decode() + "\n")
        return 0
    source = view["source"]
    lines = [
        ("id", view["id"]),
        ("status", view["status"] + (f" by {entry.replay_id}" if entry.replay_id else "")),
        ("dead-lettered", _time(entry.letter.dead_lettered_at)),
        ("stage", view["stage"]),
        ("error", f"{view['error_class']}: {view['error_message']}"),
        ("source", f"{source['topic']} partition {source['partition']} offset {source['offset']}"),
        ("origin", view["origin"]),
        ("attempts", str(view["attempts"])),
        ("first failed", _time(entry.letter.first_failed_at)),
        ("replays", str(view["replay_count"])),
        ("entity", view["entity"] or "-"),
        ("batch", view["batch_id"] or "-"),
        ("key", _shown_bytes({"value": view["key"], "value_format": view["key_format"]})),
    ]
    lines += [(f"header {h['name']}", _shown_bytes(h)) for h in view["headers"]]
    for label, text in lines:
        print(f"{label:<13} {text}")
    print(f"value ({view['value_format']}, {view['size']} bytes):")
    if view["value_format"] == "json":
        print(orjson.dumps(view["value"], option=orjson.OPT_INDENT_2).decode())
    elif view["value"] is not None:
        print(view["value"])
    return 0


def _shown_bytes(view: dict[str, Any]) -> str:
    """A key or header value on one line: text as it is, else its form in brackets."""
    if view["value_format"] == "none":
        return "- (null)"
    if view["value_format"] == "base64":
        return f"{view['value']} (base64)"
    return str(view["value"])


async def _replay(
    settings: Settings, filters: dlq.DeadLetterFilter, dry_run: bool, rate: float | None
) -> int:
    async with _pool(settings) as pool:
        producer = AsyncProducer(settings.librdkafka_producer_config())
        try:
            runs = ReplayRuns(pool)
            run = await runs.create("cli", filters.described(), dry_run, rate)
            print(f"{run.id}: {'dry run, ' if dry_run else ''}reading batchline.dlq", flush=True)
            with _Progress() as progress:
                result = await dlq.replay(settings, runs, producer, run, progress.update)
        finally:
            await producer.close()
    print(result.summary())
    return 0 if result.status is dlq.RunStatus.COMPLETED else 1


class _Progress:
    """Two bars on stderr: dead letters scanned, then messages replayed of those chosen."""

    def __init__(self) -> None:
        self._scan: tqdm[Any] | None = None
        self._replay: tqdm[Any] | None = None

    def __enter__(self) -> _Progress:
        self._scan = tqdm(desc="scanned", unit=" letters", file=sys.stderr, leave=True)
        return self

    def update(self, phase: dlq.Phase, counts: dlq.ReplayCounts) -> None:
        if phase is dlq.Phase.SCANNING and self._scan is not None:
            self._scan.update(counts.scanned - self._scan.n)
            self._scan.set_postfix(selected=counts.selected, parked=counts.parked, refresh=False)
            return
        if self._replay is None:
            if self._scan is not None:
                self._scan.close()
            self._replay = tqdm(
                desc="replayed", total=counts.selected, unit=" msg", file=sys.stderr
            )
        self._replay.update(counts.replayed - self._replay.n)

    def __exit__(self, *_exc: object) -> None:
        for bar in (self._scan, self._replay):
            if bar is not None:
                bar.close()
