"""The one settings object. Every tunable is a ``BATCHLINE_`` environment variable."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from batchline.kafka_security import KafkaSecurity, SaslMechanism, SecurityProtocol
from batchline.tenants import Tenants
from batchline.tokens import TokenTable, parse_tokens

# The largest message batchline's producers send; a chunk over it is refused up front.
KAFKA_MESSAGE_MAX_BYTES = 16 * 1024 * 1024


class Settings(BaseSettings):
    """Frozen configuration shared by the API, the workers and the CLI."""

    # Errors never echo the input: it may hold a password or a token pasted by mistake.
    model_config = SettingsConfigDict(
        env_prefix="BATCHLINE_", frozen=True, extra="ignore", hide_input_in_errors=True
    )

    # Services. Left unset, `batchline dev` starts embedded ones.
    database_url: str | None = Field(
        default=None, description="PostgreSQL URL; unset under `dev` starts embedded pgserver."
    )
    kafka_bootstrap_servers: str | None = Field(
        default=None, description="Kafka bootstrap servers; unset under `dev` starts Tansu."
    )
    database_password: SecretStr | None = Field(
        default=None,
        description="PostgreSQL password, kept out of the URL (and out of anything that shows"
        " it); overrides one in the URL.",
    )
    database_sslmode: str | None = Field(
        default=None,
        pattern="^(disable|allow|prefer|require|verify-ca|verify-full)$",
        description="libpq sslmode for every connection; unset: the URL's, else `prefer`.",
    )
    database_sslrootcert: Path | None = Field(
        default=None,
        description="PEM CA bundle that signed the server's certificate (verify-ca, verify-full).",
    )
    database_sslcert: Path | None = Field(
        default=None, description="PEM client certificate, for servers that require one."
    )
    database_sslkey: Path | None = Field(
        default=None, description="PEM private key of the client certificate."
    )
    data_dir: Path = Field(
        default=Path(".batchline"), description="Where embedded services keep data and logs."
    )

    # HTTP front door.
    http_host: str = Field(default="127.0.0.1", description="API listen address.")
    http_port: int = Field(default=8080, description="API listen port.")
    max_records_per_request: int = Field(
        default=100_000, ge=1, description="Records in one POST; more answers 413."
    )
    max_body_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024, description="Request body bytes; more answers 413."
    )
    sync_wait_seconds: float = Field(
        default=10.0, ge=0, description="How long a POST/PUT waits for completion before 202."
    )
    page_limit_max: int = Field(default=100, ge=1, description="Largest `limit` for list calls.")
    http_header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How long a connection may take to send a request's headers; then closed.",
    )
    http_body_timeout_seconds: float = Field(
        default=60.0, gt=0, description="How long reading a request body may take; then 408."
    )
    http_max_connections: int = Field(
        default=1000,
        ge=1,
        description="Connections one API process serves at once; more are answered 503.",
    )
    results_limit_max: int = Field(
        default=10_000,
        ge=1,
        description="Largest `results_limit` of a batch's results (and the default): a page"
        " of results, never a whole large batch, is held in memory.",
    )

    # Authentication (off while no token is configured).
    api_tokens: SecretStr = Field(
        default=SecretStr(""),
        description="Bearer tokens that may call the API: comma-separated"
        " NAME:ROLE[+ROLE]:SHA256HEX[:TENANT[+TENANT]] entries (`batchline token create`);"
        " empty: no authentication.",
    )
    metrics_public: bool = Field(
        default=True,
        description="With tokens configured, /metrics stays open (for a scraper); false: it"
        " needs an operator token.",
    )
    openapi_public: bool = Field(
        default=True,
        description="With tokens configured, /openapi.json stays open; false: it needs a token"
        " of any role.",
    )

    # Pipeline.
    chunk_size: int = Field(default=1000, ge=1, description="Records per Kafka chunk envelope.")
    ingest_partitions: int = Field(default=4, ge=1, description="Partitions of batchline.ingest.")
    outcome_partitions: int = Field(default=4, ge=1, description="Partitions of outcomes.")
    topic_replication_factor: int = Field(
        default=1,
        ge=1,
        description="Replication factor of the topics batchline creates; 3 on a real cluster.",
    )
    consumer_group: str = Field(
        default="batchline",
        description="Faust application id (the inserter's consumer group); the projector's"
        " group is this with `.projector` appended.",
    )
    inserter_lanes: int = Field(
        default=4,
        ge=1,
        description="Batches a worker writes concurrently (one batch's chunks stay in order).",
    )
    max_processing_attempts: int = Field(
        default=5, ge=1, description="Attempts for a failing chunk before it is dead-lettered."
    )
    retry_backoff_seconds: float = Field(
        default=0.5, gt=0, description="First backoff between attempts; doubles, capped at 30 s."
    )
    stale_batch_seconds: float = Field(
        default=300.0,
        gt=0,
        description="A processing batch with no progress for this long is marked failed.",
    )
    max_records_per_batch: int = Field(
        default=1_000_000,
        ge=1,
        le=2**31 - 1,
        description="Largest `record_count` of a batch produced straight to Kafka; a chunk"
        " stating more is dead-lettered at `validate`.",
    )
    stalled_writer_seconds: float = Field(
        default=30.0,
        gt=0,
        description="A worker transaction left idle this long (its process stopped or hung)"
        " is ended by PostgreSQL, so it cannot hold a batch's chunks for ever.",
    )
    db_pool_max_size: int = Field(default=10, ge=1, description="asyncpg pool size per process.")
    worker_metrics_port: int | None = Field(
        default=None, description="Where a standalone worker serves /metrics; unset: none."
    )

    # Generic entities (front door 3).
    entities_dir: Path = Field(
        default=Path("entities"), description="Folder of YAML entity schemas for /data/{entity}."
    )
    entity_list_max_bytes: int = Field(
        default=1_000_000,
        ge=1024,
        description="Largest POST /data body: a list is one transaction and one Kafka message,"
        " so keep it under the broker's message.max.bytes.",
    )

    # Kafka client tuning (applied to both librdkafka and Faust/aiokafka).
    kafka_session_timeout_ms: int = Field(
        default=10_000, ge=1000, description="Consumer-group session timeout."
    )
    kafka_linger_ms: int = Field(default=2, ge=0, description="Producer linger.ms.")
    kafka_fetch_max_wait_ms: int = Field(
        default=10,
        ge=1,
        description="Longest a consumer fetch waits for data; bounds per-hop latency.",
    )
    kafka_compression: str = Field(
        default="none",
        pattern="^(none|gzip|lz4|zstd|snappy)$",
        description="Compression of what batchline produces; workers read every codec.",
    )

    # Kafka TLS and SASL (every client: confluent-kafka producers, consumers, admin; Faust).
    kafka_security_protocol: SecurityProtocol = Field(
        default=SecurityProtocol.PLAINTEXT,
        description="Kafka security.protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
    )
    kafka_ssl_ca_file: Path | None = Field(
        default=None,
        description="PEM file of the CA(s) that signed the brokers' certificates;"
        " unset: the system's trust store.",
    )
    kafka_ssl_cert_file: Path | None = Field(
        default=None, description="PEM client certificate, for brokers that require mutual TLS."
    )
    kafka_ssl_key_file: Path | None = Field(
        default=None, description="PEM private key of the client certificate."
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        default=None, description="Password of an encrypted client key."
    )
    kafka_sasl_mechanism: SaslMechanism = Field(
        default=SaslMechanism.PLAIN,
        description="SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.",
    )
    kafka_sasl_username: str | None = Field(default=None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(default=None, description="SASL password.")

    # Dead letters.
    dlq_max_replays: int = Field(
        default=3,
        ge=1,
        description="Replays of one message; one that failed after this many is parked.",
    )

    log_level: str = Field(default="info", description="Log level.")
    log_format: str = Field(default="text", pattern="^(text|json)$", description="text or json.")
    log_repeat_seconds: float = Field(
        default=10.0,
        ge=0,
        description="A message repeated within this many seconds is logged once, then"
        " counted; 0 logs every one.",
    )

    # Domain events.
    env: str = Field(default="folio", description="FOLIO environment name in event topics.")
    default_tenant: str = Field(default="diku", description="Tenant when no X-Okapi-Tenant.")
    tenants: str = Field(
        default="",
        description="The FOLIO tenants served, comma-separated; empty: any tenant id of"
        " letters, digits and '_'. Must include the default tenant.",
    )
    storage_tenant_prefix: str | None = Field(
        default=None,
        description="Confines each tenant's recordsFileName (and so its error files) to keys"
        " starting with this, `{tenant}` replaced by the tenant, e.g. `{tenant}/`; unset: any"
        " key.",
    )

    # Object storage and the instance bulk front door.
    storage_url: str | None = Field(
        default=None,
        description="file:///dir or s3://bucket/prefix; unset: the directory {data_dir}/storage.",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (MinIO); unset: AWS S3."
    )
    s3_access_key_id: str | None = Field(
        default=None, description="S3 access key; unset: the AWS default credential chain."
    )
    s3_secret_access_key: SecretStr | None = Field(default=None, description="S3 secret key.")
    s3_region: str = Field(default="us-east-1", description="S3 region.")
    s3_addressing_style: str = Field(
        default="auto",
        pattern="^(auto|path|virtual)$",
        description="Bucket addressing; MinIO usually wants `path`.",
    )
    bulk_wait_seconds: float = Field(
        default=300.0, gt=0, description="How long the bulk front door waits for its batch."
    )
    bulk_chunk_max_bytes: int = Field(
        default=768 * 1024,
        ge=1024,
        description="Record bytes per bulk chunk envelope (under the broker's message limit);"
        " a longer NDJSON line fails as a record.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        self.kafka_security()
        self.api_token_table()
        self.tenant_policy()
        return self

    def tenant_policy(self) -> Tenants:
        """Which tenants exist and where each may read and write in object storage."""
        return Tenants.configure(self.default_tenant, self.tenants, self.storage_tenant_prefix)

    def api_token_table(self) -> TokenTable:
        """The configured tokens; empty means authentication is off."""
        return TokenTable(parse_tokens(self.api_tokens.get_secret_value()))

    def require_database_url(self) -> str:
        """The URL every connection uses (pool, migrations, CLI), with the password and TLS
        settings merged in; what the URL itself says about TLS wins over the settings."""
        if not self.database_url:
            raise RuntimeError("BATCHLINE_DATABASE_URL is not set (use `batchline dev` to embed)")
        parts = urlsplit(self.database_url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        merged = {
            name: str(value)
            for name, value in (
                ("sslmode", self.database_sslmode),
                ("sslrootcert", self.database_sslrootcert),
                ("sslcert", self.database_sslcert),
                ("sslkey", self.database_sslkey),
            )
            if value is not None and name not in query
        }
        if not merged and self.database_password is None:
            return self.database_url
        netloc = parts.netloc
        if self.database_password is not None:
            hosts = netloc.rpartition("@")[2]
            user = quote(unquote(parts.username or ""), safe="")
            password = quote(self.database_password.get_secret_value(), safe="")
            netloc = f"{user}:{password}@{hosts}"
        url = f"{parts.scheme}://{netloc}{parts.path}"
        query_string = urlencode(query | merged, safe="/")
        return f"{url}?{query_string}" if query_string else url

    def require_bootstrap_servers(self) -> str:
        if not self.kafka_bootstrap_servers:
            raise RuntimeError(
                "BATCHLINE_KAFKA_BOOTSTRAP_SERVERS is not set (use `batchline dev` to embed)"
            )
        return self.kafka_bootstrap_servers

    def kafka_security(self) -> KafkaSecurity:
        """TLS and SASL for every Kafka client (raises on contradictory settings)."""
        return KafkaSecurity(
            protocol=self.kafka_security_protocol,
            ca_file=self.kafka_ssl_ca_file,
            cert_file=self.kafka_ssl_cert_file,
            key_file=self.kafka_ssl_key_file,
            key_password=self.kafka_ssl_key_password,
            sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username,
            sasl_password=self.kafka_sasl_password,
        )

    def librdkafka_admin_config(self) -> dict[str, Any]:
        """The one mapping from settings to librdkafka admin-client keys."""
        return {
            "bootstrap.servers": self.require_bootstrap_servers(),
            "log_level": 3,
            **self.kafka_security().librdkafka(),
        }

    def librdkafka_producer_config(self) -> dict[str, Any]:
        """The one mapping from settings to librdkafka producer keys."""
        return {
            "bootstrap.servers": self.require_bootstrap_servers(),
            **self.kafka_security().librdkafka(),
            "enable.idempotence": True,
            "acks": "all",
            # The Java client's partitioner (kafka-python and aiokafka use it too), not
            # librdkafka's CRC32 default: a key lands where other producers put it.
            "partitioner": "murmur2_random",
            "linger.ms": self.kafka_linger_ms,
            "compression.type": self.kafka_compression,
            "message.max.bytes": KAFKA_MESSAGE_MAX_BYTES,
            "queue.buffering.max.messages": 500_000,
        }

    def librdkafka_consumer_config(self, group_id: str) -> dict[str, Any]:
        """The one mapping from settings to librdkafka consumer keys."""
        return {
            "bootstrap.servers": self.require_bootstrap_servers(),
            **self.kafka_security().librdkafka(),
            "group.id": group_id,
            "session.timeout.ms": self.kafka_session_timeout_ms,
            "heartbeat.interval.ms": max(self.kafka_session_timeout_ms // 5, 100),
            "fetch.wait.max.ms": self.kafka_fetch_max_wait_ms,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }

    @property
    def projector_group(self) -> str:
        return f"{self.consumer_group}.projector"
