-- Dead-letter replays: one row per replay run (from the CLI or the operator API), and which
-- dead letters a replay has put back, so a second replay does not put them back again.

CREATE SEQUENCE dlq_replay_seq;

CREATE TABLE dlq_replay (
    id               text PRIMARY KEY
                     DEFAULT batchline_id('replay-', nextval('dlq_replay_seq')),
    requested_by     text NOT NULL CHECK (requested_by IN ('cli', 'http')),
    filters          jsonb NOT NULL DEFAULT '{}'::jsonb,
    dry_run          boolean NOT NULL,
    rate_per_second  double precision CHECK (rate_per_second > 0),
    status           text NOT NULL DEFAULT 'running'
                     CHECK (status IN ('running', 'completed', 'cancelled', 'failed',
                                       'interrupted')),
    cancel_requested boolean NOT NULL DEFAULT false,
    -- Dead letters read, matching the filters, to be replayed, replayed, at the replay
    -- limit (parked), and replayed by an earlier run.
    scanned          integer NOT NULL DEFAULT 0,
    matched          integer NOT NULL DEFAULT 0,
    selected         integer NOT NULL DEFAULT 0,
    replayed         integer NOT NULL DEFAULT 0,
    parked           integer NOT NULL DEFAULT 0,
    already_replayed integer NOT NULL DEFAULT 0,
    error            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- Refreshed while the run is alive; a running row that stopped beating was interrupted.
    heartbeat_at     timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
CREATE INDEX dlq_replay_newest_idx ON dlq_replay (created_at DESC, id DESC);

CREATE TABLE dlq_replayed (
    dlq_topic     text NOT NULL,
    dlq_partition integer NOT NULL,
    dlq_offset    bigint NOT NULL,
    -- The dead letter's broker timestamp: a recreated topic (the embedded broker keeps
    -- nothing across restarts) reuses offsets, and a mark must not cover a new message.
    dlq_timestamp_ms bigint,
    replay_id     text NOT NULL REFERENCES dlq_replay (id) ON DELETE CASCADE,
    replayed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dlq_topic, dlq_partition, dlq_offset)
);
