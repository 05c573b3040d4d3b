-- The outcome message a chunk's ledger row and projection row keep (~75 bytes a record)
-- was compressed with pglz on every write: about as much PostgreSQL CPU as writing the
-- row itself. lz4 compresses it nearly as small at a fraction of the cost; a server built
-- without lz4 keeps it uncompressed (out of line, as before) instead. Only new rows change.
DO $$
BEGIN
    ALTER TABLE chunk_ledger ALTER COLUMN outcome SET COMPRESSION lz4;
    ALTER TABLE chunk_result ALTER COLUMN outcome SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    ALTER TABLE chunk_ledger ALTER COLUMN outcome SET STORAGE EXTERNAL;
    ALTER TABLE chunk_result ALTER COLUMN outcome SET STORAGE EXTERNAL;
END
$$;
