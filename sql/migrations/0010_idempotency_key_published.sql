-- When the broker acknowledged every chunk of the key's batch. A key whose batch has none
-- after a short while belongs to a request that died between header and produce: the
-- next request with the key and the same body sends the chunks again (safe: the ledger
-- writes each record once) instead of waiting for the stale sweep.
ALTER TABLE idempotency_key ADD COLUMN published_at timestamptz;
