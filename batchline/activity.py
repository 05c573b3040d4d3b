"""The activity record of the batch-insert front door (seed 000): fields and their rules."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr

# Not blank: a key of spaces is a client bug more often than a real identifier.
Identifier = Annotated[StrictStr, Field(min_length=1, max_length=200, pattern=r"\S")]


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


def _iso_date(value: Any) -> Any:
    """Only "YYYY-MM-DD": pydantic would also read a number, or a string of digits, as a
    Unix time, and a datetime at midnight as its date."""
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise ValueError("must be an ISO date string (YYYY-MM-DD)")
    return value


class Activity(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    coordinator_id: Identifier
    mentor_id: Identifier
    activity_type: Identifier
    activity_date: Annotated[date, BeforeValidator(_iso_date)]
    duration_minutes: Annotated[StrictInt, Field(ge=1, le=1440)]

    @property
    def natural_key(self) -> tuple[str, str, str, date]:
        return (self.coordinator_id, self.mentor_id, self.activity_type, self.activity_date)
