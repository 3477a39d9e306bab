-- +goose Up
-- Webhook endpoints: subscriptions that receive the events matching their
-- filter (a JSON object, see store.EndpointFilter), each signed with its own
-- secret. The secret is kept as issued (the server must sign with it); during
-- a rotation's overlap previous_secret signs too, until previous_until.
-- tenant_id '' is an admin endpoint that receives every tenant's events.
CREATE TABLE webhook_endpoints (
    id              UUID PRIMARY KEY,
    tenant_id       TEXT NOT NULL DEFAULT '',
    url             TEXT NOT NULL,
    destination     TEXT NOT NULL,
    description     TEXT NOT NULL DEFAULT '',
    filter          TEXT NOT NULL DEFAULT '{}',
    enabled         BOOLEAN NOT NULL DEFAULT TRUE,
    secret          TEXT NOT NULL,
    previous_secret TEXT NOT NULL DEFAULT '',
    previous_until  TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id, created_at, id);
-- A delivery made for an endpoint names it (NULL: the task's own webhook_url
-- or the default URL). Deleting an endpoint stops its pending deliveries and
-- clears the reference; history stays.
ALTER TABLE webhook_deliveries ADD COLUMN endpoint_id UUID;
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id) WHERE endpoint_id IS NOT NULL;
-- The view of deliveries across tasks lists them by status, newest first.
CREATE INDEX webhook_deliveries_status ON webhook_deliveries (status, id);

-- +goose Down
DROP INDEX webhook_deliveries_status;
DROP INDEX webhook_deliveries_endpoint;
ALTER TABLE webhook_deliveries DROP COLUMN endpoint_id;
DROP TABLE webhook_endpoints;
