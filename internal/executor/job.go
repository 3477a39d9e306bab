package executor

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
)

// FromJob builds the executor's view of a task type's job: its fields as
// JSON, its artifact store, and its handle saving. A resumed run (the
// task's is_resumed) is handed the handle its lost run saved. Set
// OpenInput on the result when the operation reads inputs.
func FromJob[M any](j *registry.Job[M], operation string) (*Job, error) {
	fields, err := json.Marshal(j.Fields)
	if err != nil {
		return nil, task.Permanent(fmt.Errorf("encoding fields for the executor: %w", err))
	}
	job := &Job{
		TaskID: j.Task.ID, Type: j.Task.Type, Attempt: j.Task.Attempt, Operation: operation, Fields: fields,
		Tenant: j.Task.OriginTenantID,
		Put:    j.PutArtifact, AddError: j.AddError,
		SaveHandle: func(ctx context.Context, h Handle) error {
			raw, err := json.Marshal(h)
			if err != nil {
				return fmt.Errorf("encoding handle: %w", err)
			}
			return j.SetExecutorHandle(ctx, raw, h.ExternalID)
		},
	}
	if j.Task.StartTimeoutSeconds > 0 {
		job.StartBy = j.Task.CreatedAt.Add(time.Duration(j.Task.StartTimeoutSeconds) * time.Second)
	}
	if j.Task.IsResumed {
		// A handle that cannot be read is treated as none: the job starts
		// afresh rather than the task failing on bookkeeping.
		job.Saved, _ = ParseHandle(j.Task.ExecutorHandle)
	}
	return job, nil
}
