"""TLS and SASL to Kafka: one description, mapped onto every client batchline runs.

librdkafka (the confluent-kafka producers, consumers and admin client) takes file paths
and string keys; Faust/aiokafka takes an ``ssl.SSLContext`` and Faust credentials. Both
mappings are read from the same :class:`KafkaSecurity`, so the two client families cannot
drift apart.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import SecretStr


class SecurityProtocol(StrEnum):
    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"

    @property
    def uses_tls(self) -> bool:
        return self in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL)

    @property
    def uses_sasl(self) -> bool:
        return self in (SecurityProtocol.SASL_PLAINTEXT, SecurityProtocol.SASL_SSL)


class SaslMechanism(StrEnum):
    PLAIN = "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"


class KafkaSecurityError(ValueError):
    """The TLS/SASL settings contradict each other."""


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: SecurityProtocol = SecurityProtocol.PLAINTEXT
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    key_password: SecretStr | None = None
    sasl_mechanism: SaslMechanism = SaslMechanism.PLAIN
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None

    def __post_init__(self) -> None:
        if self.protocol.uses_sasl and not (self.sasl_username and self.sasl_password):
            raise KafkaSecurityError(
                f"security protocol {self.protocol} needs BATCHLINE_KAFKA_SASL_USERNAME"
                " and BATCHLINE_KAFKA_SASL_PASSWORD"
            )
        tls_files = (self.ca_file, self.cert_file, self.key_file)
        if not self.protocol.uses_tls and any(tls_files):
            raise KafkaSecurityError(
                f"TLS files are set but the security protocol is {self.protocol}:"
                " set BATCHLINE_KAFKA_SECURITY_PROTOCOL to SSL or SASL_SSL"
            )
        if (self.cert_file is None) != (self.key_file is None):
            raise KafkaSecurityError(
                "a client certificate needs its key and a key its certificate"
                " (BATCHLINE_KAFKA_SSL_CERT_FILE and BATCHLINE_KAFKA_SSL_KEY_FILE)"
            )

    def librdkafka(self) -> dict[str, Any]:
        """Keys for confluent-kafka's Producer, Consumer and AdminClient."""
        config: dict[str, Any] = {"security.protocol": self.protocol.value}
        if self.protocol.uses_tls:
            if self.ca_file is not None:
                config["ssl.ca.location"] = str(self.ca_file)
            if self.cert_file is not None and self.key_file is not None:
                config["ssl.certificate.location"] = str(self.cert_file)
                config["ssl.key.location"] = str(self.key_file)
            if self.key_password is not None:
                config["ssl.key.password"] = self.key_password.get_secret_value()
        if self.protocol.uses_sasl:
            assert self.sasl_username is not None
            assert self.sasl_password is not None
            config["sasl.mechanism"] = self.sasl_mechanism.value
            config["sasl.username"] = self.sasl_username
            config["sasl.password"] = self.sasl_password.get_secret_value()
        return config

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context aiokafka uses; None without TLS. Verifies the broker's
        certificate and host name against ``ca_file`` (else the system's trust store)."""
        if not self.protocol.uses_tls:
            return None
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_file) if self.ca_file else None
        )
        if self.cert_file is not None and self.key_file is not None:
            context.load_cert_chain(
                self.cert_file,
                self.key_file,
                self.key_password.get_secret_value() if self.key_password else None,
            )
        return context

    def faust_credentials(self) -> Any:
        """Faust's ``broker_credentials``: None for plaintext."""
        from faust.auth import SASLCredentials, SSLCredentials

        context = self.ssl_context()
        if self.protocol.uses_sasl:
            assert self.sasl_password is not None
            credentials = SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password.get_secret_value(),
                ssl_context=context,
                mechanism=self.sasl_mechanism.value,
            )
            return credentials
        if context is not None:
            return SSLCredentials(context)
        return None
