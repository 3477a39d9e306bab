package mock_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/executortest"
	"github.com/computeserver/compute/internal/executor/inproc"
	"github.com/computeserver/compute/internal/executor/mock"
)

// TestHarness runs the executor harness on the mock. Its "service" is a
// job table with one slot shared by every executor the adapter builds, so
// a job outlives the executor that started it, as a remote job would.
func TestHarness(t *testing.T) {
	t.Parallel()
	jobs := inproc.New(1)
	var behaviours sync.Map // task id -> executortest.Behaviour
	hook := func(ctx context.Context, j *executor.Job) error {
		b, _ := behaviours.Load(j.TaskID)
		if g := b.(executortest.Behaviour).Hold; g != nil {
			g.Running()
			return g.Wait(ctx)
		}
		return nil
	}
	executortest.Run(t, executortest.Adapter{
		New: func(t *testing.T) executor.Executor {
			ex, err := mock.New("mock-a", mock.Settings{}, jobs)
			if err != nil {
				t.Fatal(err)
			}
			ex.Hook = hook
			return ex
		},
		Job: func(t *testing.T, b executortest.Behaviour) *executor.Job {
			id := uuid.New()
			behaviours.Store(id, b)
			prompt := "a linen dress"
			if b.Fail != "" {
				prompt = mock.FailPrefix + string(b.Fail) + " " + prompt
			}
			fields, err := json.Marshal(map[string]any{"prompt": prompt, "width": 64, "height": 64, "seed": 7})
			if err != nil {
				t.Fatal(err)
			}
			return &executor.Job{TaskID: id, Type: "generation", Operation: "text_to_image", Fields: fields}
		},
		Failures: []executor.Category{
			executor.ProviderUnavailable, executor.ProviderError, executor.RateLimited, executor.InvalidInput,
			executor.SafetyBlocked, executor.Timeout, executor.StartTimeout,
		},
		CanQueue:        true,
		SurvivesRestart: true,
		Submissions:     jobs.Submissions,
		SetAvailable:    func(_ *testing.T, up bool) { jobs.SetDown(!up) },
	})
}
