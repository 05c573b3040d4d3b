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


def test_tenants_and_storage_prefix_are_checked_when_read() -> None:
    tenants = Settings(
        tenants="diku, college_1", storage_tenant_prefix="tenants/{tenant}/"
    ).tenant_policy()

    assert tenants.refusal("college_1") is None
    assert tenants.refusal("college_2") == "is not a tenant of this service"
    assert tenants.refusal("../diku") == "must be letters, digits and '_'"
    assert tenants.key_prefix("college_1") == "tenants/college_1/"
    assert Settings().tenant_policy().refusal("anyone_at_all") is None
    assert Settings().tenant_policy().key_prefix("diku") is None
    for wrong, message in (
        ({"tenants": "college_1"}, "default tenant 'diku' is not among"),
        ({"tenants": "diku,bad-name"}, "tenant 'bad-name'"),
        ({"storage_tenant_prefix": "shared/"}, "must contain {tenant}"),
    ):
        with pytest.raises(ValueError, match=message):
            Settings(**wrong)
