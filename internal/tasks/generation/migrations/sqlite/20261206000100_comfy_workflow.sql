-- +goose Up
ALTER TABLE generation_tasks ADD COLUMN comfy_workflow TEXT;
ALTER TABLE generation_tasks ADD COLUMN comfy_workflow_data TEXT;

-- +goose Down
ALTER TABLE generation_tasks DROP COLUMN comfy_workflow_data;
ALTER TABLE generation_tasks DROP COLUMN comfy_workflow;
