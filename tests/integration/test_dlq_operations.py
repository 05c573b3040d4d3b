"""Operators: list, show and replay dead letters from the CLI and over /ops/dlq."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import orjson

from batchline.settings import Settings
from consumers.app import WorkerResources
from tests.integration.activities import JSON, activity, stored_activities
from tests.integration.kafka import completed_batch, produce, read_all, wait_for_records
from tests.integration.processes import run_cli
from tests.integration.refusals import refusing_ledger

INGEST = "batchline.ingest"
DLQ = "batchline.dlq"
NOT_JSON = b"\xff{not json"


def _bootstrap(settings: Settings) -> str:
    assert settings.kafka_bootstrap_servers is not None
    return settings.kafka_bootstrap_servers


async def _letters(
    http: aiohttp.ClientSession, count: int = 1, **filters: str
) -> list[dict[str, Any]]:
    """GET /ops/dlq/messages until at least ``count`` match."""
    for _ in range(200):
        async with http.get("/ops/dlq/messages", params=filters) as response:
            assert response.status == 200
            data: list[dict[str, Any]] = (await response.json())["data"]
        if len(data) >= count:
            return data
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {count} dead letters match {filters}")


async def _finished_replay(http: aiohttp.ClientSession, location: str) -> dict[str, Any]:
    for _ in range(300):
        async with http.get(location) as response:
            assert response.status == 200
            run: dict[str, Any] = await response.json()
        if run["status"] != "running":
            return run
        await asyncio.sleep(0.1)
    raise AssertionError(f"replay {location} did not finish")


async def _start_replay(http: aiohttp.ClientSession, body: dict[str, Any]) -> str:
    async with http.post("/ops/dlq/replays", json=body) as response:
        assert response.status == 202, await response.text()
        run = await response.json()
        location: str = response.headers["Location"]
    assert location == f"/ops/dlq/replays/{run['id']}"
    assert run["status"] == "running"
    return location


async def test_dead_letters_are_listed_filtered_and_shown(
    settings: Settings, worker: WorkerResources, http: aiohttp.ClientSession, tag: str
) -> None:
    not_json_key, unknown_key = f"list-a-{tag}", f"list-b-{tag}"
    produce(_bootstrap(settings), INGEST, [(not_json_key.encode(), NOT_JSON)])
    unknown = orjson.dumps({"entity": f"ent-{tag}", "records": [{"n": 1}]})
    produce(_bootstrap(settings), INGEST, [(unknown_key.encode(), unknown)])

    [by_entity] = await _letters(http, entity=f"ent-{tag}")
    [not_json] = await _letters(http, key=not_json_key, error_class="validationerror")

    assert (by_entity["stage"], by_entity["error_class"]) == ("route", "UnknownEntity")
    assert (by_entity["key"], by_entity["status"], by_entity["replay_count"]) == (
        unknown_key,
        "pending",
        0,
    )
    assert not_json["stage"] == "decode"
    assert await _letters(http, count=0, key=not_json_key, stage="route") == []
    assert len(await _letters(http, key=not_json_key, since="1h")) == 1
    a_minute_ago = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    assert await _letters(http, count=0, key=not_json_key, until=a_minute_ago) == []

    async with http.get(f"/ops/dlq/messages/{not_json['id']}") as response:
        shown = await response.json()
    assert shown["value_format"] == "base64"
    assert base64.b64decode(shown["value"]) == NOT_JSON
    async with http.get(f"/ops/dlq/messages/{by_entity['id']}") as response:
        assert (await response.json())["value"] == {"entity": f"ent-{tag}", "records": [{"n": 1}]}
    async with http.get("/ops/dlq/messages/0:999999999") as response:
        assert response.status == 404
    async with http.get("/ops/dlq/messages/latest") as response:
        assert response.status == 422
    async with http.get("/ops/dlq/messages", params={"since": "yesterday"}) as response:
        assert response.status == 422
    for since in ("99999999h", "9999999999999999999s"):
        async with http.get("/ops/dlq/messages", params={"since": since}) as response:
            assert response.status == 422, since
            assert "reaches before year 1" in (await response.json())["error"]["message"]

    listed = await run_cli(settings, "dlq", "list", "--key", unknown_key)
    assert listed.code == 0, listed.err
    header, row, footer = listed.out.splitlines()
    assert header.split()[:3] == ["ID", "DEAD-LETTERED", "(UTC)"]
    assert row.startswith(by_entity["id"])
    assert "UnknownEntity" in row
    assert "pending" in row
    assert footer == "1 dead letter"
    shown_cli = await run_cli(settings, "dlq", "show", by_entity["id"])
    assert shown_cli.code == 0, shown_cli.err
    assert "stage         route" in shown_cli.out
    assert f'"entity": "ent-{tag}"' in shown_cli.out
    missing = await run_cli(settings, "dlq", "show", "0:999999999")
    assert missing.code == 1
    assert "no dead letter 0:999999999" in missing.err
    for bad in (
        ["--limit", "-1"],
        ["--limit", "0"],
        ["--limit", "9" * 20],
        ["--since", "99999999h"],
    ):
        refused = await run_cli(settings, "dlq", "list", *bad)
        assert refused.code == 2, bad
        assert "Traceback" not in refused.err
        assert f"argument {bad[0]}" in refused.err


async def test_a_fixed_message_replayed_over_http_succeeds_once(
    settings: Settings,
    worker: WorkerResources,
    http: aiohttp.ClientSession,
    pg: asyncpg.Connection,
    tag: str,
) -> None:
    batch_id = f"fixable-{tag}"
    chunk = {"entity": "activity", "batch_id": batch_id, "records": [activity(tag, 0)]}
    chunk["records"].append(activity(tag, 1))
    async with refusing_ledger(pg, batch_id):
        produce(_bootstrap(settings), INGEST, [(batch_id.encode(), orjson.dumps(chunk))])
        failed = await completed_batch(http, batch_id)
        [letter] = await _letters(http, key=batch_id)
    assert (failed["inserted_count"], failed["failed_count"]) == (0, 2)
    assert letter["status"] == "pending"
    # The operator fixed the cause (the trigger is gone): replay what failed.

    location = await _start_replay(http, {"filters": {"key": batch_id}})
    run = await _finished_replay(http, location)

    assert run["status"] == "completed"
    assert run["counts"] | {"scanned": 0} == {
        "scanned": 0,
        "matched": 1,
        "selected": 1,
        "replayed": 1,
        "parked": 0,
        "already_replayed": 0,
    }
    assert run["progress"] == {"total": 1, "done": 1}
    for _ in range(300):
        fixed = await completed_batch(http, batch_id)
        if fixed["inserted_count"] == 2:
            break
        await asyncio.sleep(0.1)
    assert (fixed["status"], fixed["inserted_count"], fixed["failed_count"]) == ("completed", 2, 0)
    assert [r["status"] for r in fixed["results"]] == ["success", "success"]
    assert await stored_activities(pg, tag) == 2
    [replayed] = await _letters(http, key=batch_id)
    assert (replayed["status"], replayed["replay_id"]) == ("replayed", run["id"])

    again = await _finished_replay(http, await _start_replay(http, {"filters": {"key": batch_id}}))
    assert (again["counts"]["replayed"], again["counts"]["already_replayed"]) == (0, 1)
    async with http.get("/ops/dlq/replays") as response:
        listed = [r["id"] for r in (await response.json())["data"]]
    assert listed[:2] == [again["id"], run["id"]]


async def test_a_message_that_keeps_failing_is_parked_after_the_replay_limit(
    settings: Settings, worker: WorkerResources, tag: str
) -> None:
    key = f"hopeless-{tag}".encode()
    produce(_bootstrap(settings), INGEST, [(key, NOT_JSON)])
    await wait_for_records(_bootstrap(settings), DLQ, lambda r: r.key == key)

    summaries, progress_bars = [], []
    for replays in (1, 2):
        done = await run_cli(settings, "dlq", "replay", "--key", key.decode(), dlq_max_replays=2)
        assert done.code == 0, done.err
        summaries.append(done.out.splitlines()[-1])
        progress_bars.append(done.err)
        await wait_for_records(_bootstrap(settings), DLQ, lambda r: r.key == key, replays + 1)
    last = await run_cli(settings, "dlq", "replay", "--key", key.decode(), dlq_max_replays=2)

    assert all(": 1 replayed, 0 parked" in line for line in summaries), summaries
    assert ": 0 replayed, 1 parked (replay limit reached), 2 already replayed" in last.out
    assert all("scanned" in bars and "replayed: 100%" in bars for bars in progress_bars)
    assert "parked=1" in last.err
    letters = [r for r in read_all(_bootstrap(settings), DLQ) if r.key == key]
    assert [r.headers["batchline.replay.count"] for r in letters] == [b"0", b"1", b"2"]
    assert all(r.value == NOT_JSON for r in letters)
    assert {r.headers["batchline.origin"] for r in letters[1:]} == {
        letters[0].headers["batchline.source.topic"]
        + b":"
        + letters[0].headers["batchline.source.partition"]
        + b":"
        + letters[0].headers["batchline.source.offset"]
    }
    listed = await run_cli(
        settings, "dlq", "list", "--key", key.decode(), "--json", dlq_max_replays=2
    )
    statuses = [orjson.loads(line)["status"] for line in listed.out.splitlines()]
    assert statuses == ["parked", "replayed", "replayed"]


async def test_a_dry_run_changes_nothing(
    settings: Settings,
    worker: WorkerResources,
    http: aiohttp.ClientSession,
    pg: asyncpg.Connection,
    tag: str,
) -> None:
    key = f"dry-{tag}"
    produce(
        _bootstrap(settings), INGEST, [(key.encode(), b'{"entity": "nothing", "records": [1]}')]
    )
    [letter] = await _letters(http, key=key)

    run = await _finished_replay(
        http, await _start_replay(http, {"filters": {"key": key}, "dry_run": True})
    )
    cli = await run_cli(settings, "dlq", "replay", "--key", key, "--dry-run")

    assert run["status"] == "completed"
    assert run["dry_run"] is True
    assert (run["counts"]["selected"], run["counts"]["replayed"]) == (1, 0)
    assert run["progress"] == {"total": 1, "done": 1}
    assert "(dry run): 1 would be replayed" in cli.out
    [unchanged] = await _letters(http, key=key)
    assert unchanged == letter
    ingest = [r for r in read_all(_bootstrap(settings), INGEST) if r.key == key.encode()]
    assert len(ingest) == 1
    assert (
        await pg.fetchval("SELECT count(*) FROM dlq_replayed WHERE replay_id = $1", run["id"]) == 0
    )


async def test_a_running_replay_can_be_cancelled(
    settings: Settings, worker: WorkerResources, http: aiohttp.ClientSession, tag: str
) -> None:
    key = f"cancel-{tag}"
    value = b'{"entity": "nothing", "records": [1]}'
    produce(_bootstrap(settings), INGEST, [(key.encode(), value)] * 5)
    await _letters(http, count=5, key=key)

    location = await _start_replay(
        http, {"filters": {"key": key, "stage": "route"}, "rate_per_second": 1}
    )
    for _ in range(100):
        async with http.get(location) as response:
            running = await response.json()
        if running["counts"]["replayed"] >= 1:
            break
        await asyncio.sleep(0.1)
    # A second run meanwhile would find the same letters pending and put them back twice.
    second = await _finished_replay(
        http, await _start_replay(http, {"filters": {"key": key, "stage": "route"}})
    )
    assert second["status"] == "failed"
    assert "another replay run" in second["error"]
    assert second["counts"]["replayed"] == 0
    async with http.delete(location) as response:
        assert response.status == 202
        assert (await response.json())["cancel_requested"] is True
    run = await _finished_replay(http, location)

    assert run["status"] == "cancelled"
    assert run["progress"]["total"] == 5
    assert 1 <= run["counts"]["replayed"] < 5
    async with http.delete(location) as response:
        assert response.status == 409
        assert (await response.json())["error"]["code"] == "replay_finished"
    async with http.get("/ops/dlq/replays/replay-missing") as response:
        assert response.status == 404


async def test_a_replay_must_be_asked_for_with_a_json_body(http: aiohttp.ClientSession) -> None:
    # A replay of everything pending is {}; an empty or unreadable request starts nothing.
    async def runs() -> int:
        async with http.get("/ops/dlq/replays", params={"limit": 100}) as response:
            return len((await response.json())["data"])

    before = await runs()
    for body, status in ((b"", 400), (b"   ", 400), (b'{"filters": {"key": "a\\u0000b"}}', 422)):
        async with http.post("/ops/dlq/replays", data=body, headers=JSON) as response:
            assert response.status == status, body
    assert await runs() == before


async def test_a_dead_letter_keeps_every_header_null_values_and_binary_keys(
    settings: Settings, worker: WorkerResources, http: aiohttp.ClientSession, tag: str
) -> None:
    key = b"\xff\xfe" + tag.encode()
    headers = [("dup", b"1"), ("dup", b"2"), ("nothing", None), ("binary", b"\xff\x00")]
    produce(_bootstrap(settings), INGEST, [(key, NOT_JSON)], headers=headers)
    key_shown = base64.b64encode(key).decode()

    [letter] = await _letters(http, key=key_shown)
    async with http.get(f"/ops/dlq/messages/{letter['id']}") as response:
        shown = await response.json()

    assert (shown["key"], shown["key_format"]) == (key_shown, "base64")
    assert shown["headers"] == [
        {"name": "dup", "value": "1", "value_format": "text"},
        {"name": "dup", "value": "2", "value_format": "text"},
        {"name": "nothing", "value": None, "value_format": "none"},
        {
            "name": "binary",
            "value": base64.b64encode(b"\xff\x00").decode(),
            "value_format": "base64",
        },
    ]
    on_topic = [r for r in read_all(_bootstrap(settings), DLQ) if r.key == key]
    assert [r.key for r in on_topic] == [key]
    cli = await run_cli(settings, "dlq", "show", letter["id"])
    assert cli.code == 0, cli.err
    assert "header dup    1\nheader dup    2\n" in cli.out
    assert "header nothing - (null)" in cli.out
    assert f"key           {key_shown} (base64)" in cli.out


async def test_an_outcome_that_is_not_json_is_dead_lettered_at_decode(
    settings: Settings, worker: WorkerResources, http: aiohttp.ClientSession, tag: str
) -> None:
    produce(_bootstrap(settings), "batchline.outcomes", [(f"outcome-{tag}".encode(), NOT_JSON)])

    [letter] = await _letters(http, key=f"outcome-{tag}")

    assert (letter["stage"], letter["source"]["topic"]) == ("decode", "batchline.outcomes")


async def test_a_replay_takes_the_filters_list_takes_ages_and_status_alike(
    settings: Settings, worker: WorkerResources, http: aiohttp.ClientSession, tag: str
) -> None:
    key = f"ages-{tag}"
    produce(
        _bootstrap(settings), INGEST, [(key.encode(), b'{"entity": "nothing", "records": [1]}')]
    )
    await _letters(http, key=key)

    wanted = {"filters": {"key": key, "since": "2h", "status": "pending"}, "dry_run": True}
    run = await _finished_replay(http, await _start_replay(http, wanted))
    older = {"filters": {"key": key, "until": "2h"}, "dry_run": True}
    none_older = await _finished_replay(http, await _start_replay(http, older))
    cli = await run_cli(
        settings, "dlq", "replay", "--key", key, "--since", "2h", "--status", "pending", "--dry-run"
    )
    async with http.post("/ops/dlq/replays", json={"filters": {"since": "soon"}}) as response:
        refused = response.status

    assert (run["status"], run["counts"]["selected"]) == ("completed", 1)
    assert none_older["counts"]["matched"] == 0
    assert cli.code == 0, cli.err
    assert "(dry run): 1 would be replayed" in cli.out
    assert refused == 422


async def test_a_replay_count_a_producer_set_itself_counts_for_nothing(
    settings: Settings, worker: WorkerResources, http: aiohttp.ClientSession, tag: str
) -> None:
    key = f"forged-{tag}"
    forged = [
        ("batchline.replay.count", b"7"),
        ("batchline.replay.token", b"00000000-0000-4000-8000-000000000000"),
    ]
    produce(_bootstrap(settings), INGEST, [(key.encode(), NOT_JSON)], headers=forged)

    [letter] = await _letters(http, key=key)
    replayed = await run_cli(settings, "dlq", "replay", "--key", key, dlq_max_replays=1)
    [again, first] = await _letters(http, count=2, key=key)

    assert (letter["replay_count"], letter["status"]) == (0, "pending")
    assert replayed.code == 0, replayed.err
    assert ": 1 replayed, 0 parked" in replayed.out
    assert again["replay_count"] == 1
    assert first["id"] == letter["id"]
