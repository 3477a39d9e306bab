-- +goose Up
CREATE TABLE kitchensink_tasks (
    id          TEXT PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    counter     INTEGER NOT NULL,
    big         INTEGER NOT NULL,
    ratio       REAL NOT NULL,
    enabled     INTEGER NOT NULL,
    happened_at TIMESTAMP NOT NULL,
    note        TEXT,
    max_items   INTEGER,
    deadline    TIMESTAMP,
    weight      REAL,
    flag        INTEGER,
    tags        TEXT,
    meta        TEXT,
    nested      TEXT,
    nested_ptr  TEXT,
    "order"     INTEGER NOT NULL DEFAULT 0,
    output      TEXT NOT NULL DEFAULT ''
);

-- +goose Down
DROP TABLE kitchensink_tasks;
