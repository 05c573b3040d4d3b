"""Object storage: one small interface, a local directory and any S3-compatible store.

Files are read as a stream of byte chunks and split into lines by :class:`LineReader`, which
holds at most one partial line and one chunk, so a 1 GB file never sits in memory. Writes
are all-or-nothing: a local file appears under its name only once complete (write, then
rename), and an S3 object only when its upload (single or multipart) completes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from batchline.settings import Settings
from batchline.text import holds_nul

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

READ_CHUNK_BYTES = 1024 * 1024
# S3 multipart parts must be at least 5 MiB (but the last).
S3_PART_BYTES = 8 * 1024 * 1024


class StorageError(Exception):
    """The store could not be read or written (unreachable, denied, broken)."""


class ObjectNotFound(StorageError):
    def __init__(self, key: str) -> None:
        super().__init__(f"File {key} not found")
        self.key = key


class InvalidKey(ValueError):
    """A name that cannot address an object in this store."""


Data = bytes | AsyncIterable[bytes]


class ObjectStorage(Protocol):
    async def exists(self, key: str) -> bool: ...

    def read_chunks(self, key: str) -> AsyncIterator[bytes]:
        """The object's bytes in order; raises ObjectNotFound or StorageError."""
        ...

    async def write(self, key: str, data: Data) -> None:
        """Store ``data`` under ``key``, replacing what was there, all or nothing."""
        ...


MAX_KEY_BYTES = 1024
MAX_NAME_BYTES = 255


def object_key(name: str) -> str:
    """A client's file name as a key: leading slashes dropped (as FOLIO does), no ``..``."""
    key = name.lstrip("/")
    if not key or key.endswith("/"):
        raise InvalidKey("must name a file")
    if any(part in ("", ".", "..") for part in key.split("/")) or holds_nul(key):
        raise InvalidKey("must be a relative path without empty, '.' or '..' segments")
    # What file systems (a name) and S3 (a whole key) take, so no store fails on its own.
    if len(key.encode()) > MAX_KEY_BYTES or any(
        len(part.encode()) > MAX_NAME_BYTES for part in key.split("/")
    ):
        raise InvalidKey(
            f"must be at most {MAX_KEY_BYTES} bytes, each '/'-separated part"
            f" at most {MAX_NAME_BYTES}"
        )
    return key


async def _iterate(data: Data) -> AsyncIterator[bytes]:
    if isinstance(data, bytes):
        yield data
        return
    async for piece in data:
        yield piece


class LocalDirectoryStorage:
    """Objects are files under ``root``; keys are relative paths inside it."""

    def __init__(self, root: Path, read_chunk_bytes: int = READ_CHUNK_BYTES) -> None:
        self.root = root
        self._read_chunk_bytes = read_chunk_bytes

    def _path(self, key: str) -> Path:
        return self.root / object_key(key)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)

    async def read_chunks(self, key: str) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            handle: IO[bytes] = await asyncio.to_thread(path.open, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFound(key) from exc
        except OSError as exc:
            raise StorageError(f"cannot read {key}: {exc}") from exc
        try:
            while chunk := await asyncio.to_thread(handle.read, self._read_chunk_bytes):
                yield chunk
        except OSError as exc:
            raise StorageError(f"cannot read {key}: {exc}") from exc
        finally:
            handle.close()

    async def write(self, key: str, data: Data) -> None:
        path = self._path(key)
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
        try:
            await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
            handle: IO[bytes] = await asyncio.to_thread(partial.open, "wb")
            try:
                async for piece in _iterate(data):
                    await asyncio.to_thread(handle.write, piece)
                await asyncio.to_thread(handle.flush)
                await asyncio.to_thread(os.fsync, handle.fileno())
            finally:
                handle.close()
            await asyncio.to_thread(os.replace, partial, path)
        except OSError as exc:
            raise StorageError(f"cannot write {key}: {exc}") from exc
        finally:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)


# What a failing S3 call can raise: the SDK's own errors and the HTTP transport's.
_S3_FAILURES = (BotoCoreError, ClientError, aiohttp.ClientError, OSError, asyncio.TimeoutError)
_S3_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}


def _not_found(exc: BaseException) -> bool:
    if not isinstance(exc, ClientError):
        return False
    return str(exc.response.get("Error", {}).get("Code")) in _S3_NOT_FOUND


class S3Storage:
    """Objects under ``prefix`` in ``bucket`` of any S3-compatible store (AWS S3, MinIO)."""

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        prefix: str = "",
        part_bytes: int = S3_PART_BYTES,
        read_chunk_bytes: int = READ_CHUNK_BYTES,
    ) -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._part_bytes = part_bytes
        self._read_chunk_bytes = read_chunk_bytes

    def _name(self, key: str) -> str:
        return self.prefix + object_key(key)

    async def exists(self, key: str) -> bool:
        try:
            await self._client.head_object(Bucket=self.bucket, Key=self._name(key))
        except _S3_FAILURES as exc:
            if _not_found(exc):
                return False
            raise StorageError(f"cannot reach s3://{self.bucket}: {exc}") from exc
        return True

    async def read_chunks(self, key: str) -> AsyncIterator[bytes]:
        try:
            response = await self._client.get_object(Bucket=self.bucket, Key=self._name(key))
        except _S3_FAILURES as exc:
            if _not_found(exc):
                raise ObjectNotFound(key) from exc
            raise StorageError(f"cannot read {key} from s3://{self.bucket}: {exc}") from exc
        body = response["Body"]
        try:
            async with body:
                async for chunk in body.iter_chunks(self._read_chunk_bytes):
                    yield chunk
        except _S3_FAILURES as exc:
            raise StorageError(f"cannot read {key} from s3://{self.bucket}: {exc}") from exc

    async def write(self, key: str, data: Data) -> None:
        name = self._name(key)
        try:
            if isinstance(data, bytes):
                await self._client.put_object(Bucket=self.bucket, Key=name, Body=data)
            else:
                await self._upload(name, data)
        except _S3_FAILURES as exc:
            raise StorageError(f"cannot write {key} to s3://{self.bucket}: {exc}") from exc

    async def _upload(self, name: str, data: AsyncIterable[bytes]) -> None:
        """Small streams in one PUT; larger ones as a multipart upload of bounded parts."""
        parts = self._parts(data)
        first = await anext(parts, b"")
        second = await anext(parts, None)
        if second is None:
            await self._client.put_object(Bucket=self.bucket, Key=name, Body=first)
            return
        upload = await self._client.create_multipart_upload(Bucket=self.bucket, Key=name)
        upload_id = upload["UploadId"]
        try:
            completed: list[dict[str, Any]] = []
            number = 0

            async def send(part: bytes) -> None:
                nonlocal number
                number += 1
                sent = await self._client.upload_part(
                    Bucket=self.bucket, Key=name, UploadId=upload_id, PartNumber=number, Body=part
                )
                completed.append({"ETag": sent["ETag"], "PartNumber": number})

            await send(first)
            await send(second)
            async for part in parts:
                await send(part)
            await self._client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=name,
                UploadId=upload_id,
                MultipartUpload={"Parts": completed},  # type: ignore[typeddict-item]
            )
        except BaseException:
            with contextlib.suppress(*_S3_FAILURES):
                await self._client.abort_multipart_upload(
                    Bucket=self.bucket, Key=name, UploadId=upload_id
                )
            raise

    async def _parts(self, data: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        buffer = bytearray()
        async for piece in data:
            buffer += piece
            while len(buffer) >= self._part_bytes:
                yield bytes(buffer[: self._part_bytes])
                del buffer[: self._part_bytes]
        if buffer:
            yield bytes(buffer)


@contextlib.asynccontextmanager
async def open_storage(settings: Settings) -> AsyncIterator[ObjectStorage]:
    """The store ``BATCHLINE_STORAGE_URL`` names, open for the lifetime of the context."""
    url = settings.storage_url
    if url is None:
        root = settings.data_dir / "storage"
        await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True)
        yield LocalDirectoryStorage(root)
        return
    parts = urlsplit(url)
    if parts.scheme == "file":
        root = Path(url.removeprefix("file://"))
        await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True)
        yield LocalDirectoryStorage(root)
        return
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"BATCHLINE_STORAGE_URL must be file://DIR or s3://BUCKET[/PREFIX]: {url}")
    secret = settings.s3_secret_access_key
    config = AioConfig(
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
        s3={"addressing_style": settings.s3_addressing_style},
    )
    async with get_session().create_client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=secret.get_secret_value() if secret else None,
        region_name=settings.s3_region,
        config=config,
    ) as client:
        yield S3Storage(client, parts.netloc, parts.path)


# --- Lines -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    number: int  # 1-based
    # None when the line is longer than the reader's limit: its bytes were skipped, not kept.
    data: bytes | None


class LineReader:
    """Splits a stream of chunks into lines, lazily, never holding more than one partial
    line (at most ``max_line_bytes``) and the chunk being split.

    ``peak_buffered_bytes`` and ``bytes_read`` say how much it held and consumed, so the
    bound is observable. A final line without a newline is still a line.
    """

    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self.peak_buffered_bytes = 0
        self.bytes_read = 0

    async def lines(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[Line]:
        pending = bytearray()
        overlong = False
        number = 0
        async for chunk in chunks:
            self.bytes_read += len(chunk)
            self.peak_buffered_bytes = max(self.peak_buffered_bytes, len(pending) + len(chunk))
            start = 0
            while (end := chunk.find(b"\n", start)) >= 0:
                number += 1
                if overlong or len(pending) + end - start > self.max_line_bytes:
                    yield Line(number, None)
                elif pending:
                    pending += chunk[start:end]
                    yield Line(number, bytes(pending))
                else:
                    yield Line(number, chunk[start:end])
                pending.clear()
                overlong = False
                start = end + 1
            if not overlong:
                if len(pending) + len(chunk) - start > self.max_line_bytes:
                    overlong = True
                    pending.clear()
                else:
                    pending += chunk[start:]
        if pending or overlong:
            yield Line(number + 1, None if overlong else bytes(pending))


async def copy_lines(
    chunks: AsyncIterable[bytes], wanted: AsyncIterator[int]
) -> AsyncIterator[bytes]:
    """The lines numbered by ``wanted`` (1-based, ascending), byte for byte, each ending in a
    newline. Streams slices of the chunks: no line is ever held whole, however long."""
    target = await anext(wanted, None)
    line = 1
    open_line = False
    async for chunk in chunks:
        if target is None:
            break
        start = 0
        while target is not None and start < len(chunk):
            end = chunk.find(b"\n", start)
            stop = len(chunk) if end < 0 else end + 1
            if line == target:
                yield chunk[start:stop]
                open_line = end < 0
            if end < 0:
                break
            line += 1
            start = stop
            while target is not None and target < line:
                target = await anext(wanted, None)
    if open_line:
        yield b"\n"
