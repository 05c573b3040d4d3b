"""TLS and SASL settings reach every Kafka client the same way: librdkafka keys for the
confluent-kafka producer, consumer and admin client, aiokafka arguments through Faust."""

from __future__ import annotations

import ssl
from typing import Any

import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import ValidationError

from batchline.kafka_security import SaslMechanism, SecurityProtocol
from batchline.settings import Settings
from tests.certificates import Certificates, make_certificates

SECRET = "s3cret-sasl-password"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


def _settings(protocol: SecurityProtocol, certs: Certificates, **more: Any) -> Settings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": "broker:9093",
        "kafka_security_protocol": protocol,
    }
    if protocol.uses_tls:
        values["kafka_ssl_ca_file"] = certs.ca_file
    if protocol.uses_sasl:
        values |= {"kafka_sasl_username": "batchline", "kafka_sasl_password": SECRET}
    return Settings(**(values | more))


def _librdkafka_configs(settings: Settings) -> list[dict[str, Any]]:
    return [
        settings.librdkafka_producer_config(),
        settings.librdkafka_consumer_config("group"),
        settings.librdkafka_admin_config(),
    ]


@pytest.mark.parametrize("mechanism", list(SaslMechanism))
@pytest.mark.parametrize("protocol", list(SecurityProtocol))
def test_every_client_gets_the_same_protocol_and_mechanism(
    protocol: SecurityProtocol, mechanism: SaslMechanism, certificates: Certificates
) -> None:
    settings = _settings(protocol, certificates, kafka_sasl_mechanism=mechanism)

    for config in _librdkafka_configs(settings):
        assert config["bootstrap.servers"] == "broker:9093"
        assert config["security.protocol"] == protocol.value
        if protocol.uses_tls:
            assert config["ssl.ca.location"] == str(certificates.ca_file)
        else:
            assert not any(key.startswith("ssl.") for key in config)
        if protocol.uses_sasl:
            assert config["sasl.mechanism"] == mechanism.value
            assert (config["sasl.username"], config["sasl.password"]) == ("batchline", SECRET)
        else:
            assert not any(key.startswith("sasl.") for key in config)

    aiokafka = credentials_to_aiokafka_auth(settings.kafka_security().faust_credentials())
    assert aiokafka["security_protocol"] == protocol.value
    if protocol.uses_tls:
        context = aiokafka["ssl_context"]
        assert isinstance(context, ssl.SSLContext)
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname
    else:
        assert aiokafka.get("ssl_context") is None
    if protocol.uses_sasl:
        assert aiokafka["sasl_mechanism"] == mechanism.value
        assert aiokafka["sasl_plain_username"] == "batchline"
        assert aiokafka["sasl_plain_password"] == SECRET
    else:
        assert "sasl_mechanism" not in aiokafka


@pytest.mark.parametrize("protocol", [SecurityProtocol.SSL, SecurityProtocol.SASL_SSL])
def test_a_client_certificate_reaches_both_client_families(
    protocol: SecurityProtocol, certificates: Certificates
) -> None:
    settings = _settings(
        protocol,
        certificates,
        kafka_ssl_cert_file=certificates.client_cert,
        kafka_ssl_key_file=certificates.client_key,
    )

    for config in _librdkafka_configs(settings):
        assert config["ssl.certificate.location"] == str(certificates.client_cert)
        assert config["ssl.key.location"] == str(certificates.client_key)
    context = settings.kafka_security().ssl_context()
    assert context is not None  # load_cert_chain accepted the pair


def test_plaintext_is_the_default_and_adds_nothing_but_the_protocol() -> None:
    settings = Settings(kafka_bootstrap_servers="k:9092")

    assert settings.librdkafka_producer_config()["security.protocol"] == "PLAINTEXT"
    assert settings.kafka_security().faust_credentials() is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "BATCHLINE_KAFKA_SASL_USERNAME"),
        (
            {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": "u"},
            "BATCHLINE_KAFKA_SASL_PASSWORD",
        ),
        ({"kafka_ssl_ca_file": "/ca.pem"}, "set BATCHLINE_KAFKA_SECURITY_PROTOCOL to SSL"),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_cert_file": "/c.pem"},
            "needs its key",
        ),
        ({"kafka_security_protocol": "TLS"}, "kafka_security_protocol"),
        ({"kafka_sasl_mechanism": "GSSAPI"}, "kafka_sasl_mechanism"),
    ],
)
def test_contradictory_settings_are_refused_when_read(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**values)


def test_the_sasl_password_is_not_in_the_settings_repr() -> None:
    settings = Settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_username="batchline",
        kafka_sasl_password=SECRET,
    )

    assert SECRET not in repr(settings)
    assert SECRET not in str(settings.model_dump())


@pytest.mark.parametrize("mechanism", list(SaslMechanism))
@pytest.mark.parametrize("protocol", list(SecurityProtocol))
async def test_the_clients_themselves_accept_every_combination(
    protocol: SecurityProtocol, mechanism: SaslMechanism, certificates: Certificates
) -> None:
    # The clients check their configuration when built (unknown keys, a mechanism this
    # build of librdkafka lacks, aiokafka's protocol/context pairing); nothing connects.
    from aiokafka import AIOKafkaProducer
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient

    settings = _settings(
        protocol,
        certificates,
        kafka_sasl_mechanism=mechanism,
        kafka_bootstrap_servers="127.0.0.1:9",
    )
    Producer(settings.librdkafka_producer_config()).flush(0)
    Consumer(settings.librdkafka_consumer_config("group")).close()
    AdminClient(settings.librdkafka_admin_config())
    auth = credentials_to_aiokafka_auth(settings.kafka_security().faust_credentials())
    await AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", **auth).stop()
