-- Generic entities (YAML schemas): which entity tables batchline created, so a schema
-- removed from the YAML folder is noticed instead of silently left behind; and a record
-- status for deletes (DELETE /data/{entity}/{lk} goes through the pipeline too).

CREATE TABLE yaml_entity (
    name        text PRIMARY KEY,  -- lower-case entity name
    table_name  text NOT NULL,
    definition  jsonb NOT NULL,    -- the schema as last applied, as GET /entity shows it
    source      text,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE batch_result DROP CONSTRAINT batch_result_status_check,
    ADD CONSTRAINT batch_result_status_check
        CHECK (status IN ('inserted', 'updated', 'deleted', 'failed'));
ALTER TABLE record_ledger DROP CONSTRAINT record_ledger_status_check,
    ADD CONSTRAINT record_ledger_status_check
        CHECK (status IN ('inserted', 'updated', 'deleted', 'failed'));
