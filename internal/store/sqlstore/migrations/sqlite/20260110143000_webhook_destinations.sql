-- +goose Up
-- Deliveries are grouped by destination (scheme, host and port of the URL,
-- decided by package webhook) for per-destination concurrency and circuit
-- breakers; claimed_until marks a delivery in flight (set by a claim,
-- cleared when its attempt is recorded), so a claim counts every sender's
-- requests to a destination. Pending deliveries written before this migration
-- are grouped by their whole URL.
ALTER TABLE webhook_deliveries ADD COLUMN destination TEXT NOT NULL DEFAULT '';
ALTER TABLE webhook_deliveries ADD COLUMN claimed_until TIMESTAMP;
UPDATE webhook_deliveries SET destination = url WHERE status = 'pending';
CREATE INDEX webhook_deliveries_destination ON webhook_deliveries (destination, next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_in_flight ON webhook_deliveries (claimed_until, destination) WHERE claimed_until IS NOT NULL;
-- Claims find due deliveries per destination now; the index by due time
-- alone only tempted the planner into scanning every due row.
DROP INDEX webhook_deliveries_due;

-- +goose Down
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
DROP INDEX webhook_deliveries_in_flight;
DROP INDEX webhook_deliveries_destination;
ALTER TABLE webhook_deliveries DROP COLUMN claimed_until;
ALTER TABLE webhook_deliveries DROP COLUMN destination;
