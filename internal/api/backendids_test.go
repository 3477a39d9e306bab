package api_test

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestBackendIDsAndEntityID: the product backend sets
// backend_generation_id, backend_prediction_id and entity_id at create;
// they are stored and returned, and entity_id is the entity_id of every
// event and webhook body of the task (the task id when it is not given).
func TestBackendIDsAndEntityID(t *testing.T) {
	t.Parallel()
	forEachDBWith(t, withWebhooks, func(t *testing.T, e *env) {
		rc := newHookReceiver(t)
		created := e.must(201, "POST", "/api/v1/tasks/", map[string]any{
			"task_type": "generation", "prompt": "a dress", "width": 64, "height": 64,
			"backend_generation_id": "gen-42", "backend_prediction_id": "pred-7", "entity_id": "look-9",
			"webhook_url": rc.srv.URL, "webhook_events": []string{"pending", "executing", "completed"},
		})
		id := created["id"].(string)
		for k, want := range map[string]string{"backend_generation_id": "gen-42", "backend_prediction_id": "pred-7", "entity_id": "look-9"} {
			if created[k] != want {
				t.Errorf("created %s = %v, want %q", k, created[k], want)
			}
		}
		done := e.waitStatus(id, "completed")
		if done["entity_id"] != "look-9" || done["backend_generation_id"] != "gen-42" {
			t.Errorf("completed task lost its ids: %v", done)
		}
		for _, r := range rc.waitFor(3) {
			if r.body["entity_id"] != "look-9" {
				t.Errorf("webhook %s (%v) has entity_id %v, want look-9", r.id, r.body["status"], r.body["entity_id"])
			}
		}
		evs := e.loggedEvents(id)
		if len(evs) < 3 {
			t.Fatalf("%d events, want at least created, executing, completed", len(evs))
		}
		for _, ev := range evs {
			var b struct {
				EntityID string `json:"entity_id"`
			}
			if err := json.Unmarshal(ev.Body, &b); err != nil || b.EntityID != "look-9" {
				t.Errorf("event %d (%s) entity_id %q, %v; want look-9", ev.ID, ev.Status, b.EntityID, err)
			}
		}

		// Without entity_id, events name the task itself; the backend ids
		// may still be set while the task is pending.
		plain := e.must(201, "POST", "/api/v1/tasks/", map[string]any{
			"task_type": "generation", "prompt": "a dress", "run_at": "2099-01-01T00:00:00Z",
		})
		pid := plain["id"].(string)
		if _, ok := plain["entity_id"]; ok {
			t.Errorf("a task created without entity_id shows one: %v", plain["entity_id"])
		}
		var b struct {
			EntityID string `json:"entity_id"`
		}
		if err := json.Unmarshal(e.loggedEvents(pid)[0].Body, &b); err != nil || b.EntityID != pid {
			t.Errorf("created event's entity_id %q, %v; want the task id %s", b.EntityID, err, pid)
		}
		patched := e.must(200, "PATCH", "/api/v1/tasks/"+pid, map[string]any{"backend_prediction_id": "pred-8"})
		if patched["backend_prediction_id"] != "pred-8" {
			t.Errorf("patched backend_prediction_id = %v", patched["backend_prediction_id"])
		}
		problemAt(t, e.do("POST", "/api/v1/tasks/", map[string]any{
			"task_type": "generation", "prompt": "x", "entity_id": strings.Repeat("x", 300),
		}), 422, "body.entity_id")
	})
}
