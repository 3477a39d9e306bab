-- +goose Up
-- entity_id: the caller's id of what the task is about (e.g. the product
-- backend's generation), echoed as entity_id in every event and webhook
-- body; '' means the task id.
ALTER TABLE tasks ADD COLUMN entity_id TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE tasks DROP COLUMN entity_id;
