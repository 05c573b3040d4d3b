"""One settings object; one mapping to librdkafka."""

from __future__ import annotations

import pytest

from batchline.settings import Settings


def test_settings_come_from_batchline_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BATCHLINE_KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("BATCHLINE_CHUNK_SIZE", "250")

    settings = Settings()

    assert settings.chunk_size == 250
    config = settings.librdkafka_producer_config()
    assert config["bootstrap.servers"] == "k1:9092,k2:9092"
    assert config["enable.idempotence"] is True
    assert config["acks"] == "all"


def test_missing_services_are_reported_by_name() -> None:
    settings = Settings(database_url=None, kafka_bootstrap_servers=None)
    with pytest.raises(RuntimeError, match="BATCHLINE_DATABASE_URL"):
        settings.require_database_url()
    with pytest.raises(RuntimeError, match="BATCHLINE_KAFKA_BOOTSTRAP_SERVERS"):
        settings.require_bootstrap_servers()


def test_database_tls_settings_and_password_join_the_url_it_does_not_already_set() -> None:
    settings = Settings(
        database_url="postgresql://app@db.internal:5432/batchline?sslmode=verify-full",
        database_sslmode="require",
        database_sslrootcert="/etc/ssl/pg-ca.pem",
        database_password="p@ss:w/rd",
    )

    url = settings.require_database_url()

    assert url == (
        "postgresql://app:p%40ss%3Aw%2Frd@db.internal:5432/batchline"
        "?sslmode=verify-full&sslrootcert=/etc/ssl/pg-ca.pem"
    )
    assert "p@ss" not in repr(settings)


def test_a_database_url_with_nothing_to_add_is_used_as_it_is() -> None:
    url = "postgresql:///batchline?host=/var/run/postgresql"
    assert Settings(database_url=url).require_database_url() == url
    assert (
        Settings(database_url=url, database_sslmode="disable").require_database_url()
        == url + "&sslmode=disable"
    )
