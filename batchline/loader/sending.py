"""Sending one batch to ``POST /api/v1/batch-inserts`` and waiting for its outcome.

Every request of a batch carries the batch's ``Idempotency-Key``, so retrying after a lost
connection or a timeout is always safe: the server answers a repeated key from what it
stored instead of inserting again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from yarl import URL

from batchline.vocabulary import BatchStatus

BATCH_INSERTS = "/api/v1/batch-inserts"
# Statuses worth another try: the server or something in front of it is busy or restarting,
# or (409) an earlier request with the same key, perhaps from a run that died, is still
# being answered.
_RETRY_STATUSES = frozenset({409, 429, 502, 503, 504})
_POLL_FIRST_SECONDS = 0.2
_POLL_MAX_SECONDS = 2.0


# The longest Retry-After a server may ask for and be obeyed; longer counts as this.
_MAX_RETRY_AFTER_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Tries per request. The default waits about 75 s in all: longer than a database
    restart, and than the server's hold on a key whose request died (10 s)."""

    max_attempts: int = 12
    first_backoff_seconds: float = 0.5
    max_backoff_seconds: float = 10.0

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (from 1): doubling, or
        what the server asked for (``Retry-After``) when that is longer."""
        doubling = min(self.max_backoff_seconds, self.first_backoff_seconds * 2 ** (attempt - 1))
        asked = min(retry_after or 0.0, _MAX_RETRY_AFTER_SECONDS)
        return float(max(doubling, asked))


@dataclass(frozen=True, slots=True)
class BatchAnswer:
    """A finished batch operation, as ``GET /api/v1/batch-inserts/{id}`` shows it."""

    batch_id: str
    status: str
    inserted: int
    failed: int
    results: list[dict[str, Any]]
    failure_reason: str | None
    # Answered from an earlier request with this key: nothing was inserted by this one.
    replayed: bool


class BatchNotSent(Exception):
    """The server refused the batch, or did not answer within the retry policy."""


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    body: Any
    headers: dict[str, str]


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _retry_after(headers: dict[str, str]) -> float | None:
    """``Retry-After`` in seconds (the HTTP-date form is not worth a client's trust)."""
    try:
        return max(0.0, float(headers.get("Retry-After", "")))
    except ValueError:
        return None


class BatchSender:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        publish_events: bool,
        retry: RetryPolicy,
    ) -> None:
        self._session = session
        self._base = URL(base_url)
        self._post_url = self._base.join(URL(BATCH_INSERTS))
        if publish_events:
            self._post_url = self._post_url.with_query(publish_events="true")
        self._retry = retry

    async def send(self, body: bytes, idempotency_key: str) -> BatchAnswer:
        headers = {"Content-Type": "application/json", "Idempotency-Key": idempotency_key}
        reply = await self._with_retries(
            lambda: self._request("POST", self._post_url, data=body, headers=headers)
        )
        replayed = reply.headers.get("Idempotent-Replayed") == "true"
        if reply.status == 201:
            return _answer(reply.body, replayed)
        if reply.status == 202 and "Location" in reply.headers:
            return await self._poll(URL(reply.headers["Location"]), replayed)
        if reply.status == 413:
            raise BatchNotSent(f"{_refusal(reply)} (a smaller --batch-size fits)")
        raise BatchNotSent(_refusal(reply))

    async def _poll(self, location: URL, replayed: bool) -> BatchAnswer:
        """GET the operation until it is no longer processing.

        The server marks a batch that stops making progress as failed (after
        ``BATCHLINE_STALE_BATCH_SECONDS``), so this ends.
        """
        url = self._base.join(location)
        pause = _POLL_FIRST_SECONDS
        while True:
            await asyncio.sleep(pause)
            pause = min(pause * 2, _POLL_MAX_SECONDS)
            reply = await self._with_retries(lambda: self._request("GET", url))
            if reply.status != 200:
                raise BatchNotSent(f"polling {location}: {_refusal(reply)}")
            if (
                not isinstance(reply.body, dict)
                or reply.body.get("status") != BatchStatus.PROCESSING
            ):
                return _answer(reply.body, replayed)

    async def _with_retries(self, attempt_once: Callable[[], Awaitable[_Reply]]) -> _Reply:
        attempt = 1
        while True:
            try:
                return await attempt_once()
            except _Retryable as exc:
                if attempt >= self._retry.max_attempts:
                    raise BatchNotSent(
                        f"gave up after {attempt} attempt{'s' if attempt > 1 else ''}: {exc}"
                    ) from exc
                pause = self._retry.backoff(attempt, exc.retry_after)
            await asyncio.sleep(pause)
            attempt += 1

    async def _request(self, method: str, url: URL, **kwargs: Any) -> _Reply:
        try:
            async with self._session.request(method, url, **kwargs) as response:
                raw = await response.read()
                reply = _Reply(response.status, _json_or_text(raw), dict(response.headers))
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}" if str(exc) else repr(exc)) from exc
        if reply.status in _RETRY_STATUSES:
            raise _Retryable(_refusal(reply), _retry_after(reply.headers))
        return reply


def _json_or_text(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode(errors="replace")


def _refusal(reply: _Reply) -> str:
    """``413 payload_too_large: A batch holds at most …`` from the API's error body."""
    error = reply.body.get("error") if isinstance(reply.body, dict) else None
    if isinstance(error, dict):
        return f"{reply.status} {error.get('code')}: {error.get('message')}"
    return f"{reply.status}: {str(reply.body)[:200]}"


def _answer(body: Any, replayed: bool) -> BatchAnswer:
    try:
        return BatchAnswer(
            batch_id=body["id"],
            status=body["status"],
            inserted=body["inserted_count"],
            failed=body["failed_count"],
            results=body.get("results", []),
            failure_reason=body.get("failure_reason"),
            replayed=replayed,
        )
    except (TypeError, KeyError) as exc:
        raise BatchNotSent(
            f"not an answer of the batch-inserts API (is --url right?): {str(body)[:200]}"
        ) from exc
