package queue_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/inproc"
	"github.com/computeserver/compute/internal/executor/mock"
	"github.com/computeserver/compute/internal/queue"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
)

func TestExecutorHandle(t *testing.T) {
	t.Parallel()
	runPerDialect(t, []dialectCase{
		{"SavedWhenSubmitted", testHandleSavedWhenSubmitted},
		{"HandedOnRecovery", testHandleHandedOnRecovery},
	})
}

// onExecutor is a probe processor that runs its job on ex through the
// executor seam.
func onExecutor(ex executor.Executor) probeFunc {
	return func(ctx context.Context, job *registry.Job[probeFields]) (*task.Result, error) {
		ej, err := executor.FromJob(job, "text_to_image")
		if err != nil {
			return nil, err
		}
		out, err := executor.Execute(ctx, ex, ej, executor.ReporterFunc(job.Progress))
		if err != nil {
			return nil, err
		}
		return &task.Result{Artifacts: out.Artifacts, Data: out.Data}, nil
	}
}

// testHandleSavedWhenSubmitted: the handle is on the task row while the
// job runs, with its external id as service_task_id.
func testHandleSavedWhenSubmitted(t *testing.T, dialect string) {
	ex, err := mock.New("gpu", mock.Settings{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	running, release := make(chan struct{}), make(chan struct{})
	ex.Hook = func(ctx context.Context, _ *executor.Job) error {
		close(running)
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	h := newHarness(t, dialect, opts{probe: onExecutor(ex), resumable: true})
	id := h.createProbe(probeFields{}, nil)
	h.newEngine(queue.Config{Concurrency: 1}, nil)
	<-running
	tk := h.get(id).Task
	hd, err := executor.ParseHandle(tk.ExecutorHandle)
	if err != nil || hd == nil {
		t.Fatalf("handle while running: %s (%v)", tk.ExecutorHandle, err)
	}
	if hd.Executor != "gpu" || hd.ExternalID == "" || hd.Version != executor.HandleVersion || tk.ServiceTaskID != hd.ExternalID {
		t.Errorf("handle %+v, service_task_id %q", hd, tk.ServiceTaskID)
	}
	close(release)
	h.waitStatus(id, task.StatusCompleted)
}

// testHandleHandedOnRecovery: a worker dies after submitting a job; the
// rescued task is resumed and its run re-attaches to the job by the saved
// handle instead of submitting it again.
func testHandleHandedOnRecovery(t *testing.T, dialect string) {
	jobs := inproc.New(0) // the "service", which outlives the dead worker
	ex, err := mock.New("gpu", mock.Settings{}, jobs)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, dialect, opts{probe: onExecutor(ex), resumable: true})
	id := h.createProbe(probeFields{}, nil)
	h.claimAs("dead-worker", 50*time.Millisecond)
	// The dead worker's run submitted its job and saved the handle.
	ext, err := jobs.Submit()
	if err != nil {
		t.Fatal(err)
	}
	saved, _ := json.Marshal(executor.Handle{Executor: "gpu", ExternalID: ext, Version: executor.HandleVersion})
	if err := h.st.SetExecutorHandle(h.ctx, id, 1, saved, ext); err != nil {
		t.Fatalf("SetExecutorHandle: %v", err)
	}
	h.newEngine(queue.Config{Concurrency: 1, MaintenanceInterval: 50 * time.Millisecond}, nil)
	tk := h.waitStatus(id, task.StatusCompleted).Task
	if n := jobs.Submissions(); n != 1 {
		t.Errorf("%d submissions, want 1: the recovered run must re-attach, not submit again", n)
	}
	if !tk.IsResumed || tk.ResumeAttemptCount != 1 || tk.ServiceTaskID != ext {
		t.Errorf("is_resumed %v, resume_attempt_count %d, service_task_id %q; want true, 1, %s", tk.IsResumed, tk.ResumeAttemptCount, tk.ServiceTaskID, ext)
	}
	checkErrors(t, tk, []int{1}, task.CategoryLost)
}
