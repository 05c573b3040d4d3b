"""Front door 3 over real HTTP, Kafka and PostgreSQL: the seed's /data/{entity} API."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any
from urllib.parse import quote

import aiohttp
import asyncpg
import orjson
from confluent_kafka import Consumer, Producer
from yarl import URL

from batchline.settings import Settings
from streams import topics
from tests.integration.activities import JSON
from tests.integration.results import stored_results

SEED_CATEGORY_ANSWER = (
    b'{"status":"success","data":{"description":"Technology","id":"tech-1"},'
    b'"meta":{"lastUpdateTimeUnix":0,"lastUpdateTimeISO":"T"}}'
)
SEED_DUPLICATE_ANSWER = (
    b'{"status":"error","error":{"reason":"Logical key tech-1 for Entity CATEGORY already exists"}}'
)
_TIMES = re.compile(rb'"lastUpdateTimeUnix":\d{13},"lastUpdateTimeISO":"[0-9T:.-]{23}Z"')


def _without_times(body: bytes) -> bytes:
    return _TIMES.sub(b'"lastUpdateTimeUnix":0,"lastUpdateTimeISO":"T"', body)


async def post(http: aiohttp.ClientSession, entity: str, data: Any) -> tuple[int, dict[str, Any]]:
    async with http.post(f"/data/{entity}", json={"data": data}) as response:
        return response.status, await response.json()


async def test_seed_curl_example_and_its_duplicate_answer_byte_for_byte(
    http: aiohttp.ClientSession, pg: asyncpg.Connection
) -> None:
    body = b'{"data": {"id": "tech-1",\n        "description": "Technology"\n    }\n  }'
    headers = {"Content-Type": "application/json"}

    async with http.post("/data/category", data=body, headers=headers) as response:
        first_status, first = response.status, await response.read()
    async with http.post("/data/category", data=body, headers=headers) as response:
        second_status, second = response.status, await response.read()

    assert first_status == 200
    assert _without_times(first) == SEED_CATEGORY_ANSWER
    assert second_status == 400
    assert second == SEED_DUPLICATE_ANSWER
    stored = await pg.fetch("SELECT id, description FROM entity_category WHERE id = 'tech-1'")
    assert [tuple(r) for r in stored] == [("tech-1", "Technology")]


async def category(http: aiohttp.ClientSession, tag: str, n: int = 1) -> str:
    key = f"cat-{tag}-{n}"
    status, _ = await post(http, "category", {"id": key, "description": f"Category {n}"})
    assert status == 200
    return key


def product(tag: str, n: int, category_key: str, **fields: Any) -> dict[str, Any]:
    return {"id": f"p-{tag}-{n}", "name": f"Product {n}", "category": category_key} | fields


FULL_PRODUCT_FIELDS: dict[str, Any] = {
    "price": "1234.50",
    "weight": 0.25,
    "quantity": 12,
    "available": True,
    "releaseDate": "2024-02-29",
    "lastRestock": "2024-03-01T10:15:30.250+02:00",
    "status": "ACTIVE",
    "dimensions": {"width": 7.5, "height": 15, "unit": "CM"},
    "tags": ["phone", "5g"],
}


async def test_every_type_is_stored_typed_and_answered_in_canonical_form(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, tag: str
) -> None:
    cat = await category(http, tag)

    status, body = await post(http, "PRODUCT", product(tag, 1, cat, **FULL_PRODUCT_FIELDS))

    assert status == 200, body
    assert body["data"] == {
        "available": True,
        "category": cat,
        "dimensions": {"width": 7.5, "height": 15.0, "unit": "CM"},
        "id": f"p-{tag}-1",
        "lastRestock": "2024-03-01T08:15:30.250Z",
        "name": "Product 1",
        "price": "1234.50",
        "quantity": 12,
        "releaseDate": "2024-02-29",
        "status": "ACTIVE",
        "tags": ["phone", "5g"],
        "weight": 0.25,
    }
    assert list(body["data"]) == sorted(body["data"])
    assert list(body["data"]["dimensions"]) == ["height", "unit", "width"]
    # A trailing slash names the same record, as it does the collection.
    assert (await get(http, f"/data/product/p-{tag}-1/"))[1] == body
    row = await pg.fetchrow(
        """SELECT pg_typeof(price)::text AS price, pg_typeof(quantity)::text AS quantity,
                  pg_typeof("lastRestock")::text AS restock, pg_typeof(dimensions)::text AS dims,
                  "lastRestock" AT TIME ZONE 'UTC' AS restock_utc
           FROM entity_product WHERE id = $1""",
        f"p-{tag}-1",
    )
    assert row is not None
    assert (row["price"], row["quantity"], row["restock"], row["dims"]) == (
        "numeric",
        "bigint",
        "timestamp with time zone",
        "jsonb",
    )
    assert row["restock_utc"].isoformat() == "2024-03-01T08:15:30.250000"


# (field, value sent, field path in the message, type in the message, value in the message)
BAD_VALUES = [
    ("name", 42, "name", "STRING", "42"),
    ("price", "12,50", "price", "DECIMAL", "12,50"),
    ("price", True, "price", "DECIMAL", "true"),
    ("weight", "heavy", "weight", "DOUBLE", "heavy"),
    ("quantity", 1.5, "quantity", "INTEGER", "1.5"),
    ("quantity", 2**63, "quantity", "INTEGER", str(2**63)),
    ("available", "yes", "available", "BOOL", "yes"),
    ("releaseDate", "2024-02-30", "releaseDate", "DATE", "2024-02-30"),
    ("releaseDate", "29/02/2024", "releaseDate", "DATE", "29/02/2024"),
    ("lastRestock", "2024-03-01T10:15:30", "lastRestock", "DATE_TIME", "2024-03-01T10:15:30"),
    ("status", "active", "status", "ENUM", "active"),
    ("dimensions", "7x15", "dimensions", "OBJECT", "7x15"),
    ("dimensions", {"width": "wide", "height": 1}, "dimensions.width", "DOUBLE", "wide"),
    ("tags", "phone", "tags", "ARRAY", "phone"),
    ("tags", ["phone", 5], "tags[1]", "STRING", "5"),
    ("category", 7, "category", "ENTITY_REF", "7"),
]


async def test_a_value_not_of_its_type_is_a_conversion_error_naming_field_type_and_value(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, tag: str
) -> None:
    cat = await category(http, tag)
    for n, (field, value, path, type_name, shown) in enumerate(BAD_VALUES):
        status, body = await post(http, "product", product(tag, n, cat, **{field: value}))

        assert status == 400, (field, value, body)
        reason = f"Unable to convert field {path} - {type_name} - for value {shown}"
        assert body == {"status": "error", "error": {"reason": reason}}
    stored = await pg.fetchval("SELECT count(*) FROM entity_product WHERE category = $1", cat)
    assert stored == 0


async def test_required_holds_for_every_type_with_gemini_field_errors_and_our_list(
    http: aiohttp.ClientSession, tag: str
) -> None:
    status, body = await post(http, "product", {"id": f"p-{tag}", "name": None, "extra": 1})

    assert status == 400
    assert body == {
        "status": "error",
        "error": {
            "reason": f"EntityRecord of PRODUCT with id p-{tag} invalid",
            "fieldValidationErrors": {
                "extra": {"error": "UNKNOWN_FIELD", "reason": "unknown field"},
                "name": {"error": "REQUIRED", "reason": "required"},
                "category": {"error": "REQUIRED", "reason": "required"},
            },
            "errors": [
                {"field": "extra", "reason": "unknown field"},
                {"field": "name", "reason": "required"},
                {"field": "category", "reason": "required"},
            ],
        },
    }
    status, body = await post(
        http,
        "product",
        product(tag, 2, "whatever", dimensions={"width": 1.0, "unit": None}),
    )
    assert status == 400
    assert body["error"]["fieldValidationErrors"] == {
        "dimensions.height": {"error": "REQUIRED", "reason": "required"}
    }


async def test_a_list_with_invalid_records_names_each_records_fields_as_gemini_does(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, tag: str
) -> None:
    cat = await category(http, tag)
    records = [product(tag, 0, cat), {"id": f"p-{tag}-1"}, product(tag, 2, cat), {}]

    status, body = await post(http, "product", records)

    assert status == 400
    required = {"error": "REQUIRED", "reason": "required"}
    assert body["error"]["reason"] == "EntityRecords are invalid"
    assert body["error"]["recordValidationErrors"] == [
        {},
        {"name": required, "category": required},
        {},
        {"id": required, "name": required, "category": required},
    ]
    assert body["error"]["errors"][0] == {"record": 1, "field": "name", "reason": "required"}
    assert await pg.fetchval("SELECT count(*) FROM entity_product WHERE category = $1", cat) == 0


async def test_a_list_is_all_or_nothing_a_bad_third_record_leaves_nothing_stored(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, tag: str
) -> None:
    cat = await category(http, tag)
    records = [
        product(tag, 0, cat),
        product(tag, 1, cat),
        product(tag, 2, cat, quantity="many"),
        product(tag, 3, cat),
    ]

    status, body = await post(http, "product", records)

    assert status == 400
    assert body == {
        "status": "error",
        "error": {
            "reason": "Unable to convert field quantity - INTEGER - for value many",
            "errors": [
                {
                    "record": 2,
                    "field": "quantity",
                    "reason": "Unable to convert field quantity - INTEGER - for value many",
                }
            ],
        },
    }
    assert await pg.fetchval("SELECT count(*) FROM entity_product WHERE category = $1", cat) == 0

    status, body = await post(http, "product", [records[0], records[1], records[3]])
    assert status == 200
    assert [r["id"] for r in body["data"]] == [f"p-{tag}-0", f"p-{tag}-1", f"p-{tag}-3"]
    assert await pg.fetchval("SELECT count(*) FROM entity_product WHERE category = $1", cat) == 3


async def test_a_duplicate_key_inside_one_list_or_against_a_stored_record_fails_the_list(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, tag: str
) -> None:
    cat = await category(http, tag)
    key = f"{cat}-dup"

    status, body = await post(http, "category", [{"id": key}, {"id": f"{key}-other"}, {"id": key}])

    assert status == 400
    assert body["error"]["reason"] == f"Logical key {key} for Entity CATEGORY already exists"
    assert body["error"]["errors"][0]["record"] == 2
    stored = await pg.fetchval("SELECT count(*) FROM entity_category WHERE id LIKE $1", f"{key}%")
    assert stored == 0

    status, body = await post(http, "category", [{"id": f"{key}-new"}, {"id": cat}])
    assert status == 400
    assert body["error"]["reason"] == f"Logical key {cat} for Entity CATEGORY already exists"
    stored = await pg.fetchval("SELECT count(*) FROM entity_category WHERE id = $1", f"{key}-new")
    assert stored == 0


async def test_a_reference_to_a_missing_record_is_refused_and_a_referenced_record_stays(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, tag: str
) -> None:
    cat = await category(http, tag)

    status, body = await post(http, "product", product(tag, 1, f"{cat}-missing"))

    assert status == 400
    assert body["error"]["reason"] == (
        f"Field category references CATEGORY record {cat}-missing, which does not exist"
    )
    assert await pg.fetchval("SELECT count(*) FROM entity_product WHERE id = $1", f"p-{tag}-1") == 0

    status, _ = await post(http, "product", product(tag, 1, cat))
    assert status == 200
    async with http.delete(f"/data/category/{cat}") as response:
        assert response.status == 400
        reason = (await response.json())["error"]["reason"]
    assert reason == f"EntityRecord with id {cat} of CATEGORY is referenced by PRODUCT.category"
    assert await pg.fetchval("SELECT count(*) FROM entity_category WHERE id = $1", cat) == 1


async def get(http: aiohttp.ClientSession, path: str) -> tuple[int, dict[str, Any]]:
    # encoded=True: send the path as written (yarl would decode %2C to a separator).
    async with http.get(URL(path, encoded=True)) as response:
        return response.status, await response.json()


async def test_composite_keys_are_joined_by_the_schema_separator_values_percent_encoded(
    http: aiohttp.ClientSession, tag: str
) -> None:
    cat = await category(http, tag)
    odd = f"p-{tag},x/1"  # holds the separator and a slash
    assert (await post(http, "product", product(tag, 1, cat, id=odd)))[0] == 200
    prices = [
        {"product": odd, "currency": "EUR", "amount": "9.99"},
        {"product": odd, "currency": "USD", "amount": 11},
    ]
    status, body = await post(http, "price", prices)
    assert status == 200, body

    encoded = quote(odd, safe="")
    status, body = await get(http, f"/data/price/{encoded},USD")
    assert status == 200
    assert body["data"] == {"amount": "11", "currency": "USD", "product": odd, "validFrom": None}

    status, body = await post(http, "price", {"product": odd, "currency": "EUR", "amount": 1})
    assert status == 400
    assert body["error"]["reason"] == f"Logical key {odd},EUR for Entity PRICE already exists"

    status, body = await get(http, f"/data/price/{encoded}")
    assert status == 400
    assert "must have 2 values (product, currency) joined by ','" in body["error"]["reason"]
    status, body = await get(http, f"/data/price/{encoded},GBP")
    assert status == 404
    assert body["error"]["reason"] == f"EntityRecord with id {odd},GBP not found for PRICE"


async def test_filters_ordering_and_paging(http: aiohttp.ClientSession, tag: str) -> None:
    cat = await category(http, tag)
    records = [
        product(tag, n, cat, price=f"{n}0.00", status="ACTIVE" if n % 2 else "DRAFT")
        for n in range(6)
    ]
    assert (await post(http, "product", records))[0] == 200

    def ids(body: dict[str, Any]) -> list[str]:
        return [r["id"].removeprefix(f"p-{tag}-") for r in body["data"]]

    status, body = await get(http, f"/data/product?category={cat}&orderBy=-price")
    assert status == 200
    assert ids(body) == ["5", "4", "3", "2", "1", "0"]
    assert body["meta"]["total"] == 6

    status, body = await get(
        http, f"/data/product?category={cat}&price[GTE]=20&price[LT]=50&status=ACTIVE"
    )
    assert ids(body) == ["3"]
    status, body = await get(http, f"/data/product?category={cat}&status[NOT]=ACTIVE")
    assert ids(body) == ["0", "2", "4"]
    status, body = await get(http, f"/data/product?category={cat}&id[STARTS_WITH]=p-{tag}-4")
    assert ids(body) == ["4"]
    status, body = await get(http, f"/data/product?category={cat}&name[CONTAINS]=duct%205")
    assert ids(body) == ["5"]
    status, body = await get(http, f"/data/product?category={cat}&price=10&price=30")
    assert ids(body) == ["1", "3"]

    status, body = await get(http, f"/data/product?category={cat}&orderBy=price&start=2&limit=3")
    assert ids(body) == ["2", "3", "4"]
    assert (body["meta"]["start"], body["meta"]["limit"], body["meta"]["total"]) == (2, 3, 6)


async def test_range_filters_compare_every_ordered_type(
    http: aiohttp.ClientSession, tag: str
) -> None:
    cat = await category(http, tag)
    records = [
        product(
            tag,
            n,
            cat,
            quantity=n,
            weight=n + 0.5,
            releaseDate=f"2026-01-0{n + 1}",
            lastRestock=f"2026-01-0{n + 1}T12:00:00Z",
        )
        for n in range(4)
    ]
    assert (await post(http, "product", records))[0] == 200

    for query in (
        "quantity[GT]=1",
        "weight[GTE]=1.6",
        "releaseDate[GT]=2026-01-02",
        "lastRestock[GT]=2026-01-02T12:00:00Z",
        "lastRestock[GTE]=2026-01-03T13:00:00%2B01:00",
    ):
        status, body = await get(http, f"/data/product?category={cat}&{query}&orderBy=quantity")
        assert status == 200, (query, body)
        assert [r["quantity"] for r in body["data"]] == [2, 3], query

    status, body = await get(http, f"/data/product?category={cat}&price[GT]=ten")
    assert status == 400
    assert body["error"]["reason"] == "Unable to convert field price - DECIMAL - for value ten"
    status, body = await get(http, "/data/product?colour=red")
    assert status == 400
    assert body["error"]["reason"] == "Field colour not found for entity PRODUCT"
    status, body = await get(http, "/data/product?available[GT]=true")
    assert status == 400


async def test_put_replaces_patch_updates_delete_removes_and_each_publishes_an_event(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, settings: Settings, tag: str
) -> None:
    cat = await category(http, tag)
    key = f"p-{tag}-1"
    assert (await post(http, "product", product(tag, 1, cat, price="5", quantity=3)))[0] == 200

    async with http.patch(f"/data/product/{key}", json={"data": {"quantity": 4}}) as response:
        assert response.status == 200
        patched = (await response.json())["data"]
    assert (patched["price"], patched["quantity"]) == ("5", 4)

    replacement = {"name": "Renamed", "category": cat, "available": False}
    async with http.put(f"/data/product/{key}", json={"data": replacement}) as response:
        assert response.status == 200
        replaced = (await response.json())["data"]
    assert (replaced["name"], replaced["price"], replaced["quantity"]) == ("Renamed", None, None)
    assert replaced["available"] is False

    async with http.put(f"/data/product/{key}", json={"data": {"name": "x"}}) as response:
        assert response.status == 400  # category is required in a full replace
    async with http.put(
        f"/data/product/{key}", json={"data": replacement | {"id": "other"}}
    ) as response:
        assert response.status == 400
    async with http.patch("/data/product/nope", json={"data": {"quantity": 1}}) as response:
        assert response.status == 404
        assert (await response.json())["error"]["reason"] == (
            "EntityRecord with id nope not found for PRODUCT"
        )

    async with http.delete(f"/data/product/{key}") as response:
        assert response.status == 200
        deleted = (await response.json())["data"]
    assert deleted["name"] == "Renamed"
    assert await pg.fetchval("SELECT count(*) FROM entity_product WHERE id = $1", key) == 0
    async with http.delete(f"/data/product/{key}") as response:
        assert response.status == 404

    events = await domain_events(settings, "batchline.events.entity.product", key, 4)
    assert [e["type"] for e in events] == ["CREATE", "UPDATE", "UPDATE", "DELETE"]
    assert events[1]["old"]["quantity"] == 3
    assert events[1]["new"]["quantity"] == 4
    assert events[3]["old"]["name"] == "Renamed"
    assert "new" not in events[3]


async def domain_events(
    settings: Settings, topic: str, key: str, expected: int
) -> list[dict[str, Any]]:
    """Events with ``key`` on ``topic``, read from the start until ``expected`` arrived."""
    consumer = Consumer(settings.librdkafka_consumer_config(f"test-{uuid.uuid4().hex}"))
    consumer.subscribe([topic])
    found: list[dict[str, Any]] = []
    try:
        for _ in range(200):  # a bound, so a missing event fails the test instead of hanging
            message = await asyncio.to_thread(consumer.poll, 0.2)
            if message is None or message.error():
                continue
            if message.key() == key.encode():
                found.append(orjson.loads(message.value()))
            if len(found) >= expected:
                break
    finally:
        await asyncio.to_thread(consumer.close)
    return found


async def test_errors_come_in_gemini_format(http: aiohttp.ClientSession) -> None:
    status, body = await post(http, "nothing", {"id": "x"})
    assert (status, body) == (
        404,
        {"status": "error", "error": {"reason": "Entity NOTHING not found"}},
    )
    async with http.post("/data/category", json={"record": {"id": "x"}}) as response:
        assert response.status == 400
        assert await response.json() == {
            "status": "error",
            "error": {"reason": "data field not found in request body"},
        }
    async with http.post("/data/category", data=b"{not json", headers=JSON) as response:
        assert response.status == 400
        assert (await response.json())["status"] == "error"
    async with http.put("/data/category") as response:
        assert response.status == 405
        assert await response.json() == {
            "status": "error",
            "error": {"reason": "Method Not Allowed"},
        }
    status, body = await get(http, "/data/category/never-stored")
    assert status == 404
    assert body["error"]["reason"] == "EntityRecord with id never-stored not found for CATEGORY"


async def test_entity_names_are_case_insensitive_and_schemas_are_listed(
    http: aiohttp.ClientSession, tag: str
) -> None:
    cat = await category(http, tag)
    status, body = await get(http, f"/data/CaTeGoRy/{cat}")
    assert status == 200
    assert body["data"]["id"] == cat

    status, body = await get(http, "/entity")
    assert status == 200
    assert [e["name"] for e in body["data"]] == ["CATEGORY", "PRODUCT", "PRICE"]
    status, body = await get(http, "/entity/price")
    assert body["data"]["lk"] == ["product", "currency"]
    assert body["data"]["fields"][0] == {
        "name": "product",
        "type": "ENTITY_REF",
        "required": True,
        "entityRef": {"entity": "PRODUCT"},
    }


async def test_a_chunk_produced_straight_to_kafka_is_written_record_by_record(
    http: aiohttp.ClientSession, pg: asyncpg.Connection, settings: Settings, tag: str
) -> None:
    cat = await category(http, tag)
    batch_id = f"kafka-entity-{tag}"
    envelope = {
        "entity": "Product",  # entity names are case-insensitive here too
        "batch_id": batch_id,
        "records": [product(tag, 0, cat), product(tag, 1, cat, quantity="x"), product(tag, 2, cat)],
    }
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    producer.produce(topics.INGEST, orjson.dumps(envelope), key=batch_id.encode())
    assert producer.flush(10) == 0
    producer.close()

    for _ in range(300):  # a bound, not a timing assertion
        status = await pg.fetchval("SELECT status FROM batch WHERE id = $1", batch_id)
        if status == "completed":
            break
        await asyncio.sleep(0.1)
    results = await stored_results(pg, batch_id)
    assert [(r.index, r.status, r.entity_id, r.error) for r in results] == [
        (0, "inserted", f"p-{tag}-0", None),
        (1, "failed", None, "conversion_error"),
        (2, "inserted", f"p-{tag}-2", None),
    ]
    assert await pg.fetchval("SELECT count(*) FROM entity_product WHERE category = $1", cat) == 2
