package executortest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/task"
)

// testSuccess: a job completes, stores at least one non-empty output,
// reports progress that stays within 0–100 and never goes back, and its
// handle is saved (once, or twice when the executor saves it before
// submitting), naming the executor and the job.
func testSuccess(t *testing.T, a Adapter) {
	ex := a.New(t)
	j, rec := job(t, a, Behaviour{})
	out, err := executor.Execute(ctx(t), ex, j, rec)
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	files, handles, progress := rec.snapshot()
	if out == nil || len(out.Artifacts) == 0 {
		t.Fatalf("output %+v has no artifacts", out)
	}
	for _, art := range out.Artifacts {
		if art.Size <= 0 {
			t.Errorf("artifact %+v is empty", art)
		}
	}
	if len(files) == 0 {
		t.Error("nothing was stored through job.Put")
	}
	if len(progress) == 0 {
		t.Error("no progress was reported")
	}
	for i, p := range progress {
		if p < 0 || p > 100 || (i > 0 && p < progress[i-1]) {
			t.Errorf("progress %v: report %d (%v) is out of range or goes back", progress, i, p)
			break
		}
	}
	// An executor whose service takes a client-chosen id saves the handle
	// itself before submitting, then Execute saves it again.
	if len(handles) == 0 || len(handles) > 2 {
		t.Errorf("saved handles %+v, want one or two", handles)
	}
	for _, h := range handles {
		if h.Executor != ex.Name() || h.ExternalID == "" || h.Version == 0 || h.ExternalID != handles[0].ExternalID {
			t.Errorf("saved handles %+v, want each to name executor %s and the one job", handles, ex.Name())
			break
		}
	}
}

// testFailures: each failure class comes back with its category, retried
// or not as the taxonomy says, naming the executor.
func testFailures(t *testing.T, a Adapter) {
	if len(a.Failures) == 0 {
		t.Skip("the adapter can make no failure")
	}
	for _, c := range a.Failures {
		t.Run(string(c), func(t *testing.T) {
			ex := a.New(t)
			j, rec := job(t, a, Behaviour{Fail: c})
			_, err := executor.Execute(ctx(t), ex, j, rec)
			if err == nil {
				t.Fatal("the job succeeded")
			}
			if got := executor.CategoryOf(err); got != c {
				t.Errorf("category %s, want %s (%v)", got, c, err)
			}
			if task.IsPermanent(err) == c.Retryable() {
				t.Errorf("permanent = %v for %s (%v)", task.IsPermanent(err), c, err)
			}
			if !strings.Contains(err.Error(), ex.Name()) {
				t.Errorf("error %q does not name executor %s", err, ex.Name())
			}
		})
	}
}

// waitResult is the end of a Wait running in a goroutine.
type waitResult struct {
	out *executor.Output
	err error
}

// waitAsync runs ex.Wait in a goroutine; the test waits for it to end.
func waitAsync(t *testing.T, ex executor.Executor, j *executor.Job, h executor.Handle, rec *recorder, c context.Context) <-chan waitResult {
	done := make(chan waitResult, 1)
	go func() {
		out, err := ex.Wait(c, j, h, rec)
		done <- waitResult{out, err}
	}()
	return done
}

// result waits for a Wait started by waitAsync.
func result(t *testing.T, done <-chan waitResult) waitResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(15 * time.Second):
		t.Fatal("Wait did not return")
		return waitResult{}
	}
}

// held is a job started on ex that the service holds while it runs; its
// Wait runs in a goroutine.
type held struct {
	job  *executor.Job
	h    executor.Handle
	gate *Gate
	rec  *recorder
	done <-chan waitResult
}

// startHeld starts a held job on ex, waits under c, and returns once the
// job runs (or, when running is false, once it is submitted).
func startHeld(t *testing.T, a Adapter, ex executor.Executor, c context.Context, running bool) *held {
	t.Helper()
	gate := NewGate()
	t.Cleanup(gate.Release)
	j, rec := job(t, a, Behaviour{Hold: gate})
	h, err := ex.Start(c, j)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	hj := &held{job: j, h: h, gate: gate, rec: rec, done: waitAsync(t, ex, j, h, rec, c)}
	if running {
		gate.waitRunning(t)
	}
	return hj
}

// testCancelRunning: a cancel stops a running job; its Wait returns a
// cancelled error promptly.
func testCancelRunning(t *testing.T, a Adapter) {
	ex := a.New(t)
	c := ctx(t)
	j := startHeld(t, a, ex, c, true)
	if err := ex.Cancel(c, j.h); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	if r := result(t, j.done); !executor.Is(r.err, executor.Cancelled) {
		t.Errorf("Wait after a cancel: %v, want a cancelled error", r.err)
	}
	if err := ex.Cancel(c, j.h); err != nil {
		t.Errorf("cancelling an ended job again: %v", err)
	}
}

// testCancelQueued: a job waiting for the busy service is cancelled
// before it runs; the job ahead of it is not disturbed.
func testCancelQueued(t *testing.T, a Adapter) {
	if !a.CanQueue {
		t.Skip("the service does not queue jobs")
	}
	ex := a.New(t)
	c := ctx(t)
	first := startHeld(t, a, ex, c, true)
	second := startHeld(t, a, ex, c, false)
	if err := ex.Cancel(c, second.h); err != nil {
		t.Fatalf("Cancel of the queued job: %v", err)
	}
	if r := result(t, second.done); !executor.Is(r.err, executor.Cancelled) {
		t.Errorf("Wait of the queued job after a cancel: %v, want a cancelled error", r.err)
	}
	select {
	case <-second.gate.running:
		t.Error("the cancelled job ran")
	default:
	}
	first.gate.Release()
	if r := result(t, first.done); r.err != nil {
		t.Errorf("the job ahead of the cancelled one: %v", r.err)
	}
}

// testRecover: the worker dies while the job runs; a new process's
// executor recovers the job from the saved handle. A service that keeps
// jobs lets the job finish without submitting it again; an in-process one
// reports it lost, and Execute starts it afresh.
func testRecover(t *testing.T, a Adapter) {
	ex := a.New(t)
	c := ctx(t)
	dying, die := context.WithCancel(c)
	j := startHeld(t, a, ex, dying, true)
	die() // the worker process dies
	result(t, j.done)

	restarted := a.New(t)
	got, err := restarted.Recover(c, j.job, j.h)
	if !a.SurvivesRestart {
		if !executor.Is(err, executor.Lost) {
			t.Fatalf("Recover in a new process: %v, want a lost error", err)
		}
		j.gate.Release()
		j.job.Saved = &j.h
		if _, err := executor.Execute(c, restarted, j.job, j.rec); err != nil {
			t.Fatalf("Execute after the job was lost: %v", err)
		}
		return
	}
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if got.ExternalID != j.h.ExternalID {
		t.Errorf("recovered handle %+v, want the job %s", got, j.h.ExternalID)
	}
	before := 0
	if a.Submissions != nil {
		before = a.Submissions()
	}
	j.gate.Release()
	if _, err := restarted.Wait(c, j.job, got, j.rec); err != nil {
		t.Fatalf("Wait after recovery: %v", err)
	}
	if a.Submissions != nil && a.Submissions() != before {
		t.Errorf("recovery submitted the job again (%d submissions, were %d)", a.Submissions(), before)
	}
}

// testUnavailable: while the service is down, a job fails as
// provider_unavailable (retried), a Pinger says so, and once it is up
// again jobs run.
func testUnavailable(t *testing.T, a Adapter) {
	if a.SetAvailable == nil {
		t.Skip("the adapter cannot take the service down")
	}
	ex := a.New(t)
	a.SetAvailable(t, false)
	j, rec := job(t, a, Behaviour{})
	_, err := executor.Execute(ctx(t), ex, j, rec)
	if !executor.Is(err, executor.ProviderUnavailable) || task.IsPermanent(err) {
		t.Errorf("a job while the service is down: %v, want a retryable provider_unavailable error", err)
	}
	if p, ok := ex.(executor.Pinger); ok {
		if err := p.Ping(ctx(t)); !executor.Is(err, executor.ProviderUnavailable) {
			t.Errorf("Ping while down: %v", err)
		}
	}
	a.SetAvailable(t, true)
	j, rec = job(t, a, Behaviour{})
	if _, err := executor.Execute(ctx(t), ex, j, rec); err != nil {
		t.Errorf("a job once the service is up again: %v", err)
	}
}
