-- +goose Up
CREATE TABLE word_count_tasks (
    id         TEXT PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    text       TEXT NOT NULL,
    words      INTEGER,
    lines      INTEGER,
    characters INTEGER
);

-- +goose Down
DROP TABLE word_count_tasks;
