package hostedtest

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/executortest"
)

// SyncHarness runs the executor harness on an executor of a synchronous
// API (openai, gemini) whose fake answers each job of bs as its
// behaviour asks (Play): the calls die with their process (no
// recovery), there is no queue, and front takes the service down.
func SyncHarness(t *testing.T, bs *Behaviours, front *Front, newEx func(t *testing.T) executor.Executor) {
	t.Helper()
	executortest.Run(t, executortest.Adapter{
		New: newEx,
		Job: func(t *testing.T, b executortest.Behaviour) *executor.Job { return bs.Job(t, b, nil) },
		Failures: []executor.Category{
			executor.ProviderUnavailable, executor.ProviderError, executor.RateLimited,
			executor.InvalidInput, executor.SafetyBlocked,
		},
		SetAvailable: front.SetAvailable,
	})
}

// Play plays the part of a synchronous call's behaviour that is the same
// for every fake: a held job tells its gate it runs and waits for the
// release or for the client to drop the connection (ctx, the request's
// context). It returns the failure to answer with, and false when the
// client went away.
func Play(ctx context.Context, b executortest.Behaviour) (executor.Category, bool) {
	if b.Hold != nil {
		b.Hold.Running()
		if b.Hold.Wait(ctx) != nil {
			return "", false
		}
	}
	return b.Fail, true
}

// Progress records the progress a job reports.
type Progress struct {
	mu  sync.Mutex
	pct []float64
}

// Progress implements executor.Reporter.
func (p *Progress) Progress(_ context.Context, pct float64, _ string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pct = append(p.pct, pct)
	return nil
}

// All returns the reports so far.
func (p *Progress) All() []float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]float64(nil), p.pct...)
}

// Exec executes a job of task type typ, operation op and fields on ex,
// reading inputs with input, storing into a new Store and recording
// progress; it gives the job 20 seconds.
func Exec(t *testing.T, ex executor.Executor, typ, op string, fields map[string]any, input func(context.Context, string) ([]byte, error)) (*executor.Output, *Store, *Progress, error) {
	t.Helper()
	raw, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	st, p := &Store{}, &Progress{}
	j := st.Prepare(&executor.Job{TaskID: uuid.New(), Type: typ, Operation: op, Fields: raw, OpenInput: input})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	out, err := executor.Execute(ctx, ex, j, p)
	return out, st, p, err
}
