package queue

import (
	"context"
	"fmt"
	"strings"
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

	mu       sync.Mutex
	lastEmit time.Time
}

var _ registry.Runtime = (*runtime)(nil)

// Progress implements registry.Runtime. Progress is clamped to 0–100; an
// event is emitted at most every ProgressInterval, and always at 100.
func (r *runtime) Progress(ctx context.Context, percent float64, stage string) error {
	percent = max(0, min(100, percent))
	r.mu.Lock()
	now := time.Now()
	emit := percent >= 100 || now.Sub(r.lastEmit) >= r.e.cfg.ProgressInterval
	if emit {
		r.lastEmit = now
	}
	r.mu.Unlock()
	_, err := r.e.store.SetProgress(ctx, store.ProgressUpdate{
		TaskID: r.rec.Task.ID, Attempt: r.rec.Task.Attempt, Progress: percent, Stage: stage,
		Lease: r.e.cfg.Lease, Emit: emit,
	})
	return err
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

// PutArtifact implements registry.Runtime.
func (r *runtime) PutArtifact(ctx context.Context, name, contentType string, data []byte) (task.Artifact, error) {
	if r.e.artifacts == nil {
		return task.Artifact{}, fmt.Errorf("no artifact store configured")
	}
	a, err := r.e.artifacts.Put(ctx, artifact.TaskKey(r.rec.Task.ID.String(), name), contentType, data)
	if err != nil {
		return task.Artifact{}, err
	}
	a.URL = strings.TrimSuffix(r.e.cfg.PublicBaseURL, "/") + "/api/v1/artifacts/" + a.Key
	return a, nil
}
