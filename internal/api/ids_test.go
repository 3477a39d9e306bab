package api_test

import (
	"strings"
	"testing"
)

// Task ids in paths are accepted only in their canonical form; other
// spellings of the same UUID name no task.
func TestTaskIDsAreCanonical(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, e *env) {
		id := e.must(201, "POST", "/api/v1/tasks/echo", map[string]any{"message": "x", "run_at": "2099-01-01T00:00:00Z"})["id"].(string)
		variants := []string{
			strings.ToUpper(id), "{" + id + "}", "urn:uuid:" + id, strings.ReplaceAll(id, "-", ""),
		}
		for _, v := range variants {
			for _, p := range []string{"", "/result", "/webhooks", "/events"} {
				problemAt(t, e.do("GET", "/api/v1/tasks/"+v+p, nil), 404, "")
			}
			problemAt(t, e.do("GET", "/api/v1/tasks/echo/"+v, nil), 404, "")
			problemAt(t, e.do("PATCH", "/api/v1/tasks/"+v, map[string]any{"priority": 1}), 404, "")
			problemAt(t, e.do("POST", "/api/v1/tasks/"+v+"/cancel", nil), 404, "")
		}
		e.must(200, "GET", "/api/v1/tasks/"+id, nil)
	})
}
