"""A client driven by /openapi.json alone: operations by operationId, URLs from the path
templates, and every request and answer checked against the schemas the description gives.

It knows nothing of batchline beyond the description: what a generated client would do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from jsonschema import Draft202012Validator, FormatChecker


class NotAsDescribed(AssertionError):
    """A request or an answer that the description does not admit."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


class OpenApiClient:
    def __init__(self, http: aiohttp.ClientSession, document: dict[str, Any]) -> None:
        self._http = http
        self._components = document["components"]
        self._operations: dict[str, tuple[str, str, dict[str, Any]]] = {}
        for path, item in document["paths"].items():
            for method, operation in item.items():
                self._operations[operation["operationId"]] = (method.upper(), path, operation)
        self.called: set[str] = set()

    @property
    def operation_ids(self) -> set[str]:
        return set(self._operations)

    def _check(self, schema: dict[str, Any], value: Any, what: str) -> None:
        rooted = schema | {"components": self._components}
        errors = list(
            Draft202012Validator(rooted, format_checker=FormatChecker()).iter_errors(value)
        )
        if errors:
            raise NotAsDescribed(f"{what}: {errors[0].message} at {list(errors[0].path)}")

    async def call(
        self,
        operation_id: str,
        *,
        body: Any = None,
        **parameters: Any,
    ) -> Answer:
        method, path, operation = self._operations[operation_id]
        query: dict[str, str] = {}
        headers: dict[str, str] = {}
        for parameter in operation.get("parameters", []):
            name, where = parameter["name"], parameter["in"]
            key = name.replace("-", "_").replace("[", "_").replace("]", "")
            if key not in parameters:
                if parameter.get("required"):
                    raise NotAsDescribed(f"{operation_id}: {name} is required")
                continue
            value = parameters.pop(key)
            self._check(parameter["schema"], value, f"{operation_id} parameter {name}")
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            if where == "path":
                path = path.replace("{" + name + "}", quote(text, safe=""))
            elif where == "query":
                query[name] = text
            else:
                headers[name] = text
        if parameters:
            raise NotAsDescribed(f"{operation_id} takes no {sorted(parameters)}")
        if body is not None:
            described = operation.get("requestBody")
            if described is None:
                raise NotAsDescribed(f"{operation_id} takes no body")
            schema = described["content"]["application/json"]["schema"]
            self._check(schema, body, f"{operation_id} request body")
        async with self._http.request(
            method, path, params=query, headers=headers, json=body
        ) as response:
            answer = await self._read(operation_id, operation, response)
        self.called.add(operation_id)
        return answer

    async def _read(
        self, operation_id: str, operation: dict[str, Any], response: aiohttp.ClientResponse
    ) -> Answer:
        described = operation["responses"].get(str(response.status))
        if described is None:
            text = await response.text()
            raise NotAsDescribed(f"{operation_id}: undocumented {response.status}: {text[:300]}")
        media = described.get("content", {})
        if response.content_type not in media:
            raise NotAsDescribed(
                f"{operation_id} {response.status}: {response.content_type}, not {sorted(media)}"
            )
        if response.content_type == "application/json":
            body = await response.json()
        else:
            body = await response.text()
        self._check(
            media[response.content_type]["schema"], body, f"{operation_id} {response.status}"
        )
        for name, header in described.get("headers", {}).items():
            if name in response.headers:
                self._check(header["schema"], response.headers[name], f"{operation_id} {name}")
        return Answer(response.status, dict(response.headers), body)
