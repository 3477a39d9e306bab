-- +goose Up
CREATE TABLE generation_tasks (
    id                        TEXT PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    prompt                    TEXT NOT NULL,
    negative_prompt           TEXT,
    width                     INTEGER NOT NULL DEFAULT 1024,
    height                    INTEGER NOT NULL DEFAULT 1024,
    seed                      INTEGER,
    num_inference_steps       INTEGER NOT NULL DEFAULT 28,
    guidance_scale            REAL NOT NULL DEFAULT 3.5,
    subject_model_path        TEXT,
    subject_lora_weight       REAL NOT NULL DEFAULT 1.0,
    product_model_path        TEXT,
    product_lora_weight       REAL NOT NULL DEFAULT 1.0,
    style_model_path          TEXT,
    style_lora_weight         REAL NOT NULL DEFAULT 1.0,
    product2_model_path       TEXT,
    product2_lora_weight      REAL NOT NULL DEFAULT 1.0,
    reference_image_url       TEXT,
    reference_image_strength  REAL NOT NULL DEFAULT 0.5,
    backend_generation_id     TEXT,
    backend_prediction_id     TEXT,
    workflow_id               TEXT,
    comfy_prompt_id           TEXT,
    comfy_server_url          TEXT,
    comfyui_retry_server_urls TEXT,
    result_image_path         TEXT
);

-- +goose Down
DROP TABLE generation_tasks;
