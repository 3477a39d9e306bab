package task_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/task"
)

// TestUsageAddsUp: the usage reported into a run's meter, from many
// goroutines, is summed (nothing without a meter), and a change carrying
// it adds it to the task's, across runs and through a user's retry.
func TestUsageAddsUp(t *testing.T) {
	task.ReportUsage(context.Background(), task.Usage{InputTokens: 1}) // no meter: nothing to add to
	var m task.UsageMeter
	ctx := task.WithUsageMeter(context.Background(), &m)
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() { task.ReportUsage(ctx, task.Usage{ProviderSeconds: 0.5, InputTokens: 3, OutputTokens: 1}) })
	}
	wg.Wait()
	if got, want := m.Total(), (task.Usage{ProviderSeconds: 5, InputTokens: 30, OutputTokens: 10}); got != want {
		t.Fatalf("meter total %+v, want %+v", got, want)
	}

	now := time.Now()
	tk := &task.Task{Status: task.StatusExecuting, Attempt: 1}
	retry := task.Change{To: task.StatusPending, Attempt: 1, CountRetry: true, Usage: task.Usage{ProviderSeconds: 1}}
	if err := retry.Apply(tk, now); err != nil {
		t.Fatal(err)
	}
	tk.Status, tk.Attempt = task.StatusExecuting, 2
	fail := task.Change{To: task.StatusFailed, Attempt: 2, Usage: m.Total()}
	if err := fail.Apply(tk, now); err != nil {
		t.Fatal(err)
	}
	again := task.Change{To: task.StatusPending, From: []task.Status{task.StatusFailed}, ResetForRetry: true}
	if err := again.Apply(tk, now); err != nil {
		t.Fatal(err)
	}
	if want := (task.Usage{ProviderSeconds: 6, InputTokens: 30, OutputTokens: 10}); tk.Usage != want {
		t.Errorf("task usage %+v, want %+v (both runs, kept by the retry)", tk.Usage, want)
	}
}
