-- A replay puts each dead letter back with a random token (header batchline.replay.token)
-- and its replay count, written here before the message is sent. A message that fails
-- again is dead-lettered with the count its token has here; a producer's own
-- batchline.replay.count header, with no token behind it, counts for nothing.
CREATE TABLE dlq_replay_token (
    token        uuid PRIMARY KEY,
    replay_count integer NOT NULL CHECK (replay_count > 0),
    created_at   timestamptz NOT NULL DEFAULT now()
);
