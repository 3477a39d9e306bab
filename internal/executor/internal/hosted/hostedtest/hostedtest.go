// Package hostedtest helps the tests of the hosted executors (fal,
// Replicate, Cog) drive their fakes through the executor harness: it maps
// a job to its harness behaviour through a marker in its prompt, holds a
// job inside the fake's outcome until the harness releases it or the job
// is cancelled, and records what a job stores.
package hostedtest

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/executortest"
	"github.com/computeserver/compute/internal/task"
)

// marker starts the prompt of a harness job; the task id follows.
const marker = "harness-job "

// Behaviours keeps each harness job's behaviour and the cancels the fake
// received.
type Behaviours struct {
	jobs    sync.Map // task id (string) -> executortest.Behaviour
	mu      sync.Mutex
	cancels map[string]chan struct{} // external id -> closed on cancel
}

// Job returns a generation job of behaviour b whose prompt carries its
// task id; extra fields are added to its fields.
func (bs *Behaviours) Job(t *testing.T, b executortest.Behaviour, extra map[string]any) *executor.Job {
	t.Helper()
	id := uuid.New()
	bs.jobs.Store(id.String(), b)
	fields := map[string]any{"prompt": marker + id.String(), "width": 64, "height": 48, "seed": 7}
	for k, v := range extra {
		fields[k] = v
	}
	raw, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	return &executor.Job{TaskID: id, Type: "generation", Operation: "text_to_image", Fields: raw}
}

// Of returns the behaviour of the job whose model input is input (its
// prompt at the top or under "input"); the zero behaviour for another.
func (bs *Behaviours) Of(input []byte) executortest.Behaviour {
	var in struct {
		Prompt string `json:"prompt"`
		Input  struct {
			Prompt string `json:"prompt"`
		} `json:"input"`
	}
	_ = json.Unmarshal(input, &in)
	p := in.Prompt
	if p == "" {
		p = in.Input.Prompt
	}
	id, ok := strings.CutPrefix(p, marker)
	if !ok {
		return executortest.Behaviour{}
	}
	b, _ := bs.jobs.Load(id)
	beh, _ := b.(executortest.Behaviour)
	return beh
}

// channel returns the cancel channel of external id.
func (bs *Behaviours) channel(id string) chan struct{} {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.cancels == nil {
		bs.cancels = map[string]chan struct{}{}
	}
	ch, ok := bs.cancels[id]
	if !ok {
		ch = make(chan struct{})
		bs.cancels[id] = ch
	}
	return ch
}

// Cancelled records that the fake received a cancel of external id.
func (bs *Behaviours) Cancelled(id string) {
	ch := bs.channel(id)
	bs.mu.Lock()
	defer bs.mu.Unlock()
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// Hold runs a held job of external id inside the fake: it tells the gate
// the job runs, then waits for the harness to release it or for a cancel
// of id, and reports whether it was cancelled.
func (bs *Behaviours) Hold(g *executortest.Gate, id string) (cancelled bool) {
	g.Running()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	ch := bs.channel(id)
	go func() {
		select {
		case <-ch:
			stop()
		case <-ctx.Done():
		}
	}()
	return g.Wait(ctx) != nil
}

// Store records what jobs store through Put.
type Store struct {
	mu    sync.Mutex
	files map[string][]byte
}

// Put implements executor.Job.Put.
func (s *Store) Put(_ context.Context, name, contentType string, data []byte) (task.Artifact, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.files == nil {
		s.files = map[string][]byte{}
	}
	s.files[name] = append([]byte(nil), data...)
	return task.Artifact{Key: "test/" + name, ContentType: contentType, Size: int64(len(data))}, nil
}

// File returns the stored file called name.
func (s *Store) File(name string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.files[name]
	return d, ok
}

// Prepare fills a job's Put (into s) and a SaveHandle that keeps the last
// handle, and returns the job.
func (s *Store) Prepare(j *executor.Job) *executor.Job {
	j.Put = s.Put
	j.SaveHandle = func(context.Context, executor.Handle) error { return nil }
	return j
}

// Discard returns a reporter that drops progress.
func Discard() executor.Reporter {
	return executor.ReporterFunc(func(context.Context, float64, string) error { return nil })
}
