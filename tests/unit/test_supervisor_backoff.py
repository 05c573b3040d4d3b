"""`batchline dev` restarts a crashed process at once, and a crash loop ever more slowly."""

from __future__ import annotations

import time

from batchline.cli.supervisor import MAX_BACKOFF_SECONDS, STABLE_SECONDS, Child, describe_exit


def exits_after(child: Child, seconds: float) -> float:
    child.started_at = time.monotonic() - seconds
    return child.backoff()


def test_each_quick_exit_doubles_the_wait_up_to_the_cap() -> None:
    child = Child("worker1", "worker")
    waits = [exits_after(child, 0.5) for _ in range(8)]
    assert waits == [1, 2, 4, 8, 16, MAX_BACKOFF_SECONDS, MAX_BACKOFF_SECONDS, MAX_BACKOFF_SECONDS]


def test_a_process_that_ran_well_starts_over_from_the_first_wait() -> None:
    child = Child("worker1", "worker")
    for _ in range(5):
        exits_after(child, 0.5)
    assert exits_after(child, STABLE_SECONDS + 1) == 1


def test_exits_are_described_as_a_person_reads_them() -> None:
    assert describe_exit(-9) == "was killed by SIGKILL"
    assert describe_exit(2) == "exited with status 2"
