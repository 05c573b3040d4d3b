-- Bookkeeping per chunk, not per record: a record costs its entity row and nothing else.
-- The inserter's ledger and the projection keep one row per chunk, holding the chunk's
-- outcome message as it was (or will be) sent on batchline.outcomes; records that never
-- arrived are kept as index ranges.

-- What the inserter did with one chunk, written in the same transaction as its entity rows.
-- A second delivery of the chunk waits for the first (an advisory lock on the batch and
-- attempt, taken first in the transaction) and then finds this row and re-emits `outcome`.
CREATE TABLE chunk_ledger (
    batch_id     text NOT NULL,
    attempt      integer NOT NULL,
    -- The chunk's lowest and highest record index, and every index it holds.
    first_index  integer NOT NULL,
    last_index   integer NOT NULL,
    covers       int4multirange NOT NULL,
    -- Of the message that wrote the row: another message naming the same records is a
    -- producer reusing a batch id, not a redelivery.
    digest       bytea,
    -- False for a dead-lettered chunk's row: its records failed with processing_failed and
    -- their payloads are kept for a retry, but a replay of the chunk writes them afresh.
    written      boolean NOT NULL,
    -- The outcome message(s) (ChunkOutcome), one per line: a chunk whose outcomes are
    -- too large for one Kafka message is told in several.
    outcome      bytea NOT NULL,
    -- {"<index>": payload} of the failed records only: a retry re-runs them from here.
    payloads     bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (batch_id, attempt, first_index)
);
-- Chunks arrive in index order, so "rows reaching past this chunk's first index" is
-- usually none: the overlap check of a fresh chunk reads no row.
CREATE INDEX chunk_ledger_reach_idx ON chunk_ledger (batch_id, last_index);

-- The projection of outcome messages: what GET answers, one row per chunk. Results of
-- an index superseded by a later attempt stay in their row's message and are listed in
-- `superseded`; the counts are of the row's current results.
CREATE TABLE chunk_result (
    batch_id       text NOT NULL,
    -- -1 for rows of records that never arrived: any outcome of theirs replaces them.
    attempt        integer NOT NULL,
    first_index    integer NOT NULL,
    last_index     integer NOT NULL,
    covers         int4multirange NOT NULL,
    superseded     int4multirange NOT NULL DEFAULT '{}',
    inserted_count integer NOT NULL,
    updated_count  integer NOT NULL,
    failed_count   integer NOT NULL,
    -- The outcome message as the inserter sent it; NULL for a range that never arrived.
    outcome        bytea,
    -- The message's failed entries alone (a JSON array), so failures page without reading
    -- every result.
    failed         bytea,
    -- Why the records of a range that never arrived failed.
    lost_reason    text,
    PRIMARY KEY (batch_id, attempt, first_index)
);
CREATE INDEX chunk_result_reach_idx ON chunk_result (batch_id, last_index);

-- Issue 15: an update is counted as an update, beside the seed's inserted and failed counts.
ALTER TABLE batch ADD COLUMN updated_count integer NOT NULL DEFAULT 0;
-- Records of the batch that never arrived and have no other result (failed, never_delivered):
-- a batch failed by the stale sweep completes once none is left.
ALTER TABLE batch ADD COLUMN lost_count integer NOT NULL DEFAULT 0;

-- Results kept per record by earlier versions become one row per (batch, attempt, block of
-- 1,000 indices) in the new form; their ledger rows keep their payloads for retries.
INSERT INTO chunk_result (batch_id, attempt, first_index, last_index, covers, superseded,
                          inserted_count, updated_count, failed_count, outcome, failed)
SELECT r.batch_id, r.attempt, min(r.record_index), max(r.record_index),
       range_agg(int4range(r.record_index, r.record_index + 1)), '{}',
       count(*) FILTER (WHERE r.status IN ('inserted', 'deleted')),
       count(*) FILTER (WHERE r.status = 'updated'),
       count(*) FILTER (WHERE r.status = 'failed'),
       convert_to(json_build_object(
           'schema_version', 2, 'batch_id', r.batch_id, 'entity', min(b.entity),
           'attempt', r.attempt, 'record_count', min(b.record_count),
           'outcomes', json_agg(json_build_object(
               'index', r.record_index, 'status', r.status, 'id', r.entity_id,
               'error', r.error, 'details', r.details) ORDER BY r.record_index))::text, 'UTF8'),
       convert_to(coalesce(json_agg(json_build_object(
               'index', r.record_index, 'status', r.status, 'id', r.entity_id,
               'error', r.error, 'details', r.details) ORDER BY r.record_index)
           FILTER (WHERE r.status = 'failed'), '[]')::text, 'UTF8')
FROM batch_result r JOIN batch b ON b.id = r.batch_id
GROUP BY r.batch_id, r.attempt, r.record_index / 1000;

INSERT INTO chunk_ledger (batch_id, attempt, first_index, last_index, covers, digest, written,
                          outcome, payloads)
SELECT l.batch_id, l.attempt, min(l.record_index), max(l.record_index),
       range_agg(int4range(l.record_index, l.record_index + 1)), NULL,
       bool_and(l.error IS DISTINCT FROM 'processing_failed'),
       convert_to(json_build_object(
           'schema_version', 2, 'batch_id', l.batch_id, 'entity', min(b.entity),
           'attempt', l.attempt, 'record_count', min(b.record_count),
           'outcomes', json_agg(json_build_object(
               'index', l.record_index, 'status', l.status, 'id', l.entity_id,
               'error', l.error, 'details', l.details) ORDER BY l.record_index))::text, 'UTF8'),
       convert_to(json_object_agg(l.record_index, l.payload)
           FILTER (WHERE l.payload IS NOT NULL)::text, 'UTF8')
FROM record_ledger l JOIN batch b ON b.id = l.batch_id
GROUP BY l.batch_id, l.attempt, l.record_index / 1000;

UPDATE batch b SET updated_count = u.updated, inserted_count = b.inserted_count - u.updated
FROM (SELECT batch_id, sum(updated_count) AS updated FROM chunk_result GROUP BY batch_id) u
WHERE u.batch_id = b.id AND u.updated > 0;

DROP TABLE batch_result;
DROP TABLE record_ledger;
DROP FUNCTION batchline_outcome_beyond_batch(text, integer, integer, integer, integer);
