-- FOLIO-style instances (id + jsonb), written only by the pipeline's instance writer.

-- hrids the writer generates for instances that come without one: in00000000001, ...
CREATE SEQUENCE instance_hrid_seq;

CREATE TABLE instance (
    id            uuid PRIMARY KEY,
    jsonb         jsonb NOT NULL,
    creation_date timestamptz NOT NULL DEFAULT now(),
    updated_date  timestamptz NOT NULL DEFAULT now()
);

-- FOLIO keeps hrids unique; a second instance with a taken hrid fails as a record.
CREATE UNIQUE INDEX instance_hrid_idx_unique ON instance ((jsonb ->> 'hrid'));
