"""The one settings object. Every tunable is a ``BATCHLINE_`` environment variable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# The largest message batchline's producers send; a chunk over it is refused up front.
KAFKA_MESSAGE_MAX_BYTES = 16 * 1024 * 1024


class Settings(BaseSettings):
    """Frozen configuration shared by the API, the workers and the CLI."""

    model_config = SettingsConfigDict(env_prefix="BATCHLINE_", frozen=True, extra="ignore")

    # Services. Left unset, `batchline dev` starts embedded ones.
    database_url: str | None = Field(
        default=None, description="PostgreSQL URL; unset under `dev` starts embedded pgserver."
    )
    kafka_bootstrap_servers: str | None = Field(
        default=None, description="Kafka bootstrap servers; unset under `dev` starts Tansu."
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

    def require_database_url(self) -> str:
        if not self.database_url:
            raise RuntimeError("BATCHLINE_DATABASE_URL is not set (use `batchline dev` to embed)")
        return self.database_url

    def require_bootstrap_servers(self) -> str:
        if not self.kafka_bootstrap_servers:
            raise RuntimeError(
                "BATCHLINE_KAFKA_BOOTSTRAP_SERVERS is not set (use `batchline dev` to embed)"
            )
        return self.kafka_bootstrap_servers

    def librdkafka_producer_config(self) -> dict[str, Any]:
        """The one mapping from settings to librdkafka producer keys."""
        return {
            "bootstrap.servers": self.require_bootstrap_servers(),
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
