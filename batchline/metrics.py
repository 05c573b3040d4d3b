"""Prometheus metrics. Each process owns one registry; nothing is module-global."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.records_accepted = Counter(
            "batchline_records_accepted",
            "Records accepted by a front door.",
            ["front_door"],
            registry=self.registry,
        )
        self.records_written = Counter(
            "batchline_records_written",
            "Records the inserter stored, by entity and status.",
            ["entity", "status"],
            registry=self.registry,
        )
        self.records_failed = Counter(
            "batchline_records_failed",
            "Records that failed, by entity and error code.",
            ["entity", "error"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "batchline_dead_letters",
            "Messages sent to the dead-letter topic, by stage.",
            ["stage"],
            registry=self.registry,
        )
        self.http_responses = Counter(
            "batchline_http_responses",
            "Answers of the API, by method and status code.",
            ["method", "status"],
            registry=self.registry,
        )
        self.batch_latency = Histogram(
            "batchline_batch_latency_seconds",
            "From POST to completion, for batches answered synchronously.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
