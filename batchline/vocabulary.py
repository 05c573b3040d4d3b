"""The pipeline's typed vocabulary: every status, source, operation and error code, once.

The database holds the same lists as ``CHECK`` constraints (``sql/migrations``);
``tests/unit/test_vocabulary.py`` keeps the two in step.
"""

from __future__ import annotations

from enum import StrEnum


class BatchStatus(StrEnum):
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


class Source(StrEnum):
    """Which front door a batch came through."""

    REST = "rest"
    KAFKA = "kafka"
    BULK = "bulk"


class Operation(StrEnum):
    """What a chunk asks of its entity's rows."""

    INSERT = "insert"
    UPSERT = "upsert"
    UPDATE = "update"
    PATCH = "patch"
    DELETE = "delete"


class RecordStatus(StrEnum):
    INSERTED = "inserted"
    UPDATED = "updated"
    DELETED = "deleted"
    FAILED = "failed"


class RecordError(StrEnum):
    """Machine-readable reasons a record failed; the one list of them."""

    VALIDATION_ERROR = "validation_error"
    UNIQUE_CONSTRAINT_VIOLATION = "unique_constraint_violation"
    OPTIMISTIC_LOCKING = "optimistic_locking"
    REFERENCE_NOT_FOUND = "reference_not_found"
    CONVERSION_ERROR = "conversion_error"  # a value is not of its field's type
    RECORD_NOT_FOUND = "record_not_found"  # update/patch/delete of a key that does not exist
    REFERENCE_IN_USE = "reference_in_use"  # delete of a record other records reference
    DATABASE_ERROR = "database_error"
    PROCESSING_FAILED = "processing_failed"
    NOT_PROCESSED = "not_processed"  # rolled back: another record of its atomic chunk failed
    # Its chunk never reached the inserter (a broker that lost it); settled as failed when
    # the batch stopped moving. Nothing of it was kept: send the record again.
    NEVER_DELIVERED = "never_delivered"


class ResultFilter(StrEnum):
    """Which of a batch's per-record results a reader asks for (``?results=``)."""

    ALL = "all"
    FAILED = "failed"
    SUCCEEDED = "succeeded"
    NONE = "none"
