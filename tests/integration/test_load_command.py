"""`batchline load FILE` against the real pipeline: rows, summary, report, idempotent re-runs."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from batchline.cli.embedded import free_port
from batchline.cli.runtime import serving_api
from batchline.loader.loading import LoadOptions, load
from batchline.loader.reading import FileFormat
from batchline.metrics import Metrics
from batchline.settings import Settings
from consumers.app import WorkerResources
from tests.integration.activities import activity
from tests.integration.processes import batchline_env, run_cli

COUNT_ROWS = "SELECT count(*) FROM activity WHERE coordinator_id = $1"


def _write_ndjson(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"\n".join(lines) + b"\n")


def _report(path: Path) -> list[dict[str, Any]]:
    """The report's entries as written: in the file's line order, whatever batch finished
    first."""
    entries = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert [e["line"] for e in entries] == sorted(e["line"] for e in entries)
    return entries


async def test_ndjson_file_is_loaded_in_batches_and_a_second_run_inserts_nothing(
    api_url: str, pg: asyncpg.Connection, settings: Settings, tag: str, tmp_path: Path
) -> None:
    lines = [orjson.dumps(activity(tag, n)) for n in range(2500)]
    lines.insert(9, b'{"coordinator_id": "half a record",')  # line 10: not JSON
    lines.insert(99, orjson.dumps(activity(tag, 5)))  # line 100: same natural key as line 6
    lines.insert(1999, orjson.dumps(activity(tag, 9999, duration_minutes=0)))  # line 2000
    path = tmp_path / "activities.ndjson"
    _write_ndjson(path, lines)
    report = tmp_path / "report.ndjson"

    summary = await load(
        LoadOptions(
            path, FileFormat.NDJSON, url=api_url, batch_size=400, concurrency=3, report=report
        )
    )

    assert summary.everything_sent
    assert summary.batches_completed == 7  # 2502 records
    assert summary.records_completed == 2502
    assert summary.inserted == 2500
    assert summary.failed_by_error == Counter(
        {"unique_constraint_violation": 1, "validation_error": 1}
    )
    assert summary.line_errors_by_code == Counter({"invalid_json": 1})
    assert (summary.batches_replayed, summary.unsent) == (0, [])
    assert await pg.fetchval(COUNT_ROWS, f"coord-{tag}") == 2500
    entries = _report(report)
    assert [(e["line"], e["error"]) for e in entries] == [
        (10, "invalid_json"),
        (100, "unique_constraint_violation"),
        (2000, "validation_error"),
    ]
    assert entries[0]["details"].startswith("not valid JSON")
    assert [d["field"] for d in entries[2]["details"]] == ["duration_minutes"]
    assert entries[2]["batch_id"].startswith("batch-")

    again = await run_cli(
        settings, "load", str(path), "--url", api_url, "--batch-size", "400", "--concurrency", "3"
    )

    assert again.code == 0, again.err
    assert await pg.fetchval(COUNT_ROWS, f"coord-{tag}") == 2500
    assert "7 batches, 2502 records" in again.out
    assert "inserted      0\n" in again.out
    assert "2500 inserted by an earlier run (7 batches answered" in again.out
    assert "unique_constraint_violation: 1" in again.out
    assert "local errors  1 (invalid_json: 1)" in again.out
    assert "line 10: not valid JSON" in again.err
    # stderr is no terminal here: progress as plain lines, no carriage returns or escapes.
    assert "progress: 2502 of ~2503 records answered (2 failed), 2502 sent" in again.err
    assert "\r" not in again.err
    assert "\x1b" not in again.err


async def test_csv_file_is_loaded_with_its_durations_as_integers(
    api_url: str, pg: asyncpg.Connection, settings: Settings, tag: str, tmp_path: Path
) -> None:
    path = tmp_path / "activities.csv"
    rows = [f"coord-{tag},mentor-{n},call,2026-03-28,{30 + n % 60}" for n in range(300)]
    rows.insert(49, f"coord-{tag},mentor-x,call,2026-03-28")  # line 51: a column short
    rows.insert(149, f"coord-{tag},mentor-y,call,2026-03-28,ninety")  # line 151
    header = "coordinator_id,mentor_id,activity_type,activity_date,duration_minutes"
    path.write_text("\r\n".join([header, *rows]) + "\r\n")
    report = tmp_path / "report.ndjson"

    loaded = await run_cli(
        settings,
        "load",
        str(path),
        "--url",
        api_url,
        "--batch-size",
        "100",
        "--report",
        str(report),
    )

    assert loaded.code == 0, loaded.err
    assert "4 batches, 301 records" in loaded.out
    assert "inserted      300\n" in loaded.out
    assert "failed        1 (validation_error: 1)" in loaded.out
    assert "local errors  1 (invalid_csv_row: 1)" in loaded.out
    assert "They are data errors, not a failure of the load." in loaded.out
    stored = await pg.fetch(
        "SELECT mentor_id, duration_minutes FROM activity WHERE coordinator_id = $1",
        f"coord-{tag}",
    )
    assert len(stored) == 300
    assert dict(stored)["mentor-61"] == 31
    entries = _report(report)
    assert [(e["line"], e["error"]) for e in entries] == [
        (51, "invalid_csv_row"),
        (151, "validation_error"),
    ]
    assert entries[1]["details"][0]["field"] == "duration_minutes"


async def test_a_changed_file_under_the_same_keys_stops_with_a_clear_message(
    api_url: str, pg: asyncpg.Connection, settings: Settings, tag: str, tmp_path: Path
) -> None:
    path = tmp_path / "activities.ndjson"
    _write_ndjson(path, [orjson.dumps(activity(tag, n)) for n in range(10)])
    first = await run_cli(settings, "load", str(path), "--url", api_url, "--batch-size", "5")
    assert first.code == 0, first.err
    # Same path and size (mentor-7 is now mentor-x): batch 2 is not what its key was sent with.
    _write_ndjson(path, [orjson.dumps(activity(tag, "x" if n == 7 else n)) for n in range(10)])

    second = await run_cli(
        settings, "load", str(path), "--url", api_url, "--batch-size", "5", "--concurrency", "1"
    )

    assert second.code == 1
    assert "not sent      batch 2 (lines 6-10, 5 records): 422 idempotency_key_reused" in second.out
    assert "Not everything was sent" in second.out
    assert await pg.fetchval(COUNT_ROWS, f"coord-{tag}") == 10


async def test_an_api_that_never_answers_fails_the_load_after_bounded_attempts(
    settings: Settings, tmp_path: Path, tag: str
) -> None:
    path = tmp_path / "activities.ndjson"
    _write_ndjson(path, [orjson.dumps(activity(tag, n)) for n in range(3)])
    nobody = f"http://127.0.0.1:{free_port()}"

    result = await run_cli(settings, "load", str(path), "--url", nobody, "--max-attempts", "2")

    assert result.code == 1
    assert "not sent      batch 1 (lines 1-3, 3 records): gave up after 2 attempts" in result.out
    assert f"No record was sent: the API at {nobody} refused or did not answer" in result.out
    assert "not a failure of the load" not in result.out


async def test_batches_answered_202_are_followed_to_completion(
    settings: Settings,
    worker: WorkerResources,
    metrics: Metrics,
    pg: asyncpg.Connection,
    tag: str,
    tmp_path: Path,
) -> None:
    impatient = settings.model_copy(update={"sync_wait_seconds": 0, "http_port": free_port()})
    path = tmp_path / "activities.ndjson"
    _write_ndjson(path, [orjson.dumps(activity(tag, n)) for n in range(600)])

    async with serving_api(impatient, metrics) as url:
        summary = await load(LoadOptions(path, FileFormat.NDJSON, url=url, batch_size=200))

    assert summary.everything_sent
    assert (summary.batches_completed, summary.inserted, summary.failed) == (3, 600, 0)
    assert await pg.fetchval(COUNT_ROWS, f"coord-{tag}") == 600


async def test_a_file_that_is_not_ndjson_is_refused_saying_what_it_looks_like(
    api_url: str, settings: Settings, tag: str, tmp_path: Path
) -> None:
    records = [activity(tag, n) for n in range(3)]
    shapes = {
        "array.json": (orjson.dumps(records, option=orjson.OPT_INDENT_2), "one JSON array"),
        "body.json": (orjson.dumps({"activities": records}), "a request body"),
        "pretty-body.ndjson": (
            orjson.dumps({"activities": records}, option=orjson.OPT_INDENT_2),
            "a request body",
        ),
    }
    for name, (content, looks_like) in shapes.items():
        path = tmp_path / name
        path.write_bytes(content)

        result = await run_cli(settings, "load", str(path), "--url", api_url)

        assert result.code == 2, (name, result.err)
        assert f"{name} is not NDJSON: it holds {looks_like}" in result.err.replace(
            "it is a request", "it holds a request"
        ), result.err
        assert "jq -c" in result.err
        assert "Expected NDJSON: one activity per line" in result.err
        assert result.out == ""


async def test_nothing_sent_is_a_failure_and_only_the_first_bad_lines_are_echoed(
    api_url: str, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "garbage.ndjson"
    _write_ndjson(path, [b"{not json" for _ in range(23)])

    result = await run_cli(settings, "load", str(path), "--url", api_url)

    assert result.code == 1
    assert "No record was sent: garbage.ndjson holds no activity to send." in result.out
    assert "local errors  23 (invalid_json: 23)" in result.out
    assert result.err.count("not valid JSON") == 5
    assert "more line errors: counted in the summary, listed by --report" in result.err


async def test_quiet_prints_only_the_summary(
    api_url: str, settings: Settings, tag: str, tmp_path: Path
) -> None:
    path = tmp_path / "activities.ndjson"
    _write_ndjson(path, [orjson.dumps(activity(tag, n)) for n in range(3)] + [b"{"])

    result = await run_cli(settings, "load", str(path), "--url", api_url, "--quiet")

    assert result.code == 0, result.err
    assert result.err == ""
    assert "inserted      3" in result.out


async def test_ctrl_c_prints_how_far_the_load_got(
    settings: Settings, tag: str, tmp_path: Path
) -> None:
    path = tmp_path / "activities.ndjson"
    _write_ndjson(path, [orjson.dumps(activity(tag, n)) for n in range(10)])

    asked = asyncio.Event()

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        asked.set()
        while await reader.read(1 << 16):  # until the client goes away
            pass
        writer.close()

    silent = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    async with silent:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "batchline.cli",
            "load",
            str(path),
            "--url",
            f"http://127.0.0.1:{port}",
            env=batchline_env(settings),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        # Interrupted while its first request waits for an answer.
        await asyncio.wait_for(asked.wait(), 60)
        process.send_signal(signal.SIGINT)
        out, _ = await asyncio.wait_for(process.communicate(), 30)

    assert process.returncode == 130
    text = out.decode()
    assert "activities.ndjson: 0 batches, 0 records" in text
    assert "stopped       interrupted" in text
    assert "Interrupted. Run the same command again to carry on" in text
