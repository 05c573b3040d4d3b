"""Both object stores behind one contract, and the bulk front door on S3.

The local directory always runs. S3 runs against, in this order: an endpoint from
``BATCHLINE_TEST_S3_ENDPOINT_URL`` (with ``BATCHLINE_TEST_S3_ACCESS_KEY_ID`` /
``_SECRET_ACCESS_KEY`` / ``_BUCKET``), MinIO in Docker through testcontainers, or moto's
S3-compatible server on a loopback port; with none of them the S3 cases are skipped.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import orjson
import pytest
from aiobotocore.session import get_session
from botocore.exceptions import ClientError
from pydantic import SecretStr

from batchline.cli.embedded import free_port
from batchline.cli.runtime import serving_api
from batchline.metrics import Metrics
from batchline.settings import Settings
from batchline.storage import (
    LineReader,
    LocalDirectoryStorage,
    ObjectNotFound,
    ObjectStorage,
    S3Storage,
    StorageError,
    open_storage,
)
from tests.integration.instances import BULK, instance, new_id


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    bucket: str


def _docker_answers() -> bool:
    """Whether a Docker engine listens (checked on its socket, without the SDK)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return True  # a remote engine: testcontainers will say if it is not there
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2)
        try:
            probe.connect(host.removeprefix("unix://"))
        except OSError:
            return False
    return True


def _wait_for_http(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    endpoint = os.environ.get("BATCHLINE_TEST_S3_ENDPOINT_URL")
    if endpoint:
        yield S3Server(
            endpoint,
            os.environ.get("BATCHLINE_TEST_S3_ACCESS_KEY_ID", ""),
            os.environ.get("BATCHLINE_TEST_S3_SECRET_ACCESS_KEY", ""),
            os.environ.get("BATCHLINE_TEST_S3_BUCKET", "batchline-test"),
        )
        return
    if _docker_answers():
        from testcontainers.core.container import DockerContainer

        minio = (
            DockerContainer("minio/minio:latest")
            .with_command("server /data")
            .with_env("MINIO_ROOT_USER", "batchline")
            .with_env("MINIO_ROOT_PASSWORD", "batchline-secret")
            .with_exposed_ports(9000)
        )
        with minio:
            url = f"http://{minio.get_container_host_ip()}:{minio.get_exposed_port(9000)}"
            _wait_for_http(f"{url}/minio/health/live")
            yield S3Server(url, "batchline", "batchline-secret", "batchline-test")
        return
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        pytest.skip(
            "no S3-compatible server: set BATCHLINE_TEST_S3_ENDPOINT_URL, start Docker"
            " (MinIO via testcontainers) or install moto[server]"
        )
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3Server(f"http://127.0.0.1:{port}", "testing", "testing", "batchline-test")
    finally:
        server.stop()


def s3_settings(base: Settings, server: S3Server, prefix: str) -> Settings:
    return base.model_copy(
        update={
            "storage_url": f"s3://{server.bucket}/{prefix}",
            "s3_endpoint_url": server.endpoint,
            "s3_access_key_id": server.access_key,
            "s3_secret_access_key": SecretStr(server.secret_key),
            "s3_addressing_style": "path",
        }
    )


async def _ensure_bucket(server: S3Server) -> None:
    async with get_session().create_client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name="us-east-1",
    ) as client:
        with contextlib.suppress(ClientError):  # it exists already
            await client.create_bucket(Bucket=server.bucket)


@contextlib.asynccontextmanager
async def _s3_storage(base: Settings, server: S3Server) -> AsyncIterator[ObjectStorage]:
    await _ensure_bucket(server)
    async with open_storage(s3_settings(base, server, f"test-{uuid.uuid4().hex}")) as storage:
        assert isinstance(storage, S3Storage)
        yield storage


@pytest.fixture(params=["local", "s3"])
async def storage(
    request: pytest.FixtureRequest, tmp_path: Path, settings: Settings
) -> AsyncIterator[ObjectStorage]:
    if request.param == "local":
        yield LocalDirectoryStorage(tmp_path / "store")
        return
    server: S3Server = request.getfixturevalue("s3_server")
    async with _s3_storage(settings, server) as store:
        yield store


async def _read(storage: ObjectStorage, key: str) -> bytes:
    return b"".join([chunk async for chunk in storage.read_chunks(key)])


async def _pieces(total: int, size: int) -> AsyncIterator[bytes]:
    for start in range(0, total, size):
        yield bytes([start // size % 256]) * min(size, total - start)


async def test_written_objects_read_back_and_exist(storage: ObjectStorage) -> None:
    await storage.write("folder/file.ndjson", b'{"a": 1}\n')

    assert await storage.exists("folder/file.ndjson")
    assert await _read(storage, "/folder/file.ndjson") == b'{"a": 1}\n'


async def test_a_missing_object_does_not_exist_and_cannot_be_read(storage: ObjectStorage) -> None:
    assert not await storage.exists("nothing/here")
    with pytest.raises(ObjectNotFound, match="File nothing/here not found"):
        await _read(storage, "nothing/here")


async def test_a_large_stream_is_stored_whole_and_replaces_the_old_object(
    storage: ObjectStorage,
) -> None:
    await storage.write("big", b"old")
    total = 12 * 1024 * 1024 + 5  # more than one S3 multipart part

    await storage.write("big", _pieces(total, 1024 * 1024))

    expected = b"".join([piece async for piece in _pieces(total, 1024 * 1024)])
    assert await _read(storage, "big") == expected


async def test_a_twenty_thousand_line_file_is_read_lazily_with_bounded_buffering(
    storage: ObjectStorage,
) -> None:
    notes = b"x" * 160
    lines = [b'{"title": "instance %d", "notes": "%s"}' % (n, notes) for n in range(20_000)]
    data = b"".join(line + b"\n" for line in lines)
    await storage.write("large.ndjson", data)
    reader = LineReader(max_line_bytes=1024)

    stream = reader.lines(storage.read_chunks("large.ndjson"))
    first = await anext(stream)
    read_for_first = reader.bytes_read
    count = 1 + len([line async for line in stream])

    assert first.data == lines[0]
    assert count == 20_000
    assert read_for_first < len(data)  # the first line came before the file was read whole
    assert reader.bytes_read == len(data)
    chunk_bound = 1024 * 1024
    assert reader.peak_buffered_bytes <= chunk_bound + 1024 < len(data)


async def test_an_unreachable_s3_store_is_a_storage_error() -> None:
    closed = Settings(
        storage_url="s3://bucket",
        s3_endpoint_url=f"http://127.0.0.1:{free_port()}",
        s3_access_key_id="x",
        s3_secret_access_key="y",
    )
    async with open_storage(closed) as storage:
        with pytest.raises(StorageError):
            await storage.exists("any")
        with pytest.raises(StorageError):
            await storage.write("any", b"data")


async def test_the_bulk_front_door_answers_500_text_when_storage_is_down(
    settings: Settings, metrics: Metrics, api_url: str, pg: asyncpg.Connection
) -> None:
    down = settings.model_copy(
        update={
            "http_port": free_port(),
            "storage_url": "s3://bucket",
            "s3_endpoint_url": f"http://127.0.0.1:{free_port()}",
            "s3_access_key_id": "x",
            "s3_secret_access_key": SecretStr("y"),
        }
    )
    batches_before = await pg.fetchval("SELECT count(*) FROM batch")

    async with (
        serving_api(down, metrics) as url,
        aiohttp.ClientSession(base_url=url) as http,
        http.post(BULK, json={"recordsFileName": "file.ndjson"}) as response,
    ):
        status, content_type, text = (
            response.status,
            response.content_type,
            await response.text(),
        )

    assert status == 500
    assert content_type == "text/plain"
    assert "s3://bucket" in text
    assert await pg.fetchval("SELECT count(*) FROM batch") == batches_before


async def test_the_bulk_front_door_reads_and_writes_error_files_on_s3(
    settings: Settings, metrics: Metrics, api_url: str, s3_server: S3Server
) -> None:
    prefix = f"bulk-{uuid.uuid4().hex}"
    on_s3 = s3_settings(settings, s3_server, prefix).model_copy(update={"http_port": free_port()})
    lines = [orjson.dumps(instance(prefix, 0, id=new_id())), b"{not json"]
    await _ensure_bucket(s3_server)
    async with open_storage(on_s3) as storage:
        await storage.write("in/file.ndjson", b"\n".join(lines) + b"\n")

        async with (
            serving_api(on_s3, metrics) as url,
            aiohttp.ClientSession(base_url=url) as http,
            http.post(BULK, json={"recordsFileName": "in/file.ndjson"}) as response,
        ):
            status, body = response.status, await response.json()

        assert (status, body["errorsNumber"]) == (201, 1)
        assert await _read(storage, "in/file.ndjson_failedEntities") == b"{not json\n"
        errors = (await _read(storage, "in/file.ndjson_errors")).decode()
        assert errors.startswith("2, Line 2 is not valid JSON")
