"""Front door 3 refusing what it cannot store, over real HTTP, Kafka and PostgreSQL.

Each value here once reached the database or crashed a converter (a 500, some after a dead
letter). Every one must be a 400 in Gemini's format that names the field, and nothing stored.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import aiohttp
import asyncpg
import orjson
from confluent_kafka import Producer

from batchline.settings import Settings
from streams import topics
from tests.integration.activities import JSON
from tests.integration.results import stored_results
from tests.integration.test_entity_data import category, get, post, product

NUL_REASON = "text must not contain NUL (\\u0000) characters"


def refusal(
    reason: str,
    errors: list[dict[str, Any]] | None = None,
    fields: dict[str, dict[str, str]] | None = None,
) -> dict[str, Any]:
    error: dict[str, Any] = {"reason": reason}
    if fields is not None:
        error["fieldValidationErrors"] = fields
    if errors is not None:
        error["errors"] = errors
    return {"status": "error", "error": error}


def invalid_value(field: str, reason: str) -> dict[str, dict[str, str]]:
    return {field: {"error": "INVALID_VALUE", "reason": reason}}


def conversion(path: str, type_name: str, shown: str, problem: str | None = None) -> str:
    reason = f"Unable to convert field {path} - {type_name} - for value {shown}"
    return f"{reason}: {problem}" if problem else reason


async def test_an_empty_logical_key_is_refused_naming_the_field(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, tag: str
) -> None:
    status, body = await post(http, "category", {"id": "", "description": tag})

    reason = "must not be empty: a logical key value identifies the record in URLs"
    assert (status, body) == (
        400,
        refusal("EntityRecord of CATEGORY with id  invalid", fields=invalid_value("id", reason)),
    )
    assert await pg.fetchval("SELECT count(*) FROM entity_category WHERE id = ''") == 0


async def test_a_logical_key_longer_than_1000_characters_is_refused_before_the_database(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, tag: str
) -> None:
    status, body = await post(http, "category", {"id": f"{tag}-" + "k" * 10_000})

    reason = "must hold at most 1000 characters: a logical key value is indexed"
    assert (status, body) == (
        400,
        refusal(
            f"EntityRecord of CATEGORY with id {tag}-{'k' * 10_000} invalid",
            fields=invalid_value("id", reason),
        ),
    )
    longest = tag + "k" * (1000 - len(tag))
    status, body = await post(http, "category", {"id": longest})
    assert status == 200, body
    assert body["data"]["id"] == longest
    assert (
        await pg.fetchval("SELECT count(*) FROM entity_category WHERE id LIKE $1", f"{tag}%") == 1
    )


async def test_a_record_the_database_refuses_is_a_400_with_the_database_reason(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, tag: str
) -> None:
    # 1000 characters pass the length check, but 4 bytes each and not compressible they
    # exceed what a btree index entry can hold.
    rare = random.Random(tag)
    key = tag + "".join(chr(rare.randrange(0x20000, 0x2A6DF)) for _ in range(1000 - len(tag)))

    status, body = await post(http, "category", {"id": key})

    assert status == 400, body
    assert body["error"]["reason"].startswith("The database refused the record: index row")
    assert "errors" not in body["error"]
    assert await pg.fetchval("SELECT count(*) FROM entity_category WHERE id = $1", key) == 0

    status, body = await post(http, "category", [{"id": f"{tag}-fine"}, {"id": key}])
    assert status == 400, body
    assert body["error"]["reason"].startswith("The database refused the record: index row")
    assert [e["record"] for e in body["error"]["errors"]] == [0, 1]


# (field, value sent, type in the message, value in the message)
OUT_OF_RANGE = [
    ("lastRestock", "9999-12-31T23:59:59-05:00", "DATE_TIME", "9999-12-31T23:59:59-05:00"),
    ("lastRestock", "0001-01-01T00:00:00+01:00", "DATE_TIME", "0001-01-01T00:00:00+01:00"),
    ("price", "1e999999", "DECIMAL", "1e999999"),
    ("price", "1e99999999999999999999", "DECIMAL", "1e99999999999999999999"),
    ("price", "1e-16384", "DECIMAL", "1e-16384"),
    ("quantity", -(2**63) - 1, "INTEGER", "-9223372036854775809"),
    ("quantity", 2**64, "INTEGER", "18446744073709551616"),
    ("quantity", -(10**30), "INTEGER", "-1000000000000000000000000000000"),
    ("name", 10**25, "STRING", "10000000000000000000000000"),
]


async def test_values_beyond_what_python_or_postgresql_can_hold_are_conversion_errors(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, tag: str
) -> None:
    cat = await category(http, tag)
    for n, (field, value, type_name, shown) in enumerate(OUT_OF_RANGE):
        status, body = await post(http, "product", product(tag, n, cat, **{field: value}))

        assert (status, body) == (400, refusal(conversion(field, type_name, shown))), field
    assert await pg.fetchval("SELECT count(*) FROM entity_product WHERE category = $1", cat) == 0


async def test_a_decimal_integer_beyond_64_bits_is_stored_exactly(
    http: aiohttp.ClientSession, tag: str
) -> None:
    cat = await category(http, tag)
    price = 123456789012345678901234567890

    status, body = await post(http, "product", product(tag, 1, cat, price=price))

    assert status == 200, body
    assert body["data"]["price"] == str(price)


async def test_a_chunk_straight_from_kafka_with_out_of_range_values_is_not_dead_lettered(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, settings: Settings, tag: str
) -> None:
    cat = await category(http, tag)
    batch_id = f"kafka-range-{tag}"
    records = [
        product(tag, n, cat, **{field: value})
        for n, (field, value, _, _) in enumerate(OUT_OF_RANGE)
        if not isinstance(value, int)  # orjson cannot write integers beyond 64 bits
    ]
    envelope = {"entity": "product", "batch_id": batch_id, "records": records}
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    producer.produce(topics.INGEST, orjson.dumps(envelope), key=batch_id.encode())
    assert producer.flush(10) == 0

    for _ in range(300):  # a bound, not a timing assertion
        status = await pg.fetchval("SELECT status FROM batch WHERE id = $1", batch_id)
        if status == "completed":
            break
        await asyncio.sleep(0.1)
    results = await stored_results(pg, batch_id)
    assert [r.error for r in results] == ["conversion_error"] * len(records)


async def test_query_values_out_of_range_are_conversion_errors_showing_the_text_sent(
    http: aiohttp.ClientSession,
) -> None:
    cases = [
        ("weight=1e999", conversion("weight", "DOUBLE", "1e999")),
        ("weight=nan", conversion("weight", "DOUBLE", "nan")),
        ("weight=1_0", conversion("weight", "DOUBLE", "1_0")),
        (
            "quantity=99999999999999999999",
            conversion("quantity", "INTEGER", "99999999999999999999"),
        ),
        (f"quantity={'9' * 5000}", conversion("quantity", "INTEGER", "9" * 5000)),
        (
            "price[GT]=1e99999999999999999999",
            conversion("price", "DECIMAL", "1e99999999999999999999"),
        ),
        (
            "lastRestock[LT]=9999-12-31T23:59:59-05:00",
            conversion("lastRestock", "DATE_TIME", "9999-12-31T23:59:59-05:00"),
        ),
    ]
    for query, reason in cases:
        status, body = await get(http, f"/data/product?{query}")

        assert (status, body) == (400, refusal(reason)), query


async def test_start_and_limit_out_of_range_are_refused_in_gemini_format(
    http: aiohttp.ClientSession,
) -> None:
    top = 2**63 - 1
    for query, name, minimum in [
        ("start=99999999999999999999", "start", 0),
        (f"start={top + 1}", "start", 0),
        (f"start={'9' * 5000}", "start", 0),
        ("start=-1", "start", 0),
        ("start=%D9%A3", "start", 0),  # an Arabic-Indic digit
        ("limit=0", "limit", 1),
        ("limit=99999999999999999999", "limit", 1),
    ]:
        status, body = await get(http, f"/data/product?{query}")

        reason = f"Query parameter {name} must be an integer from {minimum} to {top}"
        assert (status, body) == (400, refusal(reason)), query
    status, body = await get(http, f"/data/product?start={top}")
    assert (status, body["data"]) == (200, [])


async def test_a_nul_character_anywhere_in_a_record_is_refused_naming_the_field(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, tag: str
) -> None:
    cat = await category(http, tag)
    cases = [
        ({"name": "x\x00y"}, conversion("name", "STRING", "x\\u0000y", NUL_REASON)),
        ({"status": "ACT\x00IVE"}, conversion("status", "ENUM", "ACT\\u0000IVE", NUL_REASON)),
        ({"tags": ["ok", "b\x00"]}, conversion("tags[1]", "STRING", "b\\u0000", NUL_REASON)),
        ({"category": "c\x00"}, conversion("category", "ENTITY_REF", "c\\u0000", NUL_REASON)),
        ({"price": "1\x00"}, conversion("price", "DECIMAL", "1\\u0000", NUL_REASON)),
    ]
    for n, (fields, reason) in enumerate(cases):
        status, body = await post(http, "product", product(tag, n, cat) | fields)

        assert (status, body) == (400, refusal(reason)), fields

    nested = {"width": 1, "height": 2, "u\x00nit": "CM"}
    status, body = await post(http, "product", product(tag, 9, cat, dimensions=nested))
    problem = "unknown field: names must not contain NUL (\\u0000) characters"
    assert (status, body) == (
        400,
        refusal(
            f"EntityRecord of PRODUCT with id p-{tag}-9 invalid",
            fields={"dimensions.u\\u0000nit": {"error": "UNKNOWN_FIELD", "reason": problem}},
        ),
    )
    assert await pg.fetchval("SELECT count(*) FROM entity_product WHERE category = $1", cat) == 0


async def test_a_nul_character_in_one_record_of_a_list_refuses_the_list(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, tag: str
) -> None:
    records = [{"id": f"{tag}-0"}, {"id": f"{tag}-1", "description": "a\x00"}, {"id": f"{tag}-2"}]

    status, body = await post(http, "category", records)

    reason = conversion("description", "STRING", "a\\u0000", NUL_REASON)
    assert (status, body) == (
        400,
        refusal(reason, [{"record": 1, "field": "description", "reason": reason}]),
    )
    assert (
        await pg.fetchval("SELECT count(*) FROM entity_category WHERE id LIKE $1", f"{tag}%") == 0
    )


async def test_a_nul_character_in_a_url_or_a_patch_is_refused(
    http: aiohttp.ClientSession, tag: str
) -> None:
    cat = await category(http, tag)

    status, body = await get(http, "/data/category/a%00b")
    assert (status, body) == (400, refusal(conversion("id", "STRING", "a\\u0000b", NUL_REASON)))
    status, body = await get(http, "/data/category?description[CONTAINS]=a%00")
    assert (status, body) == (
        400,
        refusal(conversion("description", "STRING", "a\\u0000", NUL_REASON)),
    )
    async with http.patch(
        f"/data/category/{cat}", json={"data": {"description": "\x00"}}
    ) as response:
        assert response.status == 400
        assert await response.json() == refusal(
            conversion("description", "STRING", "\\u0000", NUL_REASON)
        )


async def test_a_body_that_does_not_match_its_content_encoding_is_refused(
    http: aiohttp.ClientSession,
) -> None:
    async with http.post(
        "/data/category", data=b'{"data": {"id": "g"}}', headers=JSON | {"Content-Encoding": "gzip"}
    ) as response:
        assert response.status == 400
        assert await response.json() == refusal(
            "Request body could not be read: Can not decode content-encoding: gzip"
        )
