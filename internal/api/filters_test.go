package api_test

import (
	"encoding/json"
	"slices"
	"sort"
	"testing"
)

// listIDs returns the ids GET path lists (one page of up to 500).
func (e *env) listIDs(path string) []string {
	e.t.Helper()
	m := e.must(200, "GET", path, nil)
	var ids []string
	for _, it := range m["items"].([]any) {
		ids = append(ids, it.(map[string]any)["id"].(string))
	}
	sort.Strings(ids)
	return ids
}

func sorted(ids ...string) []string {
	out := slices.Clone(ids)
	sort.Strings(out)
	return out
}

// TestSeveralFilterValues: a list filter repeated (status=failed&
// status=completed) selects any of its values, on GET /tasks/ and on the
// GET /events stream.
func TestSeveralFilterValues(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, e *env) {
		id := func(m map[string]any) string { return m["id"].(string) }
		done := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "ok", "queue_name": "qa"})
		failed := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "no", "fail_with": "boom", "max_attempts": 1, "queue_name": "qb"})
		gen := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "generation", "prompt": "a dress", "width": 64, "height": 64, "queue_name": "qc"})
		waiting := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "later", "run_at": "2099-01-01T00:00:00Z", "queue_name": "qa"})
		e.waitStatus(id(done), "completed")
		e.waitStatus(id(failed), "failed")
		e.waitStatus(id(gen), "completed")

		cases := []struct {
			name, query string
			want        []string
		}{
			{"two statuses", "status=failed&status=completed", sorted(id(done), id(failed), id(gen))},
			{"two types and a status", "task_type=generation&task_type=echo&status=pending", sorted(id(waiting))},
			{"two queues", "queue_name=qa&queue_name=qc", sorted(id(done), id(gen), id(waiting))},
			{"two queues and two statuses", "queue_name=qa&queue_name=qb&status=failed&status=pending", sorted(id(failed), id(waiting))},
			{"one value", "status=failed", sorted(id(failed))},
		}
		for _, tc := range cases {
			if got := e.listIDs("/api/v1/tasks/?" + tc.query); !slices.Equal(got, tc.want) {
				t.Errorf("%s (%s): listed %v, want %v", tc.name, tc.query, got, tc.want)
			}
		}
		problemAt(t, e.do("GET", "/api/v1/tasks/?status=failed&status=done", nil), 422, "query.status[1]")
		problemAt(t, e.do("GET", "/api/v1/tasks/?task_type=echo&task_type=nosuchtype", nil), 422, "query.task_type")

		// The stream, replayed from the start of the log: only events
		// whose status is one of the two, and every such event.
		s := e.openStream("/api/v1/events?after=0&status=failed&status=completed")
		terminal := map[string]bool{}
		got := s.until(func(it sseItem) bool {
			var b struct {
				TaskID string `json:"task_id"`
			}
			if err := json.Unmarshal([]byte(it.data), &b); err != nil {
				t.Fatal(err)
			}
			terminal[b.TaskID] = true
			return len(terminal) == 3
		})
		for _, it := range got {
			if st := statusOf(it); st != "failed" && st != "completed" {
				t.Errorf("status=failed&status=completed streamed a %s event: %s", st, it.data)
			}
		}
		for _, m := range []map[string]any{done, failed, gen} {
			if !terminal[id(m)] {
				t.Errorf("no terminal event of %s", id(m))
			}
		}
		// Two types, one status: the failed echo task's failed event.
		s2 := e.openStream("/api/v1/events?after=0&task_type=generation&task_type=echo&status=failed")
		if it := s2.next(); statusOf(it) != "failed" || !json.Valid([]byte(it.data)) {
			t.Errorf("first event %s, want the failed one", it.data)
		}
		if r := e.do("GET", "/api/v1/events?status=failed&status=done", nil); r.status != 422 {
			t.Errorf("status=done on the stream: %d, want 422", r.status)
		}
	})
}
