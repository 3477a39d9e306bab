package training_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/mock"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/tasks"
	"github.com/computeserver/compute/internal/tasks/generation"
	"github.com/computeserver/compute/internal/tasks/training"
	"github.com/computeserver/compute/internal/testutil/testdb"
	"github.com/computeserver/compute/internal/testutil/testserver"
)

const apiKey = "training-test-admin-key-0123456789"

// client calls one test server with the admin key.
type client struct {
	t    *testing.T
	base string
}

// call sends body (JSON, when not nil) and returns the status and the
// decoded object (nil when the body is not one).
func (c client) call(method, path string, body any) (int, map[string]any, []byte) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(c.t.Context(), method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiKey)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	var obj map[string]any
	_ = json.Unmarshal(raw, &obj)
	return resp.StatusCode, obj, raw
}

// TestTrainingRoutes runs the original's training routes against a real
// server configured by examples/training/compute.yaml: the task trains
// with the example script through the command executor, answers in the
// training schema on POST /api/v1/training/ and GET
// /api/v1/training/{task_id}, cancels through
// POST /api/v1/training/{task_id}/cancel, and its events are
// training_status_update.
func TestTrainingRoutes(t *testing.T) {
	t.Parallel()
	needPython(t)
	file, err := config.Load("../../../examples/training/compute.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			cfg := testserver.Config(t, dialect, apiKey)
			cfg.Executors, cfg.Types = file.Executors, file.Types
			// Generation tasks run on a mock whose hook stands for a model
			// loading its subject LoRA: it reads the file through the task's
			// input reader, as the server wires it.
			loras := make(chan loraSeen, 1)
			hooked, err := mock.New("mock", mock.Settings{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			hooked.Hook = func(ctx context.Context, j *executor.Job) error {
				var f struct {
					Path string `json:"subject_model_path"`
				}
				if err := json.Unmarshal(j.Fields, &f); err != nil || f.Path == "" {
					return err
				}
				data, err := j.OpenInput(ctx, f.Path)
				if err != nil {
					return err
				}
				loras <- loraSeen{path: f.Path, data: data}
				return nil
			}
			register := func(reg *registry.Registry, deps tasks.Deps) error {
				gen := executor.NewSet()
				if err := gen.Add(mock.Kind, hooked); err != nil {
					return err
				}
				for _, d := range []registry.Declaration{
					training.Type(training.Config{Executors: deps.Executors, Fetcher: deps.Fetcher}),
					generation.Type(generation.Config{Executors: gen, Fetcher: deps.Fetcher}),
				} {
					if err := reg.Register(d); err != nil {
						return err
					}
				}
				return nil
			}
			srv := testserver.Start(t, cfg, app.Options{Register: register, Workers: true, Version: "training-test"}, testdb.Logger(t))
			c := client{t: t, base: srv.Base}
			ctx := t.Context()
			if _, err := srv.App.Artifacts.Put(ctx, "uploads/set.zip", "application/zip", training.ExampleDataset(3)); err != nil {
				t.Fatal(err)
			}

			code, created, raw := c.call(http.MethodPost, "/api/v1/training/", map[string]any{
				"images_data_url": "/api/v1/artifacts/uploads/set.zip", "steps": 20, "trigger_word": "TOK"})
			if code != http.StatusCreated {
				t.Fatalf("POST /api/v1/training/: %d %s", code, raw)
			}
			for k, want := range map[string]any{"task_type": "training", "provider_type": "train", "steps": 20.0,
				"create_masks": true, "is_style": false, "is_input_format_already_preprocessed": false, "trigger_word": "TOK"} {
				if created[k] != want {
					t.Errorf("created %s = %v, want %v", k, created[k], want)
				}
			}
			id := created["id"].(string)

			var got map[string]any
			deadline := time.Now().Add(time.Minute)
			for {
				code, got, raw = c.call(http.MethodGet, "/api/v1/training/"+id, nil)
				if code != http.StatusOK {
					t.Fatalf("GET /api/v1/training/%s: %d %s", id, code, raw)
				}
				if s := got["status"]; s == "completed" || s == "failed" || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if got["status"] != "completed" {
				t.Fatalf("the training ended %v: %s", got["status"], raw)
			}
			weights, _ := got["weights_url"].(string)
			if !strings.HasSuffix(weights, "/pytorch_lora_weights.safetensors") || got["config_url"] == nil {
				t.Fatalf("weights_url %q, config_url %v", weights, got["config_url"])
			}
			result, _ := got["result"].(map[string]any)
			if data, _ := result["data"].(map[string]any); data["weights_url"] != weights || data["start_step"] != 0.0 {
				t.Errorf("result data %v", result["data"])
			}
			code, _, body := c.call(http.MethodGet, strings.TrimPrefix(weights, srv.Base), nil)
			if code != http.StatusOK || len(body) < 8 {
				t.Fatalf("GET %s: %d, %d bytes", weights, code, len(body))
			}
			safetensorsHeader(t, body)

			evs, err := srv.App.Store.ListEvents(ctx, store.EventFilter{TaskID: uuid.MustParse(id), Scope: store.AdminScope})
			if err != nil {
				t.Fatal(err)
			}
			statuses := 0
			for _, e := range evs {
				if e.EventType != "training_status_update" && e.EventType != "training_progress_update" {
					t.Errorf("event %d of type %q", e.ID, e.EventType)
				}
				if e.EventType == "training_status_update" {
					statuses++
					var b struct {
						EventType string `json:"event_type"`
					}
					if json.Unmarshal(e.Body, &b) != nil || b.EventType != "training_status_update" {
						t.Errorf("event %d body %s", e.ID, e.Body)
					}
				}
			}
			if statuses < 3 { // pending, executing, completed
				t.Errorf("%d status events: %+v", statuses, evs)
			}

			// A finished task cannot be cancelled; a pending one can.
			if code, _, raw := c.call(http.MethodPost, "/api/v1/training/"+id+"/cancel", nil); code != http.StatusConflict {
				t.Errorf("cancelling a completed training: %d %s", code, raw)
			}
			later := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
			code, pending, raw := c.call(http.MethodPost, "/api/v1/training/", map[string]any{
				"images_data_url": "/api/v1/artifacts/uploads/set.zip", "run_at": later})
			if code != http.StatusCreated || pending["steps"] != float64(training.DefaultSteps) {
				t.Fatalf("a scheduled training: %d %s", code, raw)
			}
			code, cancelled, raw := c.call(http.MethodPost, fmt.Sprintf("/api/v1/training/%s/cancel", pending["id"]), nil)
			if code != http.StatusOK || cancelled["status"] != "cancelled" || cancelled["task_type"] != "training" {
				t.Errorf("cancelling a pending training: %d %s", code, raw)
			}

			// The weights feed a generation's LoRA slot: its executor reads
			// the trained file.
			code, gen, raw := c.call(http.MethodPost, "/api/v1/tasks/generation", map[string]any{
				"prompt": "TOK in a linen dress", "width": 64, "height": 64, "provider_type": "mock",
				"subject_model_path": weights, "subject_lora_weight": 0.8})
			if code != http.StatusCreated {
				t.Fatalf("creating a generation: %d %s", code, raw)
			}
			select {
			case seen := <-loras:
				if seen.path != weights || !bytes.Equal(seen.data, body) {
					t.Errorf("the generation read %q (%d bytes), want %q (%d bytes)", seen.path, len(seen.data), weights, len(body))
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the generation's executor never read its LoRA")
			}

			// A task of another type is not a training.
			for _, r := range []struct{ method, path string }{
				{http.MethodGet, "/api/v1/training/" + gen["id"].(string)},
				{http.MethodPost, "/api/v1/training/" + gen["id"].(string) + "/cancel"},
				{http.MethodGet, "/api/v1/training/" + uuid.NewString()},
			} {
				if code, _, raw := c.call(r.method, r.path, nil); code != http.StatusNotFound {
					t.Errorf("%s %s: %d %s, want 404", r.method, r.path, code, raw)
				}
			}
			// Invalid input is a 422 naming the field.
			code, _, raw = c.call(http.MethodPost, "/api/v1/training/", map[string]any{"images_data_url": "set.zip"})
			if code != http.StatusUnprocessableEntity || !strings.Contains(string(raw), "images_data_url") {
				t.Errorf("an archive that is no URL: %d %s", code, raw)
			}

			// The document describes the routes, answering the training schema.
			_, doc, _ := c.call(http.MethodGet, "/openapi.json", nil)
			paths, _ := doc["paths"].(map[string]any)
			for _, p := range []string{"/api/v1/training/", "/api/v1/training/{task_id}", "/api/v1/training/{task_id}/cancel"} {
				if !strings.Contains(fmt.Sprint(paths[p]), "TrainingTaskPublic") {
					t.Errorf("openapi path %s: %v", p, paths[p])
				}
			}
		})
	}
}
