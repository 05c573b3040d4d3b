"""Commands find `batchline dev`'s services by themselves, and say what is wrong with a
database that is not batchline's, instead of a traceback."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from batchline.cli import devstate
from batchline.settings import Settings
from sql.databases import drop_database, ensure_database, with_database
from tests.integration.processes import run_command, user_env


@pytest.fixture
async def empty_database(settings: Settings) -> AsyncIterator[str]:
    admin = with_database(settings.require_database_url(), "postgres")
    name = f"batchline_empty_{uuid.uuid4().hex[:8]}"
    url = await ensure_database(admin, name)
    yield url
    await drop_database(admin, name)


async def test_a_database_without_batchline_schema_is_named_with_the_fix(
    empty_database: str,
) -> None:
    finished = await run_command(["dlq", "list"], user_env(database_url=empty_database))
    assert finished.code == 2
    assert "has no batchline schema" in finished.err
    assert "batchline migrate" in finished.err
    assert "Traceback" not in finished.err

    missing = with_database(empty_database, f"no_such_{uuid.uuid4().hex[:6]}")
    for command in (["dlq", "list"], ["migrate"]):
        finished = await run_command(command, user_env(database_url=missing))
        assert finished.code == 2
        assert "does not exist" in finished.err
        assert "Traceback" not in finished.err


def dead_pid() -> int:
    """The id of a process that has come and gone."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    return gone.pid


async def test_commands_use_the_services_a_running_dev_recorded(
    settings: Settings, tmp_path: Path
) -> None:
    services = devstate.DevServices(
        pid=os.getpid(),  # a process that is alive, as `batchline dev` is while it runs
        api_url="http://127.0.0.1:1",
        database_url=settings.require_database_url(),
        kafka_bootstrap_servers=settings.require_bootstrap_servers(),
    )
    devstate.write(tmp_path, services)
    finished = await run_command(["dlq", "list", "--json"], user_env(data_dir=tmp_path))
    assert finished.code == 0, finished.err
    assert "using the services of `batchline dev`" in finished.err

    # A dev stack killed outright leaves its file behind; nobody follows it any more.
    devstate.write(tmp_path, dataclasses.replace(services, pid=dead_pid()))
    finished = await run_command(["dlq", "list"], user_env(data_dir=tmp_path))
    assert finished.code == 2
    assert "BATCHLINE_DATABASE_URL is not set" in finished.err
