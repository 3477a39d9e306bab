-- +goose Up
CREATE TABLE llm_interaction_tasks (
    id              TEXT PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    messages        TEXT,
    prompt          TEXT,
    system          TEXT,
    image_url       TEXT,
    model           TEXT,
    temperature     REAL,
    max_tokens      INTEGER,
    seed            INTEGER,
    response_schema TEXT,
    response_text   TEXT,
    response_json   TEXT,
    finish_reason   TEXT
);

-- +goose Down
DROP TABLE llm_interaction_tasks;
