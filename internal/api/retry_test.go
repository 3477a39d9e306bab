package api_test

import (
	"testing"
	"time"

	"github.com/computeserver/compute/internal/config"
)

// TestRetryOfCancelledScheduledTask documents what a retry does to run_at:
// a task cancelled before its scheduled time is due at once after a retry
// (run_at becomes the retry's time), and PATCH run_at schedules it again.
func TestRetryOfCancelledScheduledTask(t *testing.T) {
	t.Parallel()
	forEachDBWith(t, func(c *config.Config) { c.Workers = 0 }, func(t *testing.T, e *env) {
		created := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "later", "run_at": "2099-01-01T00:00:00Z"})
		id := created["id"].(string)
		e.must(200, "POST", "/api/v1/tasks/"+id+"/cancel", nil)
		before := time.Now().Add(-time.Second)
		retried := e.must(200, "POST", "/api/v1/tasks/"+id+"/retry", nil)
		runAt, err := time.Parse(time.RFC3339Nano, retried["run_at"].(string))
		if err != nil {
			t.Fatal(err)
		}
		if retried["status"] != "pending" || runAt.Before(before) || runAt.After(time.Now().Add(time.Second)) {
			t.Errorf("retried task: status %v, run_at %s; want pending and due now", retried["status"], runAt)
		}
		again := e.must(200, "PATCH", "/api/v1/tasks/"+id, map[string]any{"run_at": "2099-01-01T00:00:00Z"})
		if again["run_at"] != "2099-01-01T00:00:00Z" {
			t.Errorf("PATCH run_at after the retry: %v", again["run_at"])
		}
	})
}
