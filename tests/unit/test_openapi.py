"""/openapi.json as built by the application: valid OpenAPI 3.1, and a description of every
route it serves, with the bodies, parameters and answers its handlers use."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from openapi_spec_validator import validate

from api.app import create_app
from api.openapi import DESCRIPTION, openapi_document
from batchline.settings import Settings

ENTITIES = Path(__file__).resolve().parents[2] / "entities"
METHODS = ("get", "put", "post", "patch", "delete")


@pytest.fixture(scope="module")
def app() -> web.Application:
    # Nothing connects before the application starts: building it needs no services.
    return create_app(Settings(database_url="postgresql://nowhere/none", entities_dir=ENTITIES))


@pytest.fixture(scope="module")
def document(app: web.Application) -> dict[str, Any]:
    return openapi_document(app[DESCRIPTION])


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def test_the_description_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)


def test_every_route_served_is_described_once_and_nothing_else(
    app: web.Application, document: dict[str, Any]
) -> None:
    served = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method == "HEAD" or path in ("/openapi.json", "/docs"):
            continue
        if path.startswith("/docs/") or path.endswith("/"):
            continue  # Swagger UI's assets; trailing-slash twins of described paths
        if path == "/console" or path.startswith("/console/"):
            continue  # the operator console's page and scripts, no API
        for entity in ("category", "product", "price"):  # /data/{entity}: one path each
            served.add((route.method, path.replace("/data/{entity}", f"/data/{entity}")))

    described = set(operations(document))

    assert served == described
    assert not any(p.endswith("/") or p.startswith("/docs") for _, p in described)
    assert ("GET", "/openapi.json") not in described


def test_every_operation_has_a_tag_a_whole_summary_and_a_success_answer(
    document: dict[str, Any],
) -> None:
    ids = set()
    for (method, path), operation in operations(document).items():
        assert operation["tags"], (method, path)
        assert not operation["summary"].endswith(("(", ",")), operation["summary"]
        assert any(code.startswith("2") for code in operation["responses"]), (method, path)
        assert "default" not in operation["responses"]
        ids.add(operation["operationId"])
    assert len(ids) == len(operations(document))
    assert {tag["name"] for tag in document["tags"]} >= {
        "batch-inserts",
        "instance-storage",
        "entities",
        "dead letters",
        "operations",
    }


def test_batch_insert_answers_201_or_202_with_a_location_and_takes_its_headers(
    document: dict[str, Any],
) -> None:
    create = operations(document)[("POST", "/api/v1/batch-inserts")]

    assert set(create["responses"]) >= {"201", "202", "400", "413", "422"}
    assert "Location" in create["responses"]["202"]["headers"]
    assert "Idempotent-Replayed" in create["responses"]["201"]["headers"]
    parameters = {(p["in"], p["name"]) for p in create["parameters"]}
    assert parameters == {("query", "publish_events"), ("header", "Idempotency-Key")}
    body = document["components"]["schemas"]["BatchInsertRequest"]
    assert body["properties"]["activities"]["minItems"] == 1
    assert body["properties"]["activities"]["items"] == {"$ref": "#/components/schemas/Activity"}
    listing = operations(document)[("GET", "/api/v1/batch-inserts")]
    assert {p["name"] for p in listing["parameters"]} == {
        "page",
        "limit",
        "status",
        "entity",
        "source",
        "q",
        "include",
    }
    retry = document["components"]["schemas"]["RetryRequest"]["properties"]["retry_indices"]
    assert (retry["minItems"], retry["uniqueItems"]) == (1, True)


def test_each_front_door_describes_its_own_error_format(document: dict[str, Any]) -> None:
    ops = operations(document)
    schemas = document["components"]["schemas"]

    def error_schema(method: str, path: str, status: str) -> dict[str, Any]:
        content = ops[(method, path)]["responses"][status]["content"]
        return dict((content.get("application/json") or content["text/plain"])["schema"])

    assert error_schema("GET", "/api/v1/batch-inserts/{batch_id}", "404") == {
        "$ref": "#/components/schemas/ErrorBody"
    }
    assert error_schema("POST", "/data/category", "400") == {
        "$ref": "#/components/schemas/GeminiError"
    }
    assert set(schemas["GeminiErrorDetail"]["properties"]) == {
        "reason",
        "errors",
        "fieldValidationErrors",
        "recordValidationErrors",
    }
    bulk = ops[("POST", "/instance-storage/instances/bulk")]["responses"]
    assert bulk["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/FolioErrors"
    }
    assert set(bulk["500"]["content"]) == {"text/plain"}
    assert set(ops[("GET", "/metrics")]["responses"]["200"]["content"]) == {"text/plain"}
    name = schemas["InstancesBulkRequest"]["properties"]["recordsFileName"]
    assert name["minLength"] == 1
    assert re.fullmatch(name["pattern"], "folder/instances.ndjson")
    assert not re.fullmatch(name["pattern"], "folder/../instances.ndjson")


def test_entity_schemas_from_the_yaml_are_request_and_response_bodies(
    document: dict[str, Any],
) -> None:
    ops = operations(document)
    schemas = document["components"]["schemas"]

    insert = ops[("POST", "/data/product")]["requestBody"]["content"]["application/json"]
    one, many = insert["schema"]["properties"]["data"]["anyOf"]
    assert one == {"$ref": "#/components/schemas/PRODUCT.input"}
    assert many["items"] == one
    product = schemas["PRODUCT.input"]
    assert product["required"] == ["id", "name", "category"]
    assert product["additionalProperties"] is False
    assert product["properties"]["status"]["anyOf"][0]["enum"] == [
        "DRAFT",
        "ACTIVE",
        "DISCONTINUED",
    ]
    assert "required" not in schemas["PRODUCT.patch"]
    patch = ops[("PATCH", "/data/product/{lk}")]["requestBody"]["content"]["application/json"]
    assert patch["schema"]["properties"]["data"] == {"$ref": "#/components/schemas/PRODUCT.patch"}
    answer = ops[("GET", "/data/product/{lk}")]["responses"]["200"]["content"]["application/json"]
    assert answer["schema"]["properties"]["data"] == {"$ref": "#/components/schemas/PRODUCT.record"}
    filters = {p["name"] for p in ops[("GET", "/data/product")]["parameters"]}
    assert {"start", "limit", "orderBy", "price[GT]", "name[CONTAINS]", "available"} <= filters
    assert "dimensions" not in filters
