"""Where a phase's CPU went: seconds per process group, read from /proc on this host.

The end-to-end benchmark asks each phase what PostgreSQL, the broker, the API, the
workers and the benchmark itself spent, so a ratio to COPY comes with the reason for it.
Linux only; a service on another host (or a /proc we may not read) is left out and said
to be.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
_LISTEN = "0A"


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; fields resume after ")".
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int, *, with_reaped_children: bool = False) -> float | None:
    """User + system seconds of a process (all its threads); None once it is gone.

    ``with_reaped_children`` adds the children it has waited for, which for a PostgreSQL
    postmaster is every backend that has already exited.
    """
    fields = _stat_fields(pid)
    if fields is None:
        return None
    # Counted from field 3 (state): utime, stime, cutime, cstime are fields 14-17.
    ticks = int(fields[11]) + int(fields[12])
    if with_reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICKS_PER_SECOND


def parent_pid(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields is not None else None


def process_name(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def children(pid: int) -> list[int]:
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and parent_pid(int(entry.name)) == pid
    ]


def listening_pid(port: int) -> int | None:
    """The local process with a listening TCP socket on ``port``, if we may see it."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == _LISTEN:
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    return int(entry.name)
        except OSError:
            continue
    return None


@dataclass(frozen=True)
class Group:
    """Processes counted together, e.g. every worker, or a postmaster and its backends."""

    pids: tuple[int, ...]
    # A postmaster: its reaped children count, and so do the backends alive at each reading.
    with_children: bool = False

    def seconds(self) -> float:
        total = 0.0
        for pid in self.pids:
            total += cpu_seconds(pid, with_reaped_children=self.with_children) or 0.0
            if self.with_children:
                total += sum(cpu_seconds(child) or 0.0 for child in children(pid))
        return total


def host_busy_seconds() -> float:
    """CPU seconds the whole host spent on anything but idling, over all its cores."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle, iowait = fields[3], fields[4]
    # guest time is already counted in user time.
    return (sum(fields[:8]) - idle - iowait) / _TICKS_PER_SECOND


def own_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """Snapshots of every group's CPU seconds; ``since`` gives the difference.

    A reading also holds the host's busy seconds (``host``) and the clock (``wall``), so a
    phase shows how busy the machine was and what processes outside the groups took.
    """

    def __init__(self, groups: Mapping[str, Group]) -> None:
        self._groups = dict(groups)

    def reading(self) -> dict[str, float]:
        seconds = {name: group.seconds() for name, group in self._groups.items()}
        seconds["benchmark"] = own_seconds()
        seconds["host"] = host_busy_seconds()
        seconds["wall"] = time.monotonic()
        return seconds

    @staticmethod
    def since(start: Mapping[str, float], end: Mapping[str, float]) -> dict[str, float]:
        return {name: round(end[name] - start[name], 3) for name in end}


def per_record_us(seconds: Mapping[str, float], records: int) -> dict[str, float]:
    """Microseconds of CPU per record for each group, ``other`` (the rest of the host) and
    ``total``; ``host_busy_pct`` is how much of all cores the host used meanwhile."""
    groups = {k: v for k, v in seconds.items() if k not in ("host", "wall")}
    host, wall = seconds["host"], seconds["wall"]
    spent = {name: round(value / records * 1e6, 1) for name, value in groups.items()}
    spent["other"] = round(max(host - sum(groups.values()), 0.0) / records * 1e6, 1)
    spent["total"] = round(max(host, sum(groups.values())) / records * 1e6, 1)
    spent["host_busy_pct"] = round(100 * host / (wall * (os.cpu_count() or 1)))
    return spent
