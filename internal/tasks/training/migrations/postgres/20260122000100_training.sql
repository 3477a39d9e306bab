-- +goose Up
CREATE TABLE training_tasks (
    id                                   UUID PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    images_data_url                      TEXT NOT NULL,
    steps                                BIGINT NOT NULL DEFAULT 1000,
    trigger_word                         TEXT,
    create_masks                         BOOLEAN NOT NULL DEFAULT TRUE,
    is_style                             BOOLEAN NOT NULL DEFAULT FALSE,
    is_input_format_already_preprocessed BOOLEAN NOT NULL DEFAULT FALSE,
    weights_path                         TEXT,
    weights_url                          TEXT,
    config_url                           TEXT
);

-- +goose Down
DROP TABLE training_tasks;
