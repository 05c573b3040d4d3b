"""TLS to PostgreSQL: sslmode and the root certificate, from the URL or the settings, reach
the pool, the migrations and the CLI. The server sits behind a TLS-terminating proxy of the
test's own (the test server speaks no TLS)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from batchline.cli.embedded import free_port
from batchline.cli.runtime import apply_migrations
from batchline.settings import Settings
from sql import db
from tests.certificates import Certificates, make_certificates
from tests.integration.processes import run_cli
from tests.tcp_proxy import postgres_target, through_proxy
from tests.tls_proxy import PostgresTlsProxy, server_context


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("pg-certs"))


@pytest.fixture
async def tls_proxy(
    settings: Settings, certificates: Certificates
) -> AsyncIterator[PostgresTlsProxy]:
    proxy = PostgresTlsProxy(
        postgres_target(settings.require_database_url()),
        free_port(),
        server_context(certificates),
    )
    await proxy.start()
    yield proxy
    await proxy.close()


def _over_tls(settings: Settings, proxy: PostgresTlsProxy, **tls: object) -> Settings:
    url = through_proxy(settings.require_database_url(), proxy.port)
    return settings.model_copy(update={"database_url": url, **tls})


async def test_pool_and_migrations_verify_the_server_with_the_configured_ca(
    settings: Settings, tls_proxy: PostgresTlsProxy, certificates: Certificates
) -> None:
    verified = _over_tls(
        settings,
        tls_proxy,
        database_sslmode="verify-full",
        database_sslrootcert=certificates.ca_file,
    )
    assert "sslmode=verify-full" in verified.require_database_url()

    assert await apply_migrations(verified) == []  # the session already migrated: up to date
    pool = await db.create_pool(verified.require_database_url(), max_size=2)
    try:
        assert await pool.fetchval("SELECT count(*) FROM batch") >= 0
    finally:
        await pool.close()
    assert tls_proxy.tls_sessions >= 2


async def test_the_url_can_say_it_too(
    settings: Settings, tls_proxy: PostgresTlsProxy, certificates: Certificates
) -> None:
    url = through_proxy(settings.require_database_url(), tls_proxy.port)
    url += f"{'&' if '?' in url else '?'}sslmode=verify-ca&sslrootcert={certificates.ca_file}"
    conn = await db.connect(Settings(database_url=url).require_database_url())
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()
    assert tls_proxy.tls_sessions == 1


async def test_a_server_signed_by_another_ca_is_refused(
    settings: Settings, tls_proxy: PostgresTlsProxy, tmp_path: Path
) -> None:
    other = make_certificates(tmp_path, ca_name="someone else's CA")
    wrong = _over_tls(
        settings, tls_proxy, database_sslmode="verify-full", database_sslrootcert=other.ca_file
    )
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        await db.connect(wrong.require_database_url())
    assert tls_proxy.tls_sessions == 0


async def test_require_against_a_server_without_tls_fails(settings: Settings) -> None:
    plain = settings.model_copy(update={"database_sslmode": "require"})
    if "sslmode=" in settings.require_database_url() or "host=/" in plain.require_database_url():
        pytest.skip("the test database URL sets its own sslmode or uses a unix socket")
    with pytest.raises(ConnectionError, match="rejected SSL upgrade"):
        await db.connect(plain.require_database_url())


async def test_the_cli_connects_over_tls_from_the_environment(
    settings: Settings, tls_proxy: PostgresTlsProxy, certificates: Certificates
) -> None:
    finished = await run_cli(
        settings,
        "migrate",
        database_url=through_proxy(settings.require_database_url(), tls_proxy.port),
        database_sslmode="verify-full",
        database_sslrootcert=certificates.ca_file,
        entities_dir=settings.entities_dir,
    )

    assert finished.code == 0, finished.err
    assert "up to date" in finished.out
    assert tls_proxy.tls_sessions >= 1
