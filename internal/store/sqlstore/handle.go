package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/task"
)

// SetExecutorHandle implements store.Store: it writes the handle and the
// external id of the run's job, only while the run still owns the task.
func (s *Store) SetExecutorHandle(ctx context.Context, id uuid.UUID, attempt int, handle json.RawMessage, serviceTaskID string) error {
	if len(handle) > 0 && !json.Valid(handle) {
		return fmt.Errorf("executor handle of task %s is not valid JSON", id)
	}
	return s.updateOwned(ctx, "executor handle", `executor_handle = $3, service_task_id = $4`, id, attempt, nullJSON(handle), serviceTaskID)
}

// AddRunError implements store.Store: it appends e to the task's errors,
// only while the run still owns the task.
func (s *Store) AddRunError(ctx context.Context, id uuid.UUID, attempt int, e task.Error) error {
	if e.At.IsZero() {
		e.At = task.Now()
	}
	if e.Attempt == 0 {
		e.Attempt = attempt
	}
	doc, err := jsonText(e)
	if err != nil {
		return fmt.Errorf("encoding the run's error: %w", err)
	}
	return s.updateOwned(ctx, "the run's error", `errors = `+fmt.Sprintf(s.d.jsonAppend, "errors", s.d.cast("$3", "jsonb")), id, attempt, doc)
}
