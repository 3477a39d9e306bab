-- +goose Up
-- The slots of executors whose servers take a bounded number of jobs (a
-- ComfyUI server's prompts), shared by every worker process: a row per
-- server and slot, held by the run (task and attempt) that took it. A slot
-- is free when no run holds it, or when its task is no longer executing at
-- that attempt (the run ended, or its worker died and the task was
-- rescued), so a slot never outlives its run.
CREATE TABLE IF NOT EXISTS executor_slots (
    executor  TEXT    NOT NULL,
    server    TEXT    NOT NULL,
    slot      INTEGER NOT NULL,
    task_id   TEXT,
    attempt   INTEGER NOT NULL DEFAULT 0,
    taken_at  TIMESTAMP,
    PRIMARY KEY (executor, server, slot)
);

-- +goose Down
DROP TABLE executor_slots;
