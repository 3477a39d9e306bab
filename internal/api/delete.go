package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/computeserver/compute/internal/store"
)

// deleteOutput is the empty answer of a delete.
type deleteOutput struct{}

func (s *Server) registerDeleteRoute() {
	huma.Register(s.api, huma.Operation{
		OperationID: "delete-task", Method: http.MethodDelete, Path: "/api/v1/tasks/{task_id}", Tags: []string{"Tasks"},
		Summary: "Delete a finished task with its events, webhook deliveries and artifacts",
		Description: "Removes a completed, failed or cancelled task for good: the task, its events, its webhook deliveries " +
			"and their attempts, and every artifact it produced (from the artifact store, local or S3). " +
			"A pending or executing task answers 409: cancel it first. A tenant key deletes only its own tasks (404 for others'). " +
			"When the artifact store cannot be reached the answer is 503 and nothing is deleted from the database: retry.",
		Security: bearer, DefaultStatus: http.StatusNoContent,
		Errors: []int{401, 404, 409, 503},
	}, s.delete)
}

func (s *Server) delete(ctx context.Context, in *idInput) (*deleteOutput, error) {
	rec, err := s.load(ctx, in.TaskID)
	if err != nil {
		return nil, err
	}
	t := rec.Task
	if !t.Status.Terminal() {
		return nil, notFinished(t.ID.String(), string(t.Status))
	}
	// The artifacts go first: should the store fail, the task is still
	// there to delete again, rather than gone with its files left behind.
	if s.deps.Artifacts != nil {
		if _, err := s.deps.Artifacts.DeleteTask(ctx, t.ID.String()); err != nil {
			s.log.Error("deleting a task's artifacts", "task_id", t.ID, "error", err)
			return nil, huma.ErrorWithHeaders(huma.NewError(http.StatusServiceUnavailable,
				"the artifact store is unavailable; nothing was deleted, retry later"), http.Header{"Retry-After": {retryUnavailable}})
		}
	}
	deleted, err := s.deps.Store.DeleteTask(ctx, t.ID, principalFrom(ctx).scope())
	if errors.Is(err, store.ErrNotFinished) {
		// A retry got in between: the task runs again.
		return nil, notFinished(t.ID.String(), "pending")
	}
	if err != nil {
		return nil, s.problem(err, "task")
	}
	s.log.Info("task deleted", "task_id", deleted.ID, "task_type", deleted.Type, "status", deleted.Status)
	return &deleteOutput{}, nil
}

// notFinished is the 409 of a delete of a task that is not finished.
func notFinished(id, status string) error {
	return huma.Error409Conflict(fmt.Sprintf("only finished tasks (completed, failed or cancelled) can be deleted: the task is %s; "+
		"cancel it first (POST /api/v1/tasks/%s/cancel)", status, id))
}
