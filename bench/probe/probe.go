// Package probe is the bench_probe task type, registered only by the
// benchmark: its processor records the moment it is entered, so pickup
// latency can be measured from the create call's return to the first line
// the processor runs, without going through the database clock.
package probe

import (
	"context"
	"embed"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
)

// Name is the task type name.
const Name = "bench_probe"

// Fields are the probe type's own columns (table bench_probe_tasks).
type Fields struct {
	Label string `json:"label" required:"false" db:"label" maxLength:"256" doc:"Free text to tell samples apart."`
}

//go:embed migrations
var migrations embed.FS

// Recorder hands the processor's entry time of a task to whoever waits for
// it. The zero value is not usable; call NewRecorder.
type Recorder struct {
	mu      sync.Mutex
	waiting map[uuid.UUID]chan time.Time
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder {
	return &Recorder{waiting: map[uuid.UUID]chan time.Time{}}
}

// Expect registers interest in task id before it is created and returns the
// channel its processor's entry time will arrive on.
func (r *Recorder) Expect(id uuid.UUID) <-chan time.Time {
	ch := make(chan time.Time, 1)
	r.mu.Lock()
	r.waiting[id] = ch
	r.mu.Unlock()
	return ch
}

// Forget drops the interest in id (after a timeout).
func (r *Recorder) Forget(id uuid.UUID) {
	r.mu.Lock()
	delete(r.waiting, id)
	r.mu.Unlock()
}

// Enter reports that the processor of task id was entered at at.
func (r *Recorder) Enter(id uuid.UUID, at time.Time) {
	r.mu.Lock()
	ch, ok := r.waiting[id]
	delete(r.waiting, id)
	r.mu.Unlock()
	if ok {
		ch <- at
	}
}

// Processor runs bench_probe tasks: it notes when it was entered and
// completes at once.
type Processor struct {
	Rec *Recorder
}

var _ registry.ProcessorOf[Fields] = Processor{}

// Process implements registry.ProcessorOf.
func (p Processor) Process(_ context.Context, job *registry.Job[Fields]) (*task.Result, error) {
	p.Rec.Enter(job.Task.ID, time.Now())
	return &task.Result{Artifacts: []task.Artifact{}}, nil
}

// Type declares the bench_probe task type whose processor reports to rec.
func Type(rec *Recorder) registry.Type[Fields, struct{}] {
	return registry.Type[Fields, struct{}]{
		Name:        Name,
		Title:       "Benchmark probe",
		Description: "Completes at once after recording when its processor was entered; used only by computebench.",
		Processor:   Processor{Rec: rec},
		Migrations:  registry.Sub(migrations, "migrations"),
		MaxAttempts: 1,
		Timeout:     time.Minute,
	}
}
