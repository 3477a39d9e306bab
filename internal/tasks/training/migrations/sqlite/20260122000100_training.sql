-- +goose Up
CREATE TABLE training_tasks (
    id                                   TEXT PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    images_data_url                      TEXT NOT NULL,
    steps                                INTEGER NOT NULL DEFAULT 1000,
    trigger_word                         TEXT,
    create_masks                         INTEGER NOT NULL DEFAULT 1,
    is_style                             INTEGER NOT NULL DEFAULT 0,
    is_input_format_already_preprocessed INTEGER NOT NULL DEFAULT 0,
    weights_path                         TEXT,
    weights_url                          TEXT,
    config_url                           TEXT
);

-- +goose Down
DROP TABLE training_tasks;
