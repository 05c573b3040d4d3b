-- Instances belong to a FOLIO tenant (X-Okapi-Tenant), as FOLIO keeps a schema per tenant:
-- the same id in two tenants is two records, and hrids are unique within a tenant.
-- Rows written before this belong to the default tenant, which `batchline migrate` sets as
-- batchline.default_tenant for its session.
ALTER TABLE instance ADD COLUMN tenant text;
UPDATE instance
SET tenant = coalesce(nullif(current_setting('batchline.default_tenant', true), ''), 'diku');
ALTER TABLE instance ALTER COLUMN tenant SET NOT NULL;
ALTER TABLE instance DROP CONSTRAINT instance_pkey;
ALTER TABLE instance ADD PRIMARY KEY (tenant, id);
DROP INDEX instance_hrid_idx_unique;
CREATE UNIQUE INDEX instance_hrid_idx_unique ON instance (tenant, (jsonb ->> 'hrid'));
