package executor_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/task"
)

// A 429 pauses the executor for its Retry-After and defers the task; it
// does not fail over and is not a failed attempt.
func TestRateLimitedPausesTheExecutor(t *testing.T) {
	t.Parallel()
	set, tables := fallbackSet(t)
	gate := executor.NewLocalGate()
	set.UseGate(gate)
	var saved []executor.Handle
	job := memJob(&saved)
	job.Type = "generation"
	job.Fields, _ = json.Marshal(map[string]any{"prompt": "mock-fail:rate_limited x"})
	before := time.Now()
	_, err := set.Run(t.Context(), "gpu", false, job, quiet)
	var d *task.DeferError
	if !errors.As(err, &d) {
		t.Fatalf("Run: %v, want a deferral", err)
	}
	if !executor.Is(err, executor.RateLimited) {
		t.Errorf("the deferral %v is not rate_limited", err)
	}
	if d.Until.Before(before.Add(executor.DefaultPause)) {
		t.Errorf("deferred until %s, want at least %s after the call", d.Until, executor.DefaultPause)
	}
	if until := gate.PausedUntil("gpu"); !until.Equal(d.Until) {
		t.Errorf("gpu paused until %v, want the deferral's %v", until, d.Until)
	}
	if !gate.PausedUntil("cheap").IsZero() || tables["cheap"].Submissions() != 0 {
		t.Error("a 429 failed over to the fallback, or paused it")
	}
}

// A job starts only within its executor's start rate; a start the rate has
// no room for defers the task, and nothing is submitted.
func TestStartRate(t *testing.T) {
	t.Parallel()
	set, tables := fallbackSet(t)
	if err := set.SetLimits("gpu", executor.Limits{StartsPerMinute: 1, Concurrency: 3}); err != nil {
		t.Fatal(err)
	}
	if l := set.LimitsOf("gpu"); l.StartsPerMinute != 1 || l.Concurrency != 3 {
		t.Errorf("limits %+v", l)
	}
	if c := set.Concurrency(); len(c) != 1 || c["gpu"] != 3 {
		t.Errorf("Concurrency() = %v, want gpu: 3", c)
	}
	run := func() error {
		var saved []executor.Handle
		job := memJob(&saved)
		job.Type = "generation"
		_, err := set.Run(t.Context(), "gpu", false, job, quiet)
		return err
	}
	if err := run(); err != nil {
		t.Fatalf("first start: %v", err)
	}
	err := run()
	var d *task.DeferError
	if !errors.As(err, &d) || !executor.Is(err, executor.RateLimited) {
		t.Fatalf("second start within the minute: %v, want a rate_limited deferral", err)
	}
	if wait := time.Until(d.Until); wait < 50*time.Second {
		t.Errorf("deferred for %s, want about a minute", wait)
	}
	if n := tables["gpu"].Submissions(); n != 1 {
		t.Errorf("gpu got %d submissions, want 1", n)
	}
	if err := set.SetLimits("nope", executor.Limits{}); err == nil {
		t.Error("limits of an executor not configured were accepted")
	}
	if err := set.SetLimits("gpu", executor.Limits{Concurrency: -1}); err == nil {
		t.Error("a negative concurrency was accepted")
	}
}
