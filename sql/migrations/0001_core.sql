-- Batch operations, their per-record results, the inserter's ledger, idempotency keys,
-- and the first entity, activity.

-- Readable ids like the API contract's: batch-001, pa-010; wider once past 999.
CREATE FUNCTION batchline_id(prefix text, n bigint) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN prefix || lpad(n::text, greatest(3, length(n::text)), '0');

CREATE SEQUENCE batch_seq;

-- The operation header. Written by the front door (REST batches) or the inserter
-- (chunks produced straight to Kafka); counts and status are projected from outcomes.
CREATE TABLE batch (
    id              text PRIMARY KEY
                    DEFAULT batchline_id('batch-', nextval('batch_seq')),
    entity          text NOT NULL,
    source          text NOT NULL CHECK (source IN ('rest', 'kafka', 'bulk')),
    record_count    integer NOT NULL CHECK (record_count > 0),
    status          text NOT NULL DEFAULT 'processing'
                    CHECK (status IN ('processing', 'completed', 'failed')),
    inserted_count  integer NOT NULL DEFAULT 0,
    failed_count    integer NOT NULL DEFAULT 0,
    -- Records of the current attempt still waiting for an outcome.
    pending_count   integer NOT NULL,
    attempt         integer NOT NULL DEFAULT 0,
    options         jsonb NOT NULL DEFAULT '{}'::jsonb,
    failure_reason  text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    updated_at      timestamptz,
    progressed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX batch_newest_idx ON batch (created_at DESC, id DESC);
CREATE INDEX batch_status_idx ON batch (status, created_at DESC);

-- Projection of outcome events: what GET answers per record.
CREATE TABLE batch_result (
    batch_id     text NOT NULL REFERENCES batch (id) ON DELETE CASCADE,
    record_index integer NOT NULL,
    attempt      integer NOT NULL,
    status       text NOT NULL CHECK (status IN ('inserted', 'updated', 'failed')),
    entity_id    text,
    error        text,
    details      jsonb,
    PRIMARY KEY (batch_id, record_index)
);

-- Written by the inserter in the same transaction as the entity rows, so a redelivered
-- chunk finds its own earlier work and re-emits it instead of inserting twice.
CREATE TABLE record_ledger (
    batch_id     text NOT NULL,
    record_index integer NOT NULL,
    attempt      integer NOT NULL,
    status       text NOT NULL CHECK (status IN ('inserted', 'updated', 'failed')),
    entity_id    text,
    error        text,
    details      jsonb,
    -- Kept for failed records only: a retry re-runs them from here.
    payload      jsonb,
    PRIMARY KEY (batch_id, record_index)
);

CREATE TABLE idempotency_key (
    key             text PRIMARY KEY,
    request_hash    text NOT NULL,
    batch_id        text,
    response_status integer,
    response_body   jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE SEQUENCE activity_seq;

CREATE TABLE activity (
    id               text PRIMARY KEY
                     DEFAULT batchline_id('pa-', nextval('activity_seq')),
    coordinator_id   text NOT NULL,
    mentor_id        text NOT NULL,
    activity_type    text NOT NULL,
    activity_date    date NOT NULL,
    duration_minutes integer NOT NULL CHECK (duration_minutes BETWEEN 1 AND 1440),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT activity_natural_key
        UNIQUE (coordinator_id, mentor_id, activity_type, activity_date)
);

-- Domain events staged in the writing transaction and deleted once the broker has them,
-- so an event is published after commit, at least once, even across a crash.
CREATE TABLE event_outbox (
    event_id   uuid PRIMARY KEY,
    batch_id   text NOT NULL,
    topic      text NOT NULL,
    key        bytea,
    value      bytea NOT NULL,
    headers    jsonb NOT NULL DEFAULT '[]'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX event_outbox_age_idx ON event_outbox (created_at);
