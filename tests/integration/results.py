"""A batch's per-record results as the projection holds them, read the way GET reads them."""

from __future__ import annotations

import asyncpg

from batchline.vocabulary import ResultFilter
from sql.results import StoredResult, iter_results


async def stored_results(pg: asyncpg.Connection, batch_id: str) -> list[StoredResult]:
    return [r async for r in iter_results(pg, batch_id, ResultFilter.ALL)]
