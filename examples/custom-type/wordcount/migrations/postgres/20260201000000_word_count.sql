-- +goose Up
CREATE TABLE word_count_tasks (
    id         UUID PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    text       TEXT NOT NULL,
    words      BIGINT,
    lines      BIGINT,
    characters BIGINT
);

-- +goose Down
DROP TABLE word_count_tasks;
