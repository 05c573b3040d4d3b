"""The benchmark's CPU accounting finds the processes it reports on and counts their time."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from benchmarks.cpu import CpuMeter, Group, cpu_seconds, listening_pid, parent_pid, per_record_us

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

_BURN = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"


def test_finds_the_process_listening_on_a_port() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert listening_pid(port) == os.getpid()
    assert listening_pid(port) is None


def test_a_parent_counts_the_children_it_has_reaped() -> None:
    child = subprocess.Popen([sys.executable, "-c", _BURN])
    assert parent_pid(child.pid) == os.getpid()
    meter = CpuMeter({"parent": Group((os.getpid(),), with_children=True)})
    before = meter.reading()
    child.wait()

    spent = meter.since(before, meter.reading())

    # The child burnt 0.3 s; a live child counted at the first reading and reaped by the
    # second is neither lost nor counted twice.
    assert 0.25 <= spent["parent"] - spent["benchmark"] <= 0.6
    assert spent["host"] >= spent["parent"] - 0.05
    assert cpu_seconds(child.pid) is None


def test_per_record_figures_add_up() -> None:
    seconds = {"postgres": 0.5, "workers": 1.5, "host": 2.5, "wall": 10 / (os.cpu_count() or 1)}
    spent = per_record_us(seconds, 100_000)
    assert spent == {
        "postgres": 5.0,
        "workers": 15.0,
        "other": 5.0,
        "total": 25.0,
        "host_busy_pct": 25,
    }
