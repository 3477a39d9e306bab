-- +goose Up
CREATE TABLE kitchensink_tasks (
    id          UUID PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    counter     BIGINT NOT NULL,
    big         BIGINT NOT NULL,
    ratio       DOUBLE PRECISION NOT NULL,
    enabled     BOOLEAN NOT NULL,
    happened_at TIMESTAMPTZ NOT NULL,
    note        TEXT,
    max_items   BIGINT,
    deadline    TIMESTAMPTZ,
    weight      DOUBLE PRECISION,
    flag        BOOLEAN,
    tags        JSONB,
    meta        JSONB,
    nested      JSONB,
    nested_ptr  JSONB,
    "order"     BIGINT NOT NULL DEFAULT 0,
    output      TEXT NOT NULL DEFAULT ''
);

-- +goose Down
DROP TABLE kitchensink_tasks;
