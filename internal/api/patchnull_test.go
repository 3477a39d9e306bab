package api_test

import (
	"testing"
)

// null in a PATCH clears the fields that can be unset (webhook_url,
// webhook_events) and is a 422 for every other field.
func TestPatchNull(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, e *env) {
		gen := e.must(201, "POST", "/api/v1/tasks/", map[string]any{
			"task_type": "generation", "prompt": "a dress", "width": 64, "height": 64, "seed": 5,
			"priority": 3, "run_at": "2099-01-01T00:00:00Z",
			"webhook_url": "https://example.com/hook", "webhook_events": []string{"completed"},
		})
		id := gen["id"].(string)
		for _, field := range []string{"seed", "prompt", "priority", "run_at", "queue_name", "max_attempts"} {
			problemAt(t, e.do("PATCH", "/api/v1/tasks/"+id, map[string]any{field: nil}), 422, "body."+field)
		}
		got := e.must(200, "GET", "/api/v1/tasks/"+id, nil)
		if got["seed"] != float64(5) || got["priority"] != float64(3) || got["run_at"] != "2099-01-01T00:00:00Z" {
			t.Errorf("refused nulls changed the task: %v", got)
		}
		cleared := e.must(200, "PATCH", "/api/v1/tasks/"+id, map[string]any{"webhook_url": nil})
		if _, ok := cleared["webhook_url"]; ok && cleared["webhook_url"] != "" {
			t.Errorf("webhook_url null: webhook_url %v, want cleared", cleared["webhook_url"])
		}
		if ev, _ := cleared["webhook_events"].([]any); len(ev) != 1 {
			t.Errorf("webhook_url null changed webhook_events: %v", cleared["webhook_events"])
		}
		cleared = e.must(200, "PATCH", "/api/v1/tasks/"+id, map[string]any{"webhook_events": nil})
		if ev, _ := cleared["webhook_events"].([]any); len(ev) != 0 {
			t.Errorf("webhook_events null: %v, want cleared", cleared["webhook_events"])
		}
	})
}
