"""Session-wide services; discovery logic lives in tests/services.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import services


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a fresh PostgreSQL database for this test session."""
    with services.test_database_url(tmp_path_factory.mktemp("postgres")) as url:
        yield url


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a Kafka-compatible broker for this test session."""
    with services.kafka_bootstrap_servers(tmp_path_factory.mktemp("kafka")) as servers:
        yield servers
