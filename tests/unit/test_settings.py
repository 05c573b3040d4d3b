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
