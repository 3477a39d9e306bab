package api_test

import "testing"

// TestEmptyWebhookEventsRefused: webhook_events: [] used to mean every
// status change, silently; it is a 422 at the field on create (both
// routes) and PATCH, and the schema says minItems 1.
func TestEmptyWebhookEventsRefused(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, e *env) {
		empty := []string{}
		problemAt(t, e.do("POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "x", "webhook_events": empty}), 422, "body.webhook_events")
		problemAt(t, e.do("POST", "/api/v1/tasks/echo", map[string]any{"message": "x", "webhook_events": empty}), 422, "body.webhook_events")
		created := e.must(201, "POST", "/api/v1/tasks/", map[string]any{
			"task_type": "echo", "message": "x", "webhook_events": []string{"completed"}, "run_at": "2099-01-01T00:00:00Z",
		})
		id := created["id"].(string)
		problemAt(t, e.do("PATCH", "/api/v1/tasks/"+id, map[string]any{"webhook_events": empty}), 422, "body.webhook_events")
		got := e.must(200, "GET", "/api/v1/tasks/"+id, nil)
		if ev, _ := got["webhook_events"].([]any); len(ev) != 1 || ev[0] != "completed" {
			t.Errorf("after a refused PATCH, webhook_events = %v, want [completed]", got["webhook_events"])
		}
		// Left out, it still means every status change.
		e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "x", "run_at": "2099-01-01T00:00:00Z"})
	})
}
