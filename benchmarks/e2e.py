"""End-to-end benchmark: batchline against a plain COPY of the same records.

    .venv/bin/python -m benchmarks.e2e --help     # the venv that ./run creates

Starts (or uses, via BATCHLINE_DATABASE_URL / BATCHLINE_KAFKA_BOOTSTRAP_SERVERS) PostgreSQL
and Kafka, runs `batchline api` and `batchline worker` as separate processes, and measures:

1. COPY of N activity records into a table with the same indexes and constraints;
2. N records POSTed in batches of B by C concurrent clients, until every batch reads back
   `completed` through GET;
3. the same N records as chunk envelopes from a plain Kafka producer;
4. latency of 2-record POSTs at a light fixed rate (p50 / p95 / p99);
5. peak RSS of the API and worker processes;
6. for phases 1-3, the CPU each process group spent per record (benchmarks.cpu), beside the
   most the host may spend per record to run at half of COPY's rate.

Prints a table and writes every figure, the machine and the settings to a JSON file;
``--plot FILE.svg`` also draws them (benchmarks.plot).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
from confluent_kafka import Producer

from batchline.cli.embedded import free_port
from batchline.cli.runtime import apply_migrations, create_topics, embedded_services
from batchline.settings import Settings
from benchmarks import plot
from benchmarks.cpu import (
    CpuMeter,
    Group,
    listening_pid,
    parent_pid,
    per_record_us,
    process_name,
)
from streams import topics


def activity(run: str, n: int) -> dict[str, Any]:
    return {
        "coordinator_id": f"c-{run}-{n // 1000}",
        "mentor_id": f"m-{n}",
        "activity_type": "bench",
        "activity_date": "2026-03-28",
        "duration_minutes": 1 + n % 1440,
    }


def machine() -> dict[str, Any]:
    meminfo = Path("/proc/meminfo").read_text().split()
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(int(meminfo[1]) / 1024 / 1024, 1),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def progress(phase: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {phase}", file=sys.stderr, flush=True)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


async def copy_baseline(url: str, records: int, meter: CpuMeter) -> tuple[float, dict[str, float]]:
    """COPY's records/second, and the CPU seconds it took, by process group."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DROP TABLE IF EXISTS activity_copy_bench")
        await conn.execute("CREATE TABLE activity_copy_bench (LIKE activity INCLUDING ALL)")
        run = uuid.uuid4().hex[:6]
        rows = [
            (
                a["coordinator_id"],
                a["mentor_id"],
                a["activity_type"],
                dt.date.fromisoformat(a["activity_date"]),
                a["duration_minutes"],
            )
            for a in (activity(run, n) for n in range(records))
        ]
        before = meter.reading()
        started = time.perf_counter()
        await conn.copy_records_to_table(
            "activity_copy_bench",
            records=rows,
            columns=[
                "coordinator_id",
                "mentor_id",
                "activity_type",
                "activity_date",
                "duration_minutes",
            ],
        )
        elapsed = time.perf_counter() - started
        spent = meter.since(before, meter.reading())
        await conn.execute("DROP TABLE activity_copy_bench")
        return records / elapsed, spent
    finally:
        await conn.close()


async def wait_completed(http: aiohttp.ClientSession, batch_ids: list[str]) -> None:
    # Batches finish roughly in the order they were sent, so asking about the oldest
    # unfinished one keeps the reads few; asking about every batch each round would load
    # the API and PostgreSQL with full result pages and slow the pipeline being measured.
    pending = list(reversed(batch_ids))
    while pending:
        async with http.get(f"/api/v1/batch-inserts/{pending[-1]}") as response:
            body = await response.json() if response.status == 200 else {}
        if body.get("status") == "completed":
            pending.pop()
        else:
            await asyncio.sleep(0.02)


async def rest_throughput(url: str, records: int, batch: int, clients: int) -> float:
    run = uuid.uuid4().hex[:6]
    starts = list(range(0, records, batch))
    queue: asyncio.Queue[int] = asyncio.Queue()
    for start in starts:
        queue.put_nowait(start)
    batch_ids: list[str] = []
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(base_url=url, timeout=timeout) as http:

        async def client() -> None:
            while not queue.empty():
                start = queue.get_nowait()
                body = orjson.dumps(
                    {
                        "activities": [
                            activity(run, n) for n in range(start, min(start + batch, records))
                        ]
                    }
                )
                async with http.post(
                    "/api/v1/batch-inserts", data=body, headers={"Content-Type": "application/json"}
                ) as response:
                    if response.status not in (201, 202):
                        raise RuntimeError(await response.text())
                    if response.status == 202:  # 201 already read back as completed
                        batch_ids.append((await response.json())["id"])

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        await wait_completed(http, batch_ids)
        return records / (time.perf_counter() - started)


async def kafka_throughput(
    url: str, bootstrap: str, records: int, per_batch: int, chunk: int
) -> float:
    run = uuid.uuid4().hex[:6]
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True, "acks": "all"}
    )
    batch_ids = []
    started = time.perf_counter()
    for start in range(0, records, per_batch):
        batch_id = f"bench-{run}-{start}"
        batch_ids.append(batch_id)
        size = min(per_batch, records - start)
        for first in range(0, size, chunk):
            envelope = {
                "entity": "activity",
                "batch_id": batch_id,
                "record_count": size,
                "first_index": first,
                "records": [
                    activity(run, start + n) for n in range(first, min(first + chunk, size))
                ],
            }
            producer.produce(topics.INGEST, orjson.dumps(envelope), key=batch_id.encode())
            producer.poll(0)
    producer.flush(60)
    producer.close()
    async with aiohttp.ClientSession(base_url=url) as http:
        await wait_completed(http, batch_ids)
    return records / (time.perf_counter() - started)


async def latency(url: str, requests: int, rate: float) -> dict[str, float]:
    run = uuid.uuid4().hex[:6]
    samples: list[float] = []
    async with aiohttp.ClientSession(base_url=url) as http:
        for i in range(requests):
            body = {"activities": [activity(run, 2 * i), activity(run, 2 * i + 1)]}
            started = time.perf_counter()
            async with http.post("/api/v1/batch-inserts", json=body) as response:
                await response.read()
                if response.status != 201:
                    raise RuntimeError(f"latency POST answered {response.status}")
            samples.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(max(0.0, 1 / rate - samples[-1] / 1000))
    ordered = sorted(samples)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1)

    return {
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "mean_ms": round(statistics.fmean(samples), 1),
    }


@contextlib.asynccontextmanager
async def processes(settings: Settings, workers: int) -> AsyncIterator[dict[str, int]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHLINE_")}
    env |= {
        f"BATCHLINE_{k.upper()}": str(v) for k, v in settings.model_dump().items() if v is not None
    }
    started = [
        await asyncio.create_subprocess_exec(sys.executable, "-m", "batchline.cli", "api", env=env)
    ]
    started += [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "batchline.cli", "worker", env=env
        )
        for _ in range(workers)
    ]
    try:
        yield {"api": started[0].pid, **{f"worker{i}": p.pid for i, p in enumerate(started[1:], 1)}}
    finally:
        for process in started:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        await asyncio.gather(*(p.wait() for p in started))


async def service_groups(database_url: str, bootstrap: str) -> dict[str, Group]:
    """PostgreSQL (postmaster and backends) and the broker, where they run on this host."""
    groups = {}
    conn = await asyncpg.connect(database_url)
    try:
        # Asked while the backend lives: once it exits, its parent can no longer be read.
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        postmaster = parent_pid(backend)
        # A server elsewhere (another host, a container) numbers its processes apart from
        # ours; the same number here would be some other process.
        if process_name(backend) != "postgres":
            postmaster = None
    finally:
        await conn.close()
    if postmaster is not None:
        groups["postgres"] = Group((postmaster,), with_children=True)
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    broker = listening_pid(int(port)) if host in ("127.0.0.1", "localhost", "::1") else None
    if broker is not None:
        groups["broker"] = Group((broker,))
    return groups


async def wait_ready(url: str) -> None:
    async with aiohttp.ClientSession(base_url=url) as http:
        for _ in range(600):
            with contextlib.suppress(aiohttp.ClientConnectionError):
                async with http.get("/ready") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError("API did not become ready")


async def main(args: argparse.Namespace) -> dict[str, Any]:
    base = Settings()
    data_dir = Path(args.data_dir or f"/tmp/batchline-bench-{uuid.uuid4().hex[:6]}")
    base = base.model_copy(
        update={
            "data_dir": data_dir,
            "http_port": free_port(),
            "sync_wait_seconds": 600,
            "max_records_per_request": max(args.batch, 2),
            "kafka_session_timeout_ms": 6000,
            "consumer_group": f"bench-{uuid.uuid4().hex[:6]}",
            "log_level": "warning",
        }
    )
    async with embedded_services(base) as settings:
        await apply_migrations(settings)
        await create_topics(settings)
        url = f"http://{settings.http_host}:{settings.http_port}"
        results: dict[str, Any] = {"machine": machine(), "date": dt.date.today().isoformat()}
        results["settings"] = {
            "records": args.records,
            "batch": args.batch,
            "clients": args.clients,
            "workers": args.workers,
            "chunk_size": settings.chunk_size,
            "database": "configured" if base.database_url else "embedded pgserver",
            "broker": "configured" if base.kafka_bootstrap_servers else "embedded Tansu",
        }
        services = await service_groups(
            settings.require_database_url(), settings.require_bootstrap_servers()
        )
        copy_rate, copy_cpu = await copy_baseline(
            settings.require_database_url(), args.records, CpuMeter(services)
        )
        results["copy_records_per_s"] = round(copy_rate)
        cpu = {"copy": per_record_us(copy_cpu, args.records)}
        results["cpu_us_per_record"] = cpu
        # What the whole host may spend on a record at half of COPY's rate.
        results["budget_us_per_record_at_half_copy"] = round(
            (os.cpu_count() or 1) * 1e6 / (copy_rate / 2), 1
        )
        async with processes(settings, args.workers) as pids:
            meter = CpuMeter(
                services
                | {
                    "api": Group((pids["api"],)),
                    "workers": Group(tuple(p for n, p in pids.items() if n != "api")),
                }
            )
            await wait_ready(url)
            await latency(url, 20, 50)  # warm-up: consumer groups joined, pools filled
            progress("REST phase")
            before = meter.reading()
            rest = await rest_throughput(url, args.records, args.batch, args.clients)
            cpu["rest"] = per_record_us(meter.since(before, meter.reading()), args.records)
            results["rest_records_per_s"] = round(rest)
            results["rest_vs_copy"] = round(rest / results["copy_records_per_s"], 3)
            progress("Kafka producer phase")
            before = meter.reading()
            kafka = await kafka_throughput(
                url,
                settings.require_bootstrap_servers(),
                args.records,
                args.batch,
                settings.chunk_size,
            )
            cpu["kafka"] = per_record_us(meter.since(before, meter.reading()), args.records)
            results["kafka_records_per_s"] = round(kafka)
            results["kafka_vs_copy"] = round(kafka / results["copy_records_per_s"], 3)
            progress("latency phase")
            results["latency_2_records"] = await latency(
                url, args.latency_requests, args.latency_rate
            )
            results["peak_rss_mib"] = {name: peak_rss_mib(pid) for name, pid in pids.items()}
        return results


def print_table(results: dict[str, Any]) -> None:
    rows = [
        ("COPY baseline", f"{results['copy_records_per_s']:,} records/s", ""),
        (
            "REST end to end",
            f"{results['rest_records_per_s']:,} records/s",
            f"{results['rest_vs_copy']:.2f} x COPY",
        ),
        (
            "Kafka producer end to end",
            f"{results['kafka_records_per_s']:,} records/s",
            f"{results['kafka_vs_copy']:.2f} x COPY",
        ),
    ]
    lat = results["latency_2_records"]
    rows.append(
        (
            "2-record POST latency",
            f"p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms",
            f"p99 {lat['p99_ms']} ms",
        )
    )
    rows.append(
        ("peak RSS (MiB)", ", ".join(f"{k} {v}" for k, v in results["peak_rss_mib"].items()), "")
    )
    width = max(len(r[0]) for r in rows)
    for name, value, extra in rows:
        print(f"{name:<{width}}  {value:<34} {extra}")
    print_cpu(results["cpu_us_per_record"], results["budget_us_per_record_at_half_copy"])
    m = results["machine"]
    print(
        f"machine: {m['cores']} cores, {m['memory_gib']} GiB, {m['cpu']}, "
        f"Python {m['python']}; settings: {results['settings']}"
    )


def print_cpu(cpu: dict[str, dict[str, float]], budget: float) -> None:
    columns = ["postgres", "broker", "api", "workers", "benchmark", "other", "total"]
    print("CPU per record (us)  " + "".join(f"{c:>10}" for c in columns) + "  host busy")
    names = {"copy": "COPY", "rest": "REST", "kafka": "Kafka producer"}
    for phase, spent in cpu.items():
        cells = "".join(f"{spent[c]:>10.1f}" if c in spent else f"{'-':>10}" for c in columns)
        print(f"{names[phase]:<21}{cells}  {spent['host_busy_pct']:>8.0f}%")
    print(f"at 0.5 x COPY the host may spend {budget:.1f} us of CPU per record, all included")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--latency-requests", type=int, default=500)
    parser.add_argument("--latency-rate", type=float, default=20.0, help="POSTs per second")
    parser.add_argument("--data-dir", help="embedded services' folder (default: a temp dir)")
    parser.add_argument("--output", default="benchmarks/results/e2e.json")
    parser.add_argument("--plot", help="also draw the figures as an SVG file here")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    figures = asyncio.run(main(arguments))
    print_table(figures)
    output = Path(arguments.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2))
    print(f"written: {output}")
    if arguments.plot:
        Path(arguments.plot).write_text(plot.render(figures))
        print(f"written: {arguments.plot}")
