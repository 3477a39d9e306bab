-- +goose Up
CREATE TABLE llm_interaction_tasks (
    id              UUID PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    messages        JSONB,
    prompt          TEXT,
    system          TEXT,
    image_url       TEXT,
    model           TEXT,
    temperature     DOUBLE PRECISION,
    max_tokens      BIGINT,
    seed            BIGINT,
    response_schema JSONB,
    response_text   TEXT,
    response_json   JSONB,
    finish_reason   TEXT
);

-- +goose Down
DROP TABLE llm_interaction_tasks;
