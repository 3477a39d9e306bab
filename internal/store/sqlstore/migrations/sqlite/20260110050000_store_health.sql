-- +goose Up
-- One row that readiness checks update, to prove the database accepts a
-- write (a committed one: BEGIN and ROLLBACK prove nothing about space).
CREATE TABLE store_health (
    id     INTEGER PRIMARY KEY,
    writes INTEGER NOT NULL
);
INSERT INTO store_health (id, writes) VALUES (1, 0);

-- +goose Down
DROP TABLE store_health;
