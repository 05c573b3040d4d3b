"""Where a running ``batchline dev`` serves, for the other commands run from the same folder.

``batchline dev`` writes ``{BATCHLINE_DATA_DIR}/dev.json`` once its services answer and
removes it when it stops. ``batchline dlq``, ``migrate``, ``api``, ``worker`` and ``load``
read it when their own settings leave a service unset, so a newcomer's second terminal
works without copying URLs around. Only services ``dev`` started itself are recorded: a
database or broker the user configured may carry credentials and stays in the user's
environment.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from batchline.cli.embedded import process_exists
from batchline.settings import Settings

log = logging.getLogger(__name__)

STATE_FILE = "dev.json"


@dataclass(frozen=True)
class DevServices:
    pid: int
    api_url: str
    database_url: str | None
    kafka_bootstrap_servers: str | None


def state_path(data_dir: Path) -> Path:
    return data_dir / STATE_FILE


def write(data_dir: Path, services: DevServices) -> Path:
    """Written whole or not at all: a reader never sees half a file."""
    path = state_path(data_dir)
    scratch = path.with_name(f".{STATE_FILE}.{os.getpid()}")
    scratch.write_bytes(orjson.dumps(asdict(services), option=orjson.OPT_INDENT_2))
    scratch.replace(path)
    return path


def remove(data_dir: Path, pid: int) -> None:
    """Removes the file only if it is still the one ``pid`` wrote."""
    running = read(data_dir)
    if running is not None and running.pid == pid:
        with contextlib.suppress(FileNotFoundError):
            state_path(data_dir).unlink()


def read(data_dir: Path) -> DevServices | None:
    """The services of a ``batchline dev`` still running, or None."""
    try:
        recorded: Any = orjson.loads(state_path(data_dir).read_bytes())
        services = DevServices(**recorded)
    except (OSError, orjson.JSONDecodeError, TypeError):
        return None
    # A dev stack killed outright leaves its file behind; its process id is then gone.
    return services if process_exists(services.pid) else None


def fill_in(settings: Settings) -> Settings:
    """``settings`` with the running dev stack's services where none is configured."""
    if settings.database_url and settings.kafka_bootstrap_servers:
        return settings
    running = read(settings.data_dir)
    if running is None:
        return settings
    updates: dict[str, Any] = {}
    if not settings.database_url and running.database_url:
        updates["database_url"] = running.database_url
    if not settings.kafka_bootstrap_servers and running.kafka_bootstrap_servers:
        updates["kafka_bootstrap_servers"] = running.kafka_bootstrap_servers
    if updates:
        log.info(
            "using the services of `batchline dev` (pid %d) recorded in %s",
            running.pid,
            state_path(settings.data_dir),
        )
    return settings.model_copy(update=updates)
