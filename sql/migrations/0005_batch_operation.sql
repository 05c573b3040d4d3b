-- The envelope operation a batch was written with, so a retry re-runs its failed records
-- the same way (an instance upsert, a generic-entity update...).
ALTER TABLE batch ADD COLUMN operation text NOT NULL DEFAULT 'insert'
    CHECK (operation IN ('insert', 'upsert', 'update', 'patch', 'delete'));
