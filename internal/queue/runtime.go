package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// runtime is the registry.Runtime of one run; every write is conditional on
// the run's attempt.
type runtime struct {
	e   *Engine
	rec *store.Record

	// mu serialises progress writes, the processor's and the trailing
	// timer's, so the row always ends with the latest report.
	mu       sync.Mutex
	lastEmit time.Time
	// pending is the latest report written without an event; trailing
	// writes its event when the interval since lastEmit has passed.
	pending  *progressReport
	trailing *time.Timer
	// gen identifies the armed timer: a timer that fired while a direct
	// emit was replacing it must not write, or two events come together.
	gen   int
	ended bool
}

// progressReport is one Progress call.
type progressReport struct {
	percent float64
	stage   string
}

var _ registry.Runtime = (*runtime)(nil)

// Progress implements registry.Runtime. Progress is clamped to 0–100 and
// always written to the task; an event is emitted at most every
// ProgressInterval, always at 100, and the last report of a burst always
// gets one: a report that is throttled is emitted when the interval has
// passed, unless a newer report or the run's end (whose status event
// supersedes it) comes first.
func (r *runtime) Progress(ctx context.Context, percent float64, stage string) error {
	// Within 0–100, to two decimals: 33.33, not 33.333333333333336.
	percent = math.Round(max(0, min(100, percent))*100) / 100
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	emit := percent >= 100 || now.Sub(r.lastEmit) >= r.e.cfg.ProgressInterval
	if _, err := r.e.store.SetProgress(ctx, store.ProgressUpdate{
		TaskID: r.rec.Task.ID, Attempt: r.rec.Task.Attempt, Progress: percent, Stage: stage,
		Lease: r.e.cfg.Lease, Emit: emit,
	}); err != nil {
		return err
	}
	if emit {
		r.lastEmit, r.pending = now, nil
		if r.trailing != nil {
			r.trailing.Stop()
			r.trailing = nil
			r.gen++
		}
		return nil
	}
	r.pending = &progressReport{percent: percent, stage: stage}
	if r.trailing == nil && !r.ended {
		r.gen++
		gen := r.gen
		r.trailing = time.AfterFunc(r.lastEmit.Add(r.e.cfg.ProgressInterval).Sub(now), func() { r.emitTrailing(gen) })
	}
	return nil
}

// emitTrailing writes the event of the latest throttled report, if the
// timer that calls it is still the armed one.
func (r *runtime) emitTrailing(gen int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if gen != r.gen || r.trailing == nil {
		return
	}
	r.trailing = nil
	p := r.pending
	if p == nil || r.ended {
		return
	}
	r.pending = nil
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := r.e.store.SetProgress(ctx, store.ProgressUpdate{
		TaskID: r.rec.Task.ID, Attempt: r.rec.Task.Attempt, Progress: p.percent, Stage: p.stage,
		Lease: r.e.cfg.Lease, Emit: true,
	})
	r.lastEmit = time.Now()
	if err != nil && !errors.Is(err, task.ErrStaleRun) {
		r.e.log.Warn("writing the last progress event", "task_id", r.rec.Task.ID, "attempt", r.rec.Task.Attempt, "error", err)
	}
}

// endProgress is called when the processor has returned: a throttled
// report still waiting is dropped, since the outcome's status event
// supersedes it, and a trailing write in flight finishes first, so no
// progress event follows the outcome.
func (r *runtime) endProgress() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ended, r.pending = true, nil
	if r.trailing != nil {
		r.trailing.Stop()
		r.trailing = nil
		r.gen++
	}
}

// SaveFields implements registry.Runtime.
func (r *runtime) SaveFields(ctx context.Context) error {
	return r.e.store.SaveFields(ctx, r.rec.Task.ID, r.rec.Task.Attempt, r.rec.Def, r.rec.Fields)
}

// SetServiceTaskID implements registry.Runtime.
func (r *runtime) SetServiceTaskID(ctx context.Context, id string) error {
	if err := r.e.store.SetServiceTaskID(ctx, r.rec.Task.ID, r.rec.Task.Attempt, id); err != nil {
		return err
	}
	r.rec.Task.ServiceTaskID = id
	return nil
}

// SetExecutorHandle implements registry.Runtime.
func (r *runtime) SetExecutorHandle(ctx context.Context, handle json.RawMessage, externalID string) error {
	if err := r.e.store.SetExecutorHandle(ctx, r.rec.Task.ID, r.rec.Task.Attempt, handle, externalID); err != nil {
		return err
	}
	r.rec.Task.ExecutorHandle, r.rec.Task.ServiceTaskID = handle, externalID
	return nil
}

// AddError implements registry.Runtime.
func (r *runtime) AddError(ctx context.Context, e task.Error) error {
	return r.e.store.AddRunError(ctx, r.rec.Task.ID, r.rec.Task.Attempt, e)
}

// PutArtifact implements registry.Runtime.
func (r *runtime) PutArtifact(ctx context.Context, name, contentType string, data []byte) (task.Artifact, error) {
	if r.e.artifacts == nil {
		return task.Artifact{}, fmt.Errorf("no artifact store configured")
	}
	a, err := r.e.artifacts.Put(ctx, artifact.TaskKey(r.rec.Task.ID.String(), name), contentType, data)
	if err != nil {
		return task.Artifact{}, err
	}
	a.URL = artifact.URL(r.e.cfg.PublicBaseURL, r.e.cfg.ArtifactsPublicURL, a.Key)
	return a, nil
}
