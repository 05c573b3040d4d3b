-- Which chunk wrote a ledger row. A chunk naming (batch_id, record_index) pairs that a
-- different chunk already wrote is not a redelivery but a producer reusing a batch id.
ALTER TABLE record_ledger ADD COLUMN chunk_digest bytea;
