"""Find (or start) PostgreSQL and Kafka for the test-suite.

Order of preference, for each service:

1. an explicit server from the environment
   (``BATCHLINE_TEST_DATABASE_URL`` / ``BATCHLINE_TEST_KAFKA_BOOTSTRAP_SERVERS``);
2. a testcontainers container, if a Docker engine answers a ping
   (set ``BATCHLINE_TEST_DOCKER=0`` to skip the probe);
3. the embedded services from :mod:`batchline.cli.embedded` (pgserver / Tansu).

PostgreSQL: whatever the server, each test session gets its own freshly created
database (``batchline_test_<pid>_<random>``) that is dropped at the end, so
parallel sessions (xdist workers, CI jobs sharing a server) don't collide.

Kafka: a server from the environment is shared, so tests should use unique topic
and group names. Note Tansu auto-creates any topic a client asks metadata for,
with 4 partitions: create topics (``ensure_topics``) before producing/consuming.

testcontainers and docker are imported lazily: the suite runs without them.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

from batchline.cli.embedded import (
    EmbeddedKafka,
    EmbeddedPostgres,
    run_blocking,
)
from sql.databases import drop_database, ensure_database

log = logging.getLogger(__name__)

ENV_DATABASE_URL = "BATCHLINE_TEST_DATABASE_URL"
ENV_KAFKA_BOOTSTRAP = "BATCHLINE_TEST_KAFKA_BOOTSTRAP_SERVERS"
ENV_DOCKER = "BATCHLINE_TEST_DOCKER"

POSTGRES_IMAGE = "postgres:16-alpine"
KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"


def docker_available() -> bool:
    """True if a Docker engine answers a ping (and docker-py is installed)."""
    if os.environ.get(ENV_DOCKER, "").strip().lower() in {"0", "false", "no", "off"}:
        return False
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False
    # A failed probe can leave a half-open socket behind; finalize it here, where its
    # ResourceWarning is ignored, not later inside a test (filterwarnings = error).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            return _ping_docker()
        finally:
            gc.collect()


def _ping_docker() -> bool:
    try:
        import docker  # type: ignore[import-untyped,unused-ignore]

        client = docker.from_env(timeout=5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - DockerException, ImportError, ...
        return False


# --------------------------------------------------------------------------- PostgreSQL


@contextlib.contextmanager
def postgres_server(tmp_dir: Path) -> Iterator[str]:
    """Yield an admin URL (``postgresql://...``) of a server we may create DBs on."""
    env_url = os.environ.get(ENV_DATABASE_URL)
    if env_url:
        log.info("postgres from $%s", ENV_DATABASE_URL)
        yield env_url
        return
    if docker_available():
        try:
            from testcontainers.community.postgres import PostgresContainer
        except ImportError:  # testcontainers < 4.14 layout
            from testcontainers.postgres import PostgresContainer  # type: ignore[no-redef,import-not-found,unused-ignore]

        log.info("postgres from testcontainers (%s)", POSTGRES_IMAGE)
        with PostgresContainer(POSTGRES_IMAGE, driver=None) as container:
            yield str(container.get_connection_url(driver=None))
        return
    log.info("postgres embedded (pgserver) under %s", tmp_dir)
    with EmbeddedPostgres(tmp_dir, database=None, delete_on_stop=True) as server:
        yield server.admin_url


@contextlib.contextmanager
def session_database(admin_url: str) -> Iterator[str]:
    """Create a uniquely named database on *admin_url*'s server; drop it after."""
    name = f"batchline_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    url = run_blocking(ensure_database(admin_url, name))
    try:
        yield url
    finally:
        try:
            run_blocking(drop_database(admin_url, name))
        except Exception:  # never mask the test result
            log.warning("could not drop test database %s", name, exc_info=True)


@contextlib.contextmanager
def test_database_url(tmp_dir: Path) -> Iterator[str]:
    """Server discovery + a fresh per-session database: yields its URL."""
    with postgres_server(tmp_dir) as admin_url, session_database(admin_url) as url:
        yield url


# --------------------------------------------------------------------------- Kafka


def kafka_is_embedded() -> bool:
    """Whether kafka_bootstrap_servers() falls through to the embedded broker."""
    return not os.environ.get(ENV_KAFKA_BOOTSTRAP) and not docker_available()


@contextlib.contextmanager
def kafka_bootstrap_servers(tmp_dir: Path) -> Iterator[str]:
    """Yield ``host:port`` of a Kafka-compatible broker."""
    env_servers = os.environ.get(ENV_KAFKA_BOOTSTRAP)
    if env_servers:
        log.info("kafka from $%s", ENV_KAFKA_BOOTSTRAP)
        yield env_servers
        return
    if docker_available():
        try:
            from testcontainers.community.kafka import KafkaContainer
        except ImportError:  # testcontainers < 4.14 layout
            from testcontainers.kafka import KafkaContainer  # type: ignore[no-redef,import-not-found,unused-ignore]

        log.info("kafka from testcontainers (%s)", KAFKA_IMAGE)
        with KafkaContainer(KAFKA_IMAGE) as container:
            yield str(container.get_bootstrap_server())
        return
    log.info("kafka embedded (tansu) under %s", tmp_dir)
    with EmbeddedKafka(tmp_dir) as broker:
        yield broker.bootstrap_servers
