"""End-to-end benchmark: batchline against a plain COPY of the same records.

    .venv/bin/python -m benchmarks.e2e --help     # the venv that ./run creates

Measures two stacks, one after the other (``--stack`` picks one):

- ``dev``: ``batchline dev`` started as a user starts it, with its defaults (embedded
  services, the API and one worker per core), from a temporary data folder;
- ``separate``: PostgreSQL and Kafka started here (or used, via BATCHLINE_DATABASE_URL /
  BATCHLINE_KAFKA_BOOTSTRAP_SERVERS), `batchline api` and ``--workers`` `batchline worker`
  processes started apart, as in a deployment.

For each stack:

1. COPY of N activity records into a table with the same indexes and constraints;
2. N records POSTed in batches of B by C concurrent clients, until every batch reads back
   `completed` through GET;
3. the same N records as chunk envelopes from a plain Kafka producer;
4. latency of 2-record POSTs at a light fixed rate (p50 / p95 / p99);
5. peak RSS of the API and worker processes, and with ``--memory-every S`` their RSS
   sampled through every phase;
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
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
from confluent_kafka import Producer

from batchline.cli import devstate
from batchline.cli.embedded import free_port
from batchline.cli.runtime import apply_migrations, create_topics, embedded_services
from batchline.settings import Settings
from benchmarks import plot
from benchmarks.cpu import (
    CpuMeter,
    Group,
    children,
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


def produce_batch(
    producer: Producer,
    batch_id: str,
    size: int,
    record: Callable[[int], dict[str, Any]],
    chunk: int,
) -> None:
    """One batch as chunk envelopes, built a chunk at a time (a 1M-record batch fits)."""
    for first in range(0, size, chunk):
        envelope = {
            "entity": "activity",
            "batch_id": batch_id,
            "record_count": size,
            "first_index": first,
            "records": [record(n) for n in range(first, min(first + chunk, size))],
        }
        producer.produce(topics.INGEST, orjson.dumps(envelope), key=batch_id.encode())
        producer.poll(0)


def bench_producer(bootstrap: str) -> Producer:
    return Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True, "acks": "all"}
    )


async def kafka_throughput(
    url: str, bootstrap: str, records: int, per_batch: int, chunk: int
) -> float:
    run = uuid.uuid4().hex[:6]
    producer = bench_producer(bootstrap)
    batch_ids = []
    started = time.perf_counter()
    for start in range(0, records, per_batch):
        batch_id = f"bench-{run}-{start}"
        batch_ids.append(batch_id)
        size = min(per_batch, records - start)
        produce_batch(producer, batch_id, size, partial(activity_at, run, start), chunk)
    producer.flush(60)
    producer.close()
    async with aiohttp.ClientSession(base_url=url) as http:
        await wait_completed(http, batch_ids)
    return records / (time.perf_counter() - started)


def activity_at(run: str, start: int, n: int) -> dict[str, Any]:
    return activity(run, start + n)


def activity_failing_every(run: str, every: int, n: int) -> dict[str, Any]:
    """Every ``every``-th record fails validation (a zero duration)."""
    record = activity(run, n)
    if n % every == 0:
        record["duration_minutes"] = 0
    return record


async def failures_page(
    stack: Stack, records: int, every: int, chunk: int, repeats: int = 20
) -> dict[str, Any]:
    """One batch of ``records`` through Kafka, every ``every``-th record failing; then pages
    of 100 failures read with GET ?results=failed: how long each takes, and the API's RSS."""
    run = uuid.uuid4().hex[:6]
    batch_id = f"bench-big-{run}"
    producer = bench_producer(stack.bootstrap)
    started = time.perf_counter()
    produce_batch(producer, batch_id, records, partial(activity_failing_every, run, every), chunk)
    producer.flush(120)
    producer.close()
    figures: dict[str, Any] = {"records": records, "failing_every": every}
    path = f"/api/v1/batch-inserts/{batch_id}"
    async with aiohttp.ClientSession(base_url=stack.url) as http:
        while True:
            async with http.get(path, params={"results": "none"}) as response:
                body = await response.json() if response.status == 200 else {}
            if body.get("status") not in (None, "processing"):
                break
            await asyncio.sleep(0.5)
        figures["status"] = body["status"]
        figures["failed_count"] = body.get("failed_count")
        figures["end_to_end_records_per_s"] = round(records / (time.perf_counter() - started))
        api = stack.pids["api"]
        figures["api_rss_mib_before"] = rss_mib(api)
        failures = records // every
        timings = []
        for i in range(repeats):
            offset = (i * 7919) % max(failures - 100, 1)
            params = {"results": "failed", "results_offset": str(offset), "results_limit": "100"}
            began = time.perf_counter()
            async with http.get(path, params=params) as response:
                page = await response.json()
            timings.append((time.perf_counter() - began) * 1000)
            if response.status != 200 or len(page.get("results", ())) != 100:
                figures["error"] = f"{response.status}: {str(page)[:120]}"
                break
            figures["results_total"] = page.get("results_total")
        ordered = sorted(timings)
        figures["get_page_of_100_failures_ms"] = {
            "p50": round(ordered[len(ordered) // 2], 1),
            "max": round(ordered[-1], 1),
        }
        figures["api_rss_mib_after"] = rss_mib(api)
        figures["api_peak_rss_mib"] = peak_rss_mib(api)
    return figures


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


@dataclass
class Stack:
    """A running batchline: where it answers, and its processes by name."""

    name: str
    url: str
    database_url: str
    bootstrap: str
    chunk_size: int
    workers: int
    pids: dict[str, int]
    description: dict[str, Any]

    def groups(self) -> dict[str, Group]:
        groups = {
            "api": Group((self.pids["api"],)),
            "workers": Group(tuple(p for n, p in self.pids.items() if n.startswith("worker"))),
        }
        if "supervisor" in self.pids:
            groups["supervisor"] = Group((self.pids["supervisor"],))
        return groups


def user_environment(**settings: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHLINE_")}
    return env | {f"BATCHLINE_{k.upper()}": str(v) for k, v in settings.items()}


@contextlib.asynccontextmanager
async def separate_stack(args: argparse.Namespace, data_dir: Path) -> AsyncIterator[Stack]:
    """Services started here; `batchline api` and `batchline worker` processes apart."""
    base = Settings().model_copy(
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
        env = user_environment(**{k: v for k, v in settings.model_dump().items() if v is not None})
        started = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-m", "batchline.cli", command, env=env
            )
            for command in ["api", *["worker"] * args.workers]
        ]
        pids = {"api": started[0].pid}
        pids |= {f"worker{i}": p.pid for i, p in enumerate(started[1:], 1)}
        try:
            yield Stack(
                name="separate",
                url=f"http://{settings.http_host}:{settings.http_port}",
                database_url=settings.require_database_url(),
                bootstrap=settings.require_bootstrap_servers(),
                chunk_size=settings.chunk_size,
                workers=args.workers,
                pids=pids,
                description={
                    "stack": f"separate processes: batchline api, {args.workers} x worker",
                    "database": "configured" if base.database_url else "embedded pgserver",
                    "broker": "configured" if base.kafka_bootstrap_servers else "embedded Tansu",
                },
            )
        finally:
            for process in started:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
            await asyncio.gather(*(p.wait() for p in started))


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@contextlib.asynccontextmanager
async def dev_stack(data_dir: Path, log: Path) -> AsyncIterator[Stack]:
    """`batchline dev` as a user starts it: every setting at its default but the data folder
    (a temporary one) and the HTTP port (a free one), from the project folder."""
    port = free_port()
    with log.open("wb") as sink:
        dev = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "batchline.cli",
            "dev",
            env=user_environment(data_dir=data_dir, http_port=port),
            stdout=sink,
            stderr=sink,
        )
    try:
        state = None
        for _ in range(1200):
            state = devstate.read(data_dir)
            if state is not None or dev.returncode is not None:
                break
            await asyncio.sleep(0.1)
        if state is None or state.database_url is None or state.kafka_bootstrap_servers is None:
            raise RuntimeError(f"batchline dev did not start; see {log}")
        processes = children(dev.pid)
        workers = sorted(p for p in processes if "batchline.cli worker" in _command_line(p))
        (api,) = [p for p in processes if "batchline.cli api" in _command_line(p)]
        pids = {"supervisor": dev.pid, "api": api}
        pids |= {f"worker{i}": pid for i, pid in enumerate(workers, 1)}
        yield Stack(
            name="dev",
            url=state.api_url,
            database_url=state.database_url,
            bootstrap=state.kafka_bootstrap_servers,
            chunk_size=Settings.model_fields["chunk_size"].default,
            workers=len(workers),
            pids=pids,
            description={
                "stack": f"batchline dev, its defaults: the API and {len(workers)} workers",
                "database": "embedded pgserver (started by dev)",
                "broker": "embedded Tansu (started by dev)",
            },
        )
    finally:
        if dev.returncode is None:
            dev.send_signal(signal.SIGINT)
        await dev.wait()


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


class MemorySampler:
    """RSS of each batchline process every ``every`` seconds, labelled with the phase."""

    def __init__(self, pids: dict[str, int], every: float) -> None:
        self.pids = pids
        self.every = every
        self.phase = "start"
        self.samples: list[dict[str, Any]] = []

    async def run(self) -> None:
        started = time.monotonic()
        while True:
            sample: dict[str, Any] = {
                "s": round(time.monotonic() - started, 1),
                "phase": self.phase,
            }
            sample |= {name: rss_mib(pid) for name, pid in self.pids.items()}
            self.samples.append(sample)
            await asyncio.sleep(self.every)

    def by_phase(self) -> dict[str, dict[str, list[float]]]:
        """Lowest and highest RSS (MiB) of each process in each phase."""
        ranges: dict[str, dict[str, list[float]]] = {}
        for sample in self.samples:
            phase = ranges.setdefault(sample["phase"], {})
            for name in self.pids:
                low, high = phase.get(name, [sample[name], sample[name]])
                phase[name] = [min(low, sample[name]), max(high, sample[name])]
        return ranges


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


async def measure(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """Every phase against one running stack."""
    results: dict[str, Any] = {"stack": stack.name, "machine": machine()}
    results["date"] = dt.date.today().isoformat()
    results["settings"] = {
        "records": args.records,
        "batch": args.batch,
        "clients": args.clients,
        "workers": stack.workers,
        "chunk_size": stack.chunk_size,
        **stack.description,
    }
    services = await service_groups(stack.database_url, stack.bootstrap)
    copy_rate, copy_cpu = await copy_baseline(stack.database_url, args.records, CpuMeter(services))
    results["copy_records_per_s"] = round(copy_rate)
    cpu = {"copy": per_record_us(copy_cpu, args.records)}
    results["cpu_us_per_record"] = cpu
    # What the whole host may spend on a record at half of COPY's rate.
    results["budget_us_per_record_at_half_copy"] = round(
        (os.cpu_count() or 1) * 1e6 / (copy_rate / 2), 1
    )
    meter = CpuMeter(services | stack.groups())
    sampler = MemorySampler(stack.pids, args.memory_every or 3600.0)
    sampling = asyncio.create_task(sampler.run())
    try:
        await wait_ready(stack.url)
        await latency(stack.url, 20, 50)  # warm-up: consumer groups joined, pools filled
        progress(f"{stack.name}: REST phase")
        sampler.phase = "rest"
        before = meter.reading()
        rest = await rest_throughput(stack.url, args.records, args.batch, args.clients)
        cpu["rest"] = per_record_us(meter.since(before, meter.reading()), args.records)
        results["rest_records_per_s"] = round(rest)
        results["rest_vs_copy"] = round(rest / results["copy_records_per_s"], 3)
        progress(f"{stack.name}: Kafka producer phase")
        sampler.phase = "kafka"
        before = meter.reading()
        kafka = await kafka_throughput(
            stack.url, stack.bootstrap, args.records, args.batch, stack.chunk_size
        )
        cpu["kafka"] = per_record_us(meter.since(before, meter.reading()), args.records)
        results["kafka_records_per_s"] = round(kafka)
        results["kafka_vs_copy"] = round(kafka / results["copy_records_per_s"], 3)
        progress(f"{stack.name}: latency phase")
        sampler.phase = "latency"
        results["latency_2_records"] = await latency(
            stack.url, args.latency_requests, args.latency_rate
        )
        if args.big_batch:
            progress(f"{stack.name}: one batch of {args.big_batch:,} records, pages of failures")
            sampler.phase = "big batch"
            results["big_batch"] = await failures_page(
                stack, args.big_batch, args.failing_every, stack.chunk_size
            )
    finally:
        sampling.cancel()
    results["peak_rss_mib"] = {name: peak_rss_mib(pid) for name, pid in stack.pids.items()}
    if args.memory_every:
        results["rss_mib_by_phase"] = sampler.by_phase()
        results["rss_mib_samples"] = sampler.samples
    return results


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    runs = []
    for name in ("dev", "separate") if args.stack == "both" else (args.stack,):
        scratch = args.data_dir is None
        data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="batchline-bench-")) / name
        progress(f"{name}: starting")
        try:
            if name == "dev":
                stack = dev_stack(data_dir, Path(args.output).with_suffix(".dev.log"))
            else:
                stack = separate_stack(args, data_dir)
            async with stack as running:
                runs.append(await measure(running, args))
        finally:
            if scratch:
                shutil.rmtree(data_dir.parent, ignore_errors=True)
    return runs


def print_table(results: dict[str, Any]) -> None:
    print(f"== {results['settings']['stack']}")
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
    big = results.get("big_batch")
    if big:
        page = big["get_page_of_100_failures_ms"]
        rows.append(
            (
                f"{big['records']:,}-record batch",
                f"{big['status']}, {big['end_to_end_records_per_s']:,} records/s",
                f"{big.get('failed_count')} failed",
            )
        )
        rows.append(
            (
                "  GET a page of 100 failures",
                f"p50 {page['p50']} ms, max {page['max']} ms",
                f"API RSS {big['api_rss_mib_before']} -> {big['api_rss_mib_after']} MiB"
                f" (peak {big['api_peak_rss_mib']}) {big.get('error', '')}",
            )
        )
    for phase, ranges in results.get("rss_mib_by_phase", {}).items():
        rows.append(
            (
                f"RSS in {phase} (MiB)",
                ", ".join(f"{name} {low}-{high}" for name, (low, high) in ranges.items()),
                "",
            )
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
    columns = ["postgres", "broker", "api", "workers", "supervisor", "benchmark", "other", "total"]
    print("CPU per record (us)  " + "".join(f"{c:>11}" for c in columns) + "  host busy")
    names = {"copy": "COPY", "rest": "REST", "kafka": "Kafka producer"}
    for phase, spent in cpu.items():
        cells = "".join(f"{spent[c]:>11.1f}" if c in spent else f"{'-':>11}" for c in columns)
        print(f"{names[phase]:<21}{cells}  {spent['host_busy_pct']:>8.0f}%")
    print(f"at 0.5 x COPY the host may spend {budget:.1f} us of CPU per record, all included")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--stack",
        choices=["both", "dev", "separate"],
        default="both",
        help="dev: `batchline dev` with its defaults; separate: api and workers apart",
    )
    parser.add_argument("--workers", type=int, default=1, help="workers of the separate stack")
    parser.add_argument("--latency-requests", type=int, default=500)
    parser.add_argument("--latency-rate", type=float, default=20.0, help="POSTs per second")
    parser.add_argument(
        "--data-dir", help="embedded services' folder, kept (default: a temp dir, removed)"
    )
    parser.add_argument(
        "--big-batch",
        type=int,
        metavar="N",
        help="also send one batch of N records through Kafka and time GETs of a page of its"
        " failures",
    )
    parser.add_argument("--failing-every", type=int, default=100, metavar="K")
    parser.add_argument(
        "--memory-every",
        type=float,
        metavar="S",
        help="also sample every process's RSS every S seconds through the phases",
    )
    parser.add_argument("--output", default="benchmarks/results/e2e.json")
    parser.add_argument("--plot", help="also draw the figures as an SVG file here")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    figures = asyncio.run(main(arguments))
    for run in figures:
        print_table(run)
    output = Path(arguments.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(orjson.dumps({"runs": figures}, option=orjson.OPT_INDENT_2))
    print(f"written: {output}")
    if arguments.plot:
        for run in figures:
            drawing = plot.output_path(Path(arguments.plot), run)
            drawing.write_text(plot.render(run))
            print(f"written: {drawing}")
