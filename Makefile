# The compute server. `make run` serves on SQLite; `make test` runs every
# test (PostgreSQL tests need the server named by COMPUTE_TEST_DATABASE_URL,
# default postgres://postgres@127.0.0.1:5432/test; they skip without it
# unless CI=true).
GO ?= go
export PATH := /usr/local/go/bin:$(PATH)

.PHONY: run test test-short lint build bench bench-scale clientcheck models

run:
	$(GO) run ./cmd/compute serve

test:
	$(GO) test -race -count=1 -timeout 30m ./...

test-short:
	$(GO) test -count=1 ./...

build:
	$(GO) build -o bin/compute ./cmd/compute

# clientcheck generates clients from the served /openapi.json with
# oapi-codegen, ogen and openapi-typescript + openapi-fetch (versions pinned
# in clientcheck/), compiles them and runs each against a live server.
clientcheck:
	bash clientcheck/run.sh

# models installs the local CPU models (pinned npm packages, models/) into
# MODELS_DIR, by default $$COMPUTE_DATA_DIR/models (./data/models): the server
# finds them there and runs background_remove, background_fix, face_enhancer,
# detail_enhancer and refine on them (docs/local-models.md).
MODELS_DIR ?= $(or $(COMPUTE_DATA_DIR),./data)/models
models:
	bash models/install.sh "$(MODELS_DIR)"

lint:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }

# bench measures the queue and the API against River in one run (SQLite and
# PostgreSQL at COMPUTE_TEST_DATABASE_URL's server); 5 to 10 minutes. The
# results and settings are described in docs/performance.md.
bench:
	cd bench && $(GO) run ./cmd/computebench -json results/latest.json \
		-pg "$${COMPUTE_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}"

# bench-scale measures filtered task lists and tenant replays on a million
# rows, with and without the list indexes (docs/performance.md, "Scale");
# about 5 minutes.
bench-scale:
	cd bench && $(GO) run ./cmd/scalebench -baseline -json results/scale.json \
		-pg "$${COMPUTE_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}"
