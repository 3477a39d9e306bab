-- +goose Up
-- A redelivery starts a fresh attempt budget and retry window: the attempt
-- count at the redelivery and its time.
ALTER TABLE webhook_deliveries ADD COLUMN attempts_base INTEGER NOT NULL DEFAULT 0;
ALTER TABLE webhook_deliveries ADD COLUMN redelivered_at TIMESTAMPTZ;

-- +goose Down
ALTER TABLE webhook_deliveries DROP COLUMN redelivered_at;
ALTER TABLE webhook_deliveries DROP COLUMN attempts_base;
