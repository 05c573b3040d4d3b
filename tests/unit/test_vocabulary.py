"""The typed vocabulary and the database's CHECK lists name the same values."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path

import pytest

from batchline.vocabulary import BatchStatus, Operation, Source
from streams.dlq import RunStatus

MIGRATIONS = Path(__file__).resolve().parents[2] / "sql" / "migrations"

_TABLE = re.compile(r"(?:CREATE|ALTER)\s+TABLE\s+(\w+)", re.IGNORECASE)
_CHECK_LIST = re.compile(r"CHECK\s*\(\s*(\w+)\s+IN\s*\(([^)]*)\)\s*\)", re.IGNORECASE)


def check_lists() -> dict[tuple[str, str], set[str]]:
    """Per ``(table, column)``, the values its newest ``CHECK (column IN (...))`` allows."""
    found: dict[tuple[str, str], set[str]] = {}
    for migration in sorted(MIGRATIONS.glob("*.sql")):
        text = re.sub(r"--[^\n]*", "", migration.read_text())
        for statement in text.split(";"):
            table = _TABLE.search(statement)
            if table is None:
                continue
            for column, values in _CHECK_LIST.findall(statement):
                found[(table.group(1), column)] = set(re.findall(r"'([^']*)'", values))
    return found


@pytest.mark.parametrize(
    ("table", "column", "vocabulary"),
    [
        ("batch", "status", BatchStatus),
        ("batch", "source", Source),
        ("batch", "operation", Operation),
        ("dlq_replay", "status", RunStatus),
    ],
)
def test_enum_matches_the_check_list(table: str, column: str, vocabulary: type[StrEnum]) -> None:
    assert check_lists()[(table, column)] == {member.value for member in vocabulary}
