"""The operator console in a real browser (Debian's chromium, driven by Playwright) against
the live pipeline: what an operator sees and clicks, with a screenshot of every page.

Screenshots go to the test's temporary folder; with ``BATCHLINE_CONSOLE_SCREENSHOTS`` set to a
folder (``docs/console``) the README's set is also copied there.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from batchline.cli.embedded import free_port
from batchline.cli.runtime import serving_api
from batchline.settings import Settings
from batchline.tokens import Role, create_token
from consumers.app import WorkerResources
from tests.integration.activities import activity, post_batch
from tests.integration.kafka import produce

CHROMIUM = Path("/usr/bin/chromium")
LAPTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
# Live figures take a poll or two to change: generous, never a measurement.
SEEN_WITHIN_MS = 20_000
# The screenshots the README shows (docs/console/); the others stay with the test run.
README_SHOTS = {
    "overview",
    "batches",
    "batch",
    "dead-letters-replayed",
    "dead-letter",
    "entities",
    "phone-batch",
}

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="no /usr/bin/chromium (.ci/run installs Debian's chromium)"
)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        yield launched
        await launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("console-screenshots")


async def _page(browser: Browser, api_url: str, viewport: dict[str, int]) -> Page:
    context = await browser.new_context(
        base_url=api_url, viewport=viewport, accept_downloads=True, locale="en-GB"
    )
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    page.problems = problems  # type: ignore[attr-defined]
    return page


@pytest.fixture
async def laptop(browser: Browser, api_url: str) -> AsyncIterator[Page]:
    page = await _page(browser, api_url, LAPTOP)
    yield page
    # A script error or a refused call is a console bug even when the page still looks right.
    assert page.problems == []  # type: ignore[attr-defined]
    await page.context.close()


async def _shoot(page: Page, shots: Path, name: str, *, full_page: bool = True) -> None:
    await page.wait_for_timeout(300)  # let bars finish their transition
    await page.evaluate("document.getElementById('toasts').replaceChildren(); scrollTo(0, 0)")
    path = shots / f"{name}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    wanted = os.environ.get("BATCHLINE_CONSOLE_SCREENSHOTS")
    if wanted and name in README_SHOTS:
        await asyncio.to_thread(Path(wanted).mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(shutil.copy, path, Path(wanted) / path.name)


def _figure(page: Page, name: str) -> Any:
    return page.locator(f'[data-figure="{name}"]')


async def test_a_batch_with_failures_is_found_opened_retried_and_deleted(
    laptop: Page, http: aiohttp.ClientSession, tag: str, shots: Path, tmp_path: Path
) -> None:
    page = laptop
    records = [
        activity(tag, 0),
        activity(tag, 1),
        activity(tag, 0),  # the same key as record 0: unique_constraint_violation
        activity(tag, 3, duration_minutes=0),  # validation_error
        activity(tag, 4, activity_date="not a date"),  # validation_error
    ]
    key = f"console-{tag}"
    status, created = await post_batch(http, records, headers={"Idempotency-Key": key})
    assert status == 201, created
    batch_id = created["id"]

    await page.goto("/console/")
    await expect(page.get_by_text("This console is open")).to_be_visible()
    await page.get_by_role("link", name="Batches", exact=True).click()
    await expect(page.locator(f'tr[data-batch="{batch_id}"]')).to_be_visible()

    # Found by the Idempotency-Key it was posted with, alone.
    await page.get_by_label("Search by batch id or Idempotency-Key").fill(key)
    await page.get_by_role("button", name="Search").click()
    rows = page.locator("table.batches tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text(batch_id)
    await expect(page.get_by_text("Page 1 of 1 · 1 batch")).to_be_visible()

    await page.get_by_role("link", name=batch_id).click()
    await expect(page.get_by_role("heading", name=f"Batches / {batch_id}")).to_be_visible()
    await expect(_figure(page, "records")).to_have_text("5")
    await expect(_figure(page, "inserted")).to_have_text("2")
    await expect(_figure(page, "failed")).to_have_text("3")
    chips = page.get_by_role("group", name="failures by error code")
    await expect(chips.get_by_role("button", name="validation_error 2")).to_be_visible()
    await expect(chips.get_by_role("button", name="unique_constraint_violation 1")).to_be_visible()
    await expect(page.locator("table.failures tbody tr")).to_have_count(3)
    await expect(page.get_by_text("5 of 5 records done")).to_be_visible()
    await _shoot(page, shots, "batch")

    # The download holds every failure with its payload.
    async with page.expect_download() as waiting:
        await page.get_by_role("button", name="Download failures (NDJSON)").click()
    download = await waiting.value
    saved = tmp_path / download.suggested_filename
    await download.save_as(saved)
    failures = [json.loads(line) for line in saved.read_text().splitlines()]
    assert [(f["index"], f["error"]) for f in failures] == [
        (2, "unique_constraint_violation"),
        (3, "validation_error"),
        (4, "validation_error"),
    ]
    assert failures[0]["payload"] == records[2]

    # Retry the duplicate with ignore_constraints: it takes over record 0's row.
    await chips.get_by_role("button", name="unique_constraint_violation 1").click()
    await expect(page.locator("table.failures tbody tr")).to_have_count(1)
    retry_selected = page.get_by_role("button", name="Retry selected (0)")
    await expect(retry_selected).to_be_disabled()
    await page.get_by_label("select record 2").check()
    await page.get_by_label("ignore constraints").check()
    await page.get_by_role("button", name="Retry selected (1)").click()
    # Overwriting a stored record cannot be undone: asked first.
    confirm = page.get_by_role("dialog", name="Retry 1 record ignoring constraints?")
    await expect(confirm).to_contain_text("old values are not kept")
    await confirm.get_by_role("button", name="Retry").click()
    await expect(_figure(page, "failed")).to_have_text("2", timeout=SEEN_WITHIN_MS)
    # Stored again: counted as inserted, or as updated where the API counts updates apart.
    stored = int(await _figure(page, "inserted").inner_text())
    if await _figure(page, "updated").count():
        stored += int(await _figure(page, "updated").inner_text())
    assert stored == 3
    await expect(chips.get_by_role("button", name="unique_constraint_violation 1")).to_have_count(0)
    await expect(page.locator("table.failures tbody tr")).to_have_count(2)
    await expect(page.get_by_text("Last retry")).to_be_visible()

    # Retrying every failure: validation errors fail again, with their groups intact.
    await page.get_by_label("ignore constraints").uncheck()
    await page.get_by_role("button", name="Retry all failed").click()
    await expect(page.get_by_text("Retrying 2 records: completed")).to_be_visible(
        timeout=SEEN_WITHIN_MS
    )
    await expect(_figure(page, "failed")).to_have_text("2")
    await expect(chips.get_by_role("button", name="validation_error 2")).to_be_visible()

    # Deleting asks first; cancelling keeps the batch.
    await page.get_by_role("button", name="Delete operation").click()
    dialog = page.get_by_role("dialog", name=f"Delete {batch_id}?")
    await expect(dialog).to_contain_text("cannot be undone")
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(dialog).to_have_count(0)
    async with http.get(f"/api/v1/batch-inserts/{batch_id}") as response:
        assert response.status == 200
    await page.get_by_role("button", name="Delete operation").click()
    await page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    await expect(page.get_by_role("heading", name="Batches", exact=True)).to_be_visible()
    async with http.get(f"/api/v1/batch-inserts/{batch_id}") as response:
        assert response.status == 404


def _chunk(batch_id: str, tag: str, first: int, size: int, total: int) -> tuple[bytes, bytes]:
    records = [activity(tag, n) for n in range(first, first + size)]
    envelope = {
        "entity": "activity",
        "batch_id": batch_id,
        "record_count": total,
        "first_index": first,
        "records": records,
    }
    return batch_id.encode(), json.dumps(envelope).encode()


async def test_a_running_batch_moves_its_progress_bar_until_it_completes(
    laptop: Page, http: aiohttp.ClientSession, settings: Settings, tag: str, shots: Path
) -> None:
    page = laptop
    bootstrap = settings.kafka_bootstrap_servers
    assert bootstrap is not None
    batch_id = f"running-{tag}"
    # Half of the batch: it stays processing until the other half arrives.
    produce(bootstrap, "batchline.ingest", [_chunk(batch_id, tag, 0, 1000, 2000)])

    for n in range(3):  # company in the list
        records = [activity(f"{tag}-{n}", i) for i in range(40 * (n + 1))]
        records[n] = activity(f"{tag}-{n}", n, duration_minutes=0)
        assert (await post_batch(http, records))[0] == 201

    await page.goto("/console/#/batches")
    row = page.locator(f'tr[data-batch="{batch_id}"]')
    bar = row.get_by_role("progressbar")
    await expect(bar).to_have_attribute("aria-valuenow", "50", timeout=SEEN_WITHIN_MS)
    await expect(row).to_contain_text("processing")
    await expect(row).to_contain_text("kafka")
    await _shoot(page, shots, "batches")

    await row.get_by_role("link", name=batch_id).click()
    await expect(page.get_by_text("1,000 of 2,000 records done")).to_be_visible()
    await expect(page.get_by_text("activity · kafka")).to_be_visible()
    await expect(page.get_by_role("heading", name="Failures")).to_be_hidden()
    await expect(page.get_by_role("button", name="Delete operation")).to_be_disabled()
    await _shoot(page, shots, "batch-running")

    produce(bootstrap, "batchline.ingest", [_chunk(batch_id, tag, 1000, 1000, 2000)])
    await expect(page.get_by_text("2,000 of 2,000 records done")).to_be_visible(
        timeout=SEEN_WITHIN_MS
    )
    await expect(page.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    await expect(_figure(page, "inserted")).to_have_text("2,000")
    await expect(page.get_by_text("No record failed.")).to_be_visible()
    await expect(page.get_by_role("button", name="Delete operation")).to_be_enabled()
    await expect(page.get_by_role("button", name="Download failures (NDJSON)")).to_be_disabled()

    await page.goto("/console/#/batches?status=completed&entity=activity&source=kafka")
    await expect(page.get_by_label("Status")).to_have_value("completed")
    await expect(page.get_by_label("Source")).to_have_value("kafka")
    await expect(row.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    await page.get_by_label("Source").select_option("bulk")
    await expect(page.get_by_text("No batches match.")).to_be_visible()


async def _dead_letters(http: aiohttp.ClientSession, key: str, count: int) -> None:
    for _ in range(300):
        async with http.get("/ops/dlq/messages", params={"key": key}) as response:
            assert response.status == 200
            if (await response.json())["count"] >= count:
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {count} dead letters with key {key}")


async def test_poison_messages_are_found_shown_and_replayed(
    laptop: Page, http: aiohttp.ClientSession, settings: Settings, tag: str, shots: Path
) -> None:
    page = laptop
    key = f"poison-{tag}"
    assert settings.kafka_bootstrap_servers is not None
    produce(
        settings.kafka_bootstrap_servers,
        "batchline.ingest",
        [(key.encode(), f"not json {n} \xff".encode("latin-1")) for n in range(3)],
    )
    await _dead_letters(http, key, 3)

    await page.goto("/console/")
    await page.get_by_role("link", name="Dead letters").click()
    await page.get_by_label("key").fill(key)
    await page.get_by_role("button", name="Filter").click()
    letters = page.locator("table.letters tbody tr")
    await expect(letters).to_have_count(3)
    await expect(letters.first).to_contain_text("pending")
    await expect(letters.first).to_contain_text("decode")
    await _shoot(page, shots, "dead-letters")

    await letters.first.get_by_role("link").click()
    await expect(page.get_by_text("ValidationError").first).to_be_visible()
    value = page.get_by_label("value", exact=True)
    # Not UTF-8: shown as base64 first, as text (with a replacement character) on demand.
    await expect(value).to_have_text("bm90IGpzb24gMiD/")
    await expect(page.get_by_role("tab", name="JSON")).to_be_disabled()
    await page.get_by_role("tab", name="Text").click()
    await expect(value).to_have_text("not json 2 \ufffd")
    await expect(page.get_by_text("batchline.ingest partition")).to_be_visible()
    await _shoot(page, shots, "dead-letter")
    await page.get_by_role("link", name="Replay letters with this key…").click()

    # The real replay waits for a dry run; a slow one can be cancelled.
    for_real = page.get_by_role("button", name="Replay for real")
    await expect(for_real).to_be_disabled()
    await page.get_by_role("button", name="Dry run").click()
    await expect(page.get_by_text("Dry run completed: 3 would be replayed")).to_be_visible(
        timeout=SEEN_WITHIN_MS
    )
    await page.get_by_label("messages per second").fill("0.2")
    await page.get_by_role("button", name="Replay 3 for real").click()
    await page.get_by_role("dialog").get_by_role("button", name="Replay").click()
    cancel = page.get_by_role("button", name="Cancel replay")
    await expect(cancel).to_be_enabled(timeout=SEEN_WITHIN_MS)
    await cancel.click()
    await expect(page.get_by_text("Replay cancelled")).to_be_visible(timeout=SEEN_WITHIN_MS)

    # Again, unpaced: what the cancelled run did not put back goes now.
    await page.get_by_label("messages per second").fill("")
    await page.get_by_role("button", name="Dry run").click()
    dry = page.get_by_text("Dry run completed:")
    await expect(dry).to_be_visible(timeout=SEEN_WITHIN_MS)
    text = await dry.inner_text()
    left = int(text.split(": ", 1)[1].split(" ", 1)[0])
    assert 1 <= left <= 3
    await page.get_by_role("button", name=f"Replay {left} for real").click()
    await page.get_by_role("dialog").get_by_role("button", name="Replay").click()
    await expect(page.get_by_text(f"Replay completed: {left} of {left} replayed")).to_be_visible(
        timeout=SEEN_WITHIN_MS
    )
    await _shoot(page, shots, "dead-letters-replayed")

    # Each went back to batchline.ingest and failed again: a new pending letter each.
    await _dead_letters(http, key, 6)
    await page.get_by_role("button", name="Filter").click()
    await page.get_by_label("status").select_option("replayed")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("table.letters tbody tr")).to_have_count(3)


async def _steady_load(http: aiohttp.ClientSession, tag: str, stop: asyncio.Event) -> None:
    """Batches of 200, a few of whose records fail, until told to stop."""
    n = 0
    while not stop.is_set():
        records = [activity(f"{tag}-{n}", i) for i in range(200)]
        records[7] = activity(f"{tag}-{n}", 7, duration_minutes=0)
        await post_batch(http, records)
        n += 1
        await asyncio.sleep(0.2)


async def test_the_overview_shows_rates_batches_lag_and_dead_letters(
    laptop: Page, http: aiohttp.ClientSession, tag: str, shots: Path
) -> None:
    page = laptop
    await page.goto("/console/#/overview")
    ingest = page.get_by_role("table", name="lag of batchline.ingest")
    outcomes = page.get_by_role("table", name="lag of batchline.outcomes")
    await expect(ingest.locator("tbody tr")).to_have_count(4, timeout=SEEN_WITHIN_MS)
    await expect(outcomes.locator("tbody tr")).to_have_count(4)
    await expect(ingest).to_contain_text("Partition")

    stop = asyncio.Event()
    load = asyncio.create_task(_steady_load(http, tag, stop))
    try:
        for figure in ("rate-accepted", "rate-written", "rate-failed"):
            await expect(_figure(page, figure)).not_to_have_text("0", timeout=SEEN_WITHIN_MS)
        await expect(_figure(page, "batches-completed")).not_to_have_text("0")
        await expect(page.locator("svg.chart path.series")).to_have_count(3)
        await expect(page.get_by_text("Dead letters pending")).to_be_visible()
        await page.wait_for_timeout(8000)  # a stretch of chart for the screenshot
        await _shoot(page, shots, "overview")
    finally:
        stop.set()
        await load
    # Caught up: no lag left on either topic.
    for table in (ingest, outcomes):
        caption = table.locator("caption")
        await expect(caption).to_contain_text("total lag 0", timeout=SEEN_WITHIN_MS)


async def test_entities_and_their_records_are_browsed(
    laptop: Page, http: aiohttp.ClientSession, tag: str, shots: Path
) -> None:
    page = laptop
    ids = [f"console-{tag}-{n}" for n in range(3)]
    for n, lk in enumerate(ids):
        body = {"data": {"id": lk, "description": f"Category {n} of {tag}"}}
        async with http.post("/data/category", json=body) as response:
            assert response.status == 200, await response.text()

    await page.goto("/console/")
    await page.get_by_role("link", name="Entities").click()
    schema = page.locator('article[data-entity="CATEGORY"]')
    await expect(schema).to_contain_text("description")
    await expect(page.locator('article[data-entity="PRODUCT"]')).to_contain_text("→ CATEGORY")
    await schema.get_by_role("link", name="CATEGORY").click()

    await page.get_by_role("button", name="+ Filter").click()
    await page.get_by_label("value").fill(f"console-{tag}")
    await page.locator("select[name=operator]").select_option("STARTS_WITH")
    await page.get_by_label("Order").select_option("-id")
    await page.get_by_role("button", name="Show records").click()
    records = page.locator("table.records tbody tr")
    await expect(records).to_have_count(3)
    await expect(records.first).to_contain_text(ids[2])
    await expect(page.get_by_text("1\u20133 of 3 records")).to_be_visible()
    await _shoot(page, shots, "entities")


async def test_pages_fit_a_phone_screen(
    browser: Browser, api_url: str, http: aiohttp.ClientSession, tag: str, shots: Path
) -> None:
    status, created = await post_batch(http, [activity(tag, 0), activity(tag, 0)])
    assert status == 201
    page = await _page(browser, api_url, PHONE)
    try:
        for view, name in [
            ("#/overview", "phone-overview"),
            (f"#/batches/{created['id']}", "phone-batch"),
            ("#/batches", "phone-batches"),
            ("#/dead-letters", "phone-dead-letters"),
            ("#/entities/product", "phone-entities"),
        ]:
            await page.goto(f"/console/{view}")
            await expect(page.locator("main h1")).to_be_visible()
            await page.wait_for_load_state("networkidle")
            wider = await page.evaluate(
                "document.documentElement.scrollWidth > window.innerWidth + 1"
            )
            assert not wider, f"{view} is wider than a phone screen"
            await _shoot(page, shots, name, full_page=False)
        assert page.problems == []  # type: ignore[attr-defined]
    finally:
        await page.context.close()


ROLES = {
    "operator": frozenset({Role.OPERATOR}),
    "reader": frozenset({Role.READER}),
    "console": frozenset({Role.OPERATOR, Role.READER}),
}


@pytest.fixture(scope="module")
def tokens() -> tuple[dict[str, str], str]:
    made = {name: create_token(roles, name) for name, roles in ROLES.items()}
    configured = ",".join(entry.entry for _, entry in made.values())
    return {name: token for name, (token, _) in made.items()}, configured


@pytest.fixture
async def secured_url(
    settings: Settings, worker: WorkerResources, tokens: tuple[dict[str, str], str]
) -> AsyncIterator[str]:
    configured = settings.model_copy(
        update={
            "api_tokens": Settings(api_tokens=tokens[1]).api_tokens,
            "http_port": free_port(),
            "metrics_public": False,
        }
    )
    async with serving_api(configured) as url:
        yield url


async def test_the_console_asks_for_a_token_and_says_what_a_call_needs(
    browser: Browser,
    secured_url: str,
    tokens: tuple[dict[str, str], str],
    http: aiohttp.ClientSession,
    tag: str,
    shots: Path,
) -> None:
    token = tokens[0]
    status, created = await post_batch(http, [activity(tag, 0)])
    assert status == 201
    page = await _page(browser, secured_url, LAPTOP)
    try:
        await page.goto("/console/#/overview")
        prompt = page.get_by_text("Token needed.")
        await expect(prompt).to_be_visible()
        await expect(page.get_by_text("This console is open")).to_have_count(0)
        await expect(page.get_by_role("button", name="Enter token")).to_be_visible()
        await _shoot(page, shots, "token-prompt")

        # A reader may not read dead letters or lag: refused, and told why.
        await page.get_by_label("Operator token").fill(token["reader"])
        await page.get_by_role("button", name="Use token").click()
        await expect(page.locator(".auth-reason")).to_contain_text("operator")

        # An operator alone sees the overview, but not the batches.
        await page.get_by_label("Operator token").fill(token["operator"])
        await page.get_by_role("button", name="Use token").click()
        await expect(page.get_by_role("table", name="lag of batchline.ingest")).to_be_visible(
            timeout=SEEN_WITHIN_MS
        )
        await expect(page.get_by_text("Operator token set")).to_be_visible()
        await page.get_by_role("link", name="Batches", exact=True).click()
        await expect(page.locator(".auth-reason")).to_contain_text("reader")

        await page.get_by_label("Operator token").fill(token["console"])
        await page.get_by_role("button", name="Use token").click()
        await expect(page.locator(f'tr[data-batch="{created["id"]}"]')).to_be_visible(
            timeout=SEEN_WITHIN_MS
        )
        await expect(page.get_by_text("Token needed.")).to_be_hidden()

        # The token lives in the tab: a new tab asks again; "Forget" drops it.
        stored = await page.evaluate("sessionStorage.getItem('batchline.console.token')")
        assert stored == token["console"]
        await page.get_by_role("button", name="Forget").click()
        await expect(page.get_by_text("Token needed.")).to_be_visible()
        assert await page.evaluate("document.cookie") == ""
        # Refused calls are shown on the page, not thrown as script errors.
        page.problems.clear()  # type: ignore[attr-defined]
    finally:
        await page.context.close()
