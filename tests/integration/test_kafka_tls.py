"""The whole pipeline over TLS to Kafka (mutual TLS: the broker checks batchline's client
certificate too), and a wrong CA stopping a process at start-up with the reason.

The embedded broker speaks no TLS: a proxy of the test's own terminates it, and the broker
advertises the proxy's address so that every connection goes through it."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from batchline.cli.embedded import EmbeddedKafka, free_port
from batchline.cli.runtime import create_topics, serving_api
from batchline.kafka_security import SecurityProtocol
from batchline.settings import Settings
from consumers.app import run_worker, worker_resources
from tests.certificates import Certificates, make_certificates
from tests.integration.activities import BASE, activity
from tests.integration.processes import run_cli
from tests.tcp_proxy import Target
from tests.tls_proxy import TlsProxy, server_context


@contextlib.asynccontextmanager
async def _broker_behind_tls(tmp_path: Path, certificates: Certificates) -> AsyncIterator[str]:
    """A broker of its own, reachable only over (mutual) TLS; yields the bootstrap address."""
    proxy_port = free_port()
    context = server_context(certificates)
    context.verify_mode = ssl.CERT_REQUIRED  # clients must show a certificate of our CA
    context.load_verify_locations(certificates.ca_file)
    async with EmbeddedKafka(tmp_path / "broker", advertised_port=proxy_port) as broker:
        proxy = TlsProxy(Target("127.0.0.1", broker.port), proxy_port, context)
        await proxy.start()
        try:
            yield f"127.0.0.1:{proxy_port}"
        finally:
            await proxy.close()


def _over_tls(settings: Settings, bootstrap: str, certificates: Certificates) -> Settings:
    return settings.model_copy(
        update={
            "kafka_bootstrap_servers": bootstrap,
            "kafka_security_protocol": SecurityProtocol.SSL,
            "kafka_ssl_ca_file": certificates.ca_file,
            "kafka_ssl_cert_file": certificates.client_cert,
            "kafka_ssl_key_file": certificates.client_key,
            "consumer_group": f"tls-{uuid.uuid4().hex[:8]}",
            "kafka_session_timeout_ms": 2000,
            "http_port": free_port(),
        }
    )


async def test_a_batch_goes_through_api_inserter_and_projector_over_tls(
    settings: Settings, tmp_path: Path, tag: str
) -> None:
    certificates = make_certificates(tmp_path / "certs")
    async with _broker_behind_tls(tmp_path, certificates) as bootstrap:
        tls = _over_tls(settings, bootstrap, certificates)
        await create_topics(tls)  # admin client
        stop = asyncio.Event()
        async with worker_resources(tls) as resources:  # Faust inserter, projector consumer
            worker = asyncio.create_task(run_worker(resources, stop))
            try:
                async with (
                    serving_api(tls) as url,  # the API's producer
                    aiohttp.ClientSession(base_url=url) as http,
                    http.post(
                        BASE, json={"activities": [activity(tag, 0), activity(tag, 1)]}
                    ) as response,
                ):
                    status, body = response.status, await response.json()
            finally:
                stop.set()
                await asyncio.wait_for(worker, 30)

    assert status == 201, body
    assert (body["status"], body["inserted_count"]) == ("completed", 2)


async def test_a_broker_certificate_from_another_ca_stops_a_worker_at_start_up(
    settings: Settings, tmp_path: Path
) -> None:
    certificates = make_certificates(tmp_path / "certs")
    stranger = make_certificates(tmp_path / "other", ca_name="someone else's CA")
    async with _broker_behind_tls(tmp_path, certificates) as bootstrap:
        finished = await run_cli(
            settings,
            "worker",
            kafka_bootstrap_servers=bootstrap,
            kafka_security_protocol="SSL",
            kafka_ssl_ca_file=stranger.ca_file,
            kafka_ssl_cert_file=stranger.client_cert,
            kafka_ssl_key_file=stranger.client_key,
            entities_dir=settings.entities_dir,
        )

    assert finished.code == 2, finished.err
    assert f"cannot reach Kafka at {bootstrap} over SSL" in finished.err
    assert "certificate verify failed" in finished.err, finished.err
