package executor_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/inproc"
	"github.com/computeserver/compute/internal/executor/mock"
	"github.com/computeserver/compute/internal/task"
)

// memJob returns a job whose outputs and saved handles are kept in memory.
func memJob(saved *[]executor.Handle) *executor.Job {
	return &executor.Job{
		Fields: json.RawMessage(`{"prompt":"a dress","width":64,"height":64}`),
		Put: func(_ context.Context, name, ct string, data []byte) (task.Artifact, error) {
			return task.Artifact{Key: name, ContentType: ct, Size: int64(len(data))}, nil
		},
		SaveHandle: func(_ context.Context, h executor.Handle) error {
			*saved = append(*saved, h)
			return nil
		},
	}
}

var quiet = executor.ReporterFunc(func(context.Context, float64, string) error { return nil })

// A saved handle of a job the service still has is recovered: no second
// submission.
func TestExecuteRecovers(t *testing.T) {
	t.Parallel()
	jobs := inproc.New(0)
	ex, _ := mock.New("gpu", mock.Settings{}, jobs)
	id, err := jobs.Submit()
	if err != nil {
		t.Fatal(err)
	}
	var saved []executor.Handle
	job := memJob(&saved)
	job.Saved = &executor.Handle{Executor: "gpu", ExternalID: id, Version: executor.HandleVersion}
	if _, err := executor.Execute(t.Context(), ex, job, quiet); err != nil {
		t.Fatal(err)
	}
	if jobs.Submissions() != 1 || len(saved) != 1 || saved[0].ExternalID != id {
		t.Errorf("%d submissions, saved %+v; want 1, the recovered job %s", jobs.Submissions(), saved, id)
	}
}

// A saved handle the service lost, or of another executor, starts the job
// afresh.
func TestExecuteStartsAfreshWhenLost(t *testing.T) {
	t.Parallel()
	for _, h := range []executor.Handle{
		{Executor: "gpu", ExternalID: "forgotten", Version: executor.HandleVersion},
		{Executor: "gpu", ExternalID: "future", Version: 99},
		{Executor: "other", ExternalID: "x", Version: executor.HandleVersion},
	} {
		jobs := inproc.New(0)
		ex, _ := mock.New("gpu", mock.Settings{}, jobs)
		var saved []executor.Handle
		job := memJob(&saved)
		job.Saved = &h
		if _, err := executor.Execute(t.Context(), ex, job, quiet); err != nil {
			t.Fatalf("handle %+v: %v", h, err)
		}
		if jobs.Submissions() != 1 || len(saved) != 1 || saved[0].ExternalID == h.ExternalID {
			t.Errorf("handle %+v: %d submissions, saved %+v; want a new job", h, jobs.Submissions(), saved)
		}
	}
}

// A handle that cannot be saved cancels the job it belongs to: a job no
// task row points at would run unaccounted.
func TestExecuteCancelsWhenHandleCannotBeSaved(t *testing.T) {
	t.Parallel()
	jobs := inproc.New(0)
	ex, _ := mock.New("gpu", mock.Settings{}, jobs)
	var saved []executor.Handle
	job := memJob(&saved)
	job.SaveHandle = func(context.Context, executor.Handle) error { return task.ErrStaleRun }
	_, err := executor.Execute(t.Context(), ex, job, quiet)
	if !errors.Is(err, task.ErrStaleRun) || !strings.Contains(err.Error(), "executor gpu") {
		t.Fatalf("err %v, want the stale run, naming the executor", err)
	}
	_, rest, _ := strings.Cut(err.Error(), "saving handle of job ")
	id, _, _ := strings.Cut(rest, ":")
	if id == "" {
		t.Fatalf("error %q does not name the job", err)
	}
	if st, ok := jobs.State(id); ok {
		t.Errorf("job %s is still %s after its handle could not be saved", id, st)
	}
}

// When the run's context ends, the job is cancelled in the service, unless
// the run lost its claim: then a new run may have re-attached to the job,
// which must go on.
func TestExecuteCancelsWhenTheRunEnds(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name       string
		cause      error
		wantQueued bool
	}{
		{"cancelled", errors.New("task cancelled"), false},
		{"lost its claim", fmt.Errorf("lease lost: %w", task.ErrRunLost), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			jobs := inproc.New(0)
			ex, _ := mock.New("gpu", mock.Settings{}, jobs)
			ctx, cancel := context.WithCancelCause(t.Context())
			ex.Hook = func(context.Context, *executor.Job) error {
				cancel(tt.cause) // the run ends while the job runs
				return ctx.Err()
			}
			var saved []executor.Handle
			if _, err := executor.Execute(ctx, ex, memJob(&saved), quiet); err == nil {
				t.Fatal("Execute succeeded after its context ended")
			}
			if len(saved) != 1 {
				t.Fatalf("saved %+v", saved)
			}
			_, queued := jobs.State(saved[0].ExternalID)
			if queued != tt.wantQueued {
				t.Errorf("job still in the service: %v, want %v", queued, tt.wantQueued)
			}
		})
	}
}
